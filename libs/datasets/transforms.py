"""Frame/label transforms (the release's libs/datasets/transforms.py).

A sample is a dict `{"image": uint8 tensor [3, H, W], "label": float tensor [1, H, W] in
[0, 1]}`, the label being optional. A clip is a list of such dicts. Evaluation and inference
only resize and normalise (`ResizeNormalise`, plain PyTorch and Pillow, so that inference
starts without importing torchvision); training's augmentation (`libs.datasets.augment`) is
built on `torchvision.transforms.v2` and draws its random parameters once per clip.

Frames are resized by Pillow's bilinear filter and divided by 255 as the release's
`ToTensor` does, so normalised inputs equal the release's bit for bit. Labels are resized
bilinearly too (antialiased, as torchvision resizes float images), like the release, which
resized a float PIL image with `Image.BILINEAR`: within 2e-5 of Pillow, clamped to [0, 1].
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .normalise import IMAGENET_MEAN, IMAGENET_STD, normalise


def _size(input_size: int | Sequence[int]) -> list[int]:
    if isinstance(input_size, int):
        return [input_size, input_size]
    size = [int(s) for s in input_size]
    if len(size) == 1:
        return size * 2
    if len(size) != 2:
        raise ValueError(f"input_size must be an int or (height, width), got {input_size!r}")
    return size


def pillow_resize(frame: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A uint8 frame [3, H, W] resized to `size` (height, width) by Pillow's bilinear filter, as
    the release's transforms resized PIL images. torchvision's own uint8 antialiased kernel
    differs from Pillow by one grey level on about 0.1% of the values of a DAVIS frame at
    448x448, which moves about 1% of the 8-bit saliency pixels by up to 2 levels."""
    if frame.dtype != torch.uint8 or frame.dim() != 3:
        raise ValueError(f"expected a uint8 frame [3, H, W], got {frame.dtype} {tuple(frame.shape)}")
    height, width = size
    if tuple(frame.shape[1:]) == (height, width):
        return frame
    image = Image.fromarray(frame.permute(1, 2, 0).numpy()).resize((width, height), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def resize_label(label: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A float label [1, H, W] resized to `size` bilinearly with antialiasing (the kernel
    torchvision's `resize` uses for float images), clamped to [0, 1] against rounding."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    resized = F.interpolate(label.as_subclass(torch.Tensor)[None], size=list(size), mode="bilinear",
                            align_corners=False, antialias=True)[0]
    return resized.clamp_(0.0, 1.0)


class ResizeNormalise:
    """The evaluation transform: frame and label resized to `size` (None: kept), the frame
    normalised. Called on a sample dict; deterministic, so clips are transformed frame by frame."""

    def __init__(self, size: int | Sequence[int] | None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.size = None if size is None else _size(size)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        image = sample["image"]
        if self.size is not None:
            image = pillow_resize(image, self.size)
            if "label" in sample:
                out["label"] = resize_label(sample["label"], self.size)
        out["image"] = normalise(image, self.mean, self.std)
        return out


def augmentation(input_size: int | Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> Callable[[Any], Any]:
    """The release's image-mode training augmentation (`libs.datasets.augment.Augmentation`)."""
    from .augment import Augmentation

    return Augmentation(_size(input_size), mean, std)


def resize_normalise(input_size: int | Sequence[int] | None, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> ResizeNormalise:
    """Bilinear resize of frame and label to `input_size` (None: keep the size), then normalisation."""
    return ResizeNormalise(input_size, mean, std)


def get_transforms(image_mode: bool, input_size: int | Sequence[int],
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                   clip_augment: bool = False) -> dict[str, Callable[[Any], Any]]:
    """The {"train", "val", "test"} transforms of the release's libs/datasets/transforms.py.

    `image_mode` (image-saliency pretraining) gives "train" the release's augmentation;
    video mode only resizes, as the release does. `clip_augment=True` (an option that
    is not in the release) gives video "train" the same augmentation, which clip
    datasets apply with one set of random parameters per clip. "val" and "test" always
    only resize and normalise.
    """
    plain = resize_normalise(input_size, mean, std)
    train = augmentation(input_size, mean, std) if (image_mode or clip_augment) else plain
    return {"train": train, "val": plain, "test": resize_normalise(input_size, mean, std)}


def apply_transform(transform: Callable[[Any], Any] | None,
                    samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Transform the samples of one clip (or a single frame, as a list of one).

    A transform with `per_clip` set (the augmentation) is called once on the whole list when all
    frames have the same size, so random parameters are shared by the clip; any other callable
    is called per frame.
    """
    if transform is None:
        return samples
    sizes = {tuple(s["image"].shape[-2:]) for s in samples}
    if getattr(transform, "per_clip", False) and len(sizes) == 1:
        return list(transform(samples))
    return [transform(sample) for sample in samples]
