"""The 8-bit saliency map: how saliency probabilities become the uint8 values that are written
to PNG files and scored.

One rule everywhere (inference, pseudo-labels, the training loop's validation): the release's
`torchvision.transforms.functional.to_pil_image` of a float map, which multiplies by 255 and
truncates, so a probability p becomes floor(255 p), with p clamped to [0, 1] first.
"""
from __future__ import annotations

import torch


def probabilities_to_uint8(probabilities: torch.Tensor) -> torch.Tensor:
    """floor(255 p) of probabilities in [0, 1] (clamped), as a uint8 tensor on the CPU, same shape."""
    return (probabilities.detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu()
