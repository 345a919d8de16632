"""The release's image-mode training augmentation, on `torchvision.transforms.v2`.

Samples are wrapped as `tv_tensors` for the v2 operations, so that colour jitter changes
the frame alone and the crop and flips move frame and label alike, and handed back as plain
tensors, normalised as `libs.datasets.transforms.normalise` does.

Labels are resized with bilinear interpolation, like the release (which resized a float PIL
image with `Image.BILINEAR`), not with nearest neighbour as `tv_tensors.Mask` would be:
`SoftMask` is a Mask (colour jitter leaves it alone, flips and crops move it) whose resizing
kernels are the bilinear, antialiased image kernels, clamped to [0, 1] against rounding.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .normalise import IMAGENET_MEAN, IMAGENET_STD, normalise


class SoftMask(tv_tensors.Mask):
    """A soft (float, [0, 1]) saliency label: moved like a mask, resized bilinearly."""


def _plain(inpt: torch.Tensor) -> torch.Tensor:
    return inpt.as_subclass(torch.Tensor)


@F.register_kernel(F.resize, SoftMask)
def _resize_soft_mask(inpt: SoftMask, size: Any, interpolation: Any = None, max_size: Any = None,
                      antialias: Any = True) -> SoftMask:
    out = F.resize_image(_plain(inpt), size, interpolation=v2.InterpolationMode.BILINEAR,
                         max_size=max_size, antialias=True)
    return tv_tensors.wrap(out.clamp_(0.0, 1.0), like=inpt)


@F.register_kernel(F.resized_crop, SoftMask)
def _resized_crop_soft_mask(inpt: SoftMask, top: int, left: int, height: int, width: int, size: Any,
                            interpolation: Any = None, antialias: Any = True) -> SoftMask:
    out = F.resized_crop_image(_plain(inpt), top, left, height, width, size,
                               interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    return tv_tensors.wrap(out.clamp_(0.0, 1.0), like=inpt)


class Augmentation:
    """Colour jitter 0.3 for brightness, contrast, saturation and hue (in random order), a random
    resized crop (scale 0.7-1.0, ratio 3/4-4/3) to `size`, then one of no flip / horizontal /
    vertical / both with equal chance, then normalisation (the release's image-mode training
    transform). Called on a sample dict or on a clip's list of them (one draw for the clip)."""

    per_clip = True

    def __init__(self, size: Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        flips = v2.RandomChoice([
            v2.Identity(),
            v2.RandomHorizontalFlip(p=1.0),
            v2.RandomVerticalFlip(p=1.0),
            v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.RandomVerticalFlip(p=1.0)]),
        ])
        self.geometry = v2.Compose([
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.3),
            v2.RandomResizedCrop(list(size), scale=(0.7, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                                 interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            flips,
        ])
        self.mean, self.std = tuple(mean), tuple(std)

    def _wrap(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample, image=tv_tensors.Image(sample["image"]))
        if "label" in sample:
            out["label"] = SoftMask(sample["label"])
        return out

    def _unwrap(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample, image=normalise(sample["image"], self.mean, self.std))
        if "label" in sample:
            out["label"] = _plain(sample["label"])
        return out

    def __call__(self, samples: dict[str, Any] | list[dict[str, Any]]) -> Any:
        if isinstance(samples, dict):
            return self._unwrap(self.geometry(self._wrap(samples)))
        return [self._unwrap(s) for s in self.geometry([self._wrap(s) for s in samples])]
