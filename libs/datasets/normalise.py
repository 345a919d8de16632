"""The ImageNet normalisation of frames, shared by evaluation's transform and training's
augmentation."""
from __future__ import annotations

from collections.abc import Sequence

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(frame: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """A uint8 frame [3, H, W] as float32: divided by 255 (as the release's `ToTensor` does;
    multiplying by 1/255 differs in the last bit on about half of the 256 values), then
    (x - mean) / std per channel (the release's `Normalize`)."""
    x = frame.as_subclass(torch.Tensor).to(torch.float32).div(255)
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return x.sub(mean_t).div_(std_t)
