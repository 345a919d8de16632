"""Frame/label transforms (the release's libs/datasets/transforms.py), built on `torchvision.transforms.v2`.

A sample is a dict `{"image": tv_tensors.Image (uint8 [3, H, W]), "label": SoftMask
(float [1, H, W])}`, the label being optional. A clip is a list of such dicts; a v2
transform called on the whole list draws its random parameters once, so every frame of
the clip is augmented alike.

Labels are resized with bilinear interpolation, like the release (which resized a float
PIL image with `Image.BILINEAR`), not with nearest neighbour as `tv_tensors.Mask` would
be: `SoftMask` is a Mask (colour jitter leaves it alone, flips and crops move it) whose
resizing kernels are the bilinear, antialiased image kernels. Pillow's bilinear resize,
which the release used, is matched to within one grey level for frames and 2e-5 for
labels (clamped to [0, 1] against rounding).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def _size(input_size: int | Sequence[int]) -> list[int]:
    if isinstance(input_size, int):
        return [input_size, input_size]
    size = [int(s) for s in input_size]
    if len(size) == 1:
        return size * 2
    if len(size) != 2:
        raise ValueError(f"input_size must be an int or (height, width), got {input_size!r}")
    return size


class PillowResize(v2.Resize):
    """`v2.Resize` whose uint8 frames [3, H, W] are resized by Pillow's bilinear filter, as the
    release's transforms resized PIL images. torchvision's own uint8 antialiased kernel differs
    from Pillow by one grey level on about 0.1% of the values of a DAVIS frame at 448x448,
    which moves about 1% of the 8-bit saliency pixels by up to 2 levels. Labels and other
    inputs take `v2.Resize`'s kernels."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not (isinstance(inpt, tv_tensors.Image) and inpt.dtype == torch.uint8 and inpt.dim() == 3):
            return super().transform(inpt, params)
        height, width = self.size
        image = Image.fromarray(inpt.permute(1, 2, 0).numpy())
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        return tv_tensors.wrap(torch.from_numpy(np.array(image)).permute(2, 0, 1), like=inpt)


class ToFloat(v2.Transform):
    """uint8 frames to float32 in [0, 1] by dividing by 255, as the release's `ToTensor` does;
    `v2.ToDtype(scale=True)` multiplies by 1/255 instead, which differs in the last bit on about
    half of the 256 values. Other inputs pass unchanged."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Image) and inpt.dtype == torch.uint8:
            return tv_tensors.wrap(inpt.as_subclass(torch.Tensor).to(torch.float32).div(255), like=inpt)
        return inpt


def _to_normalised(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [ToFloat(), v2.Normalize(mean=list(mean), std=list(std))]


def augmentation(input_size: int | Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """The release's image-mode training augmentation.

    Colour jitter 0.3 for brightness, contrast, saturation and hue (in random order),
    a random resized crop (scale 0.7-1.0, ratio 3/4-4/3) to `input_size`, then one of
    no flip / horizontal / vertical / both with equal chance, then normalisation.
    """
    flips = v2.RandomChoice([
        v2.Identity(),
        v2.RandomHorizontalFlip(p=1.0),
        v2.RandomVerticalFlip(p=1.0),
        v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.RandomVerticalFlip(p=1.0)]),
    ])
    return v2.Compose([
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.3),
        v2.RandomResizedCrop(_size(input_size), scale=(0.7, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                             interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        flips,
        *_to_normalised(mean, std),
    ])


def resize_normalise(input_size: int | Sequence[int] | None, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Bilinear resize of frame and label to `input_size` (None: keep the size), then normalisation."""
    steps: list[v2.Transform] = []
    if input_size is not None:
        steps.append(PillowResize(_size(input_size), interpolation=v2.InterpolationMode.BILINEAR,
                                  antialias=True))
    return v2.Compose([*steps, *_to_normalised(mean, std)])


def get_transforms(image_mode: bool, input_size: int | Sequence[int],
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                   clip_augment: bool = False) -> dict[str, v2.Compose]:
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

    A v2 transform is called once on the whole list when all frames have the same size,
    so random parameters are shared by the clip; any other callable is called per frame.
    """
    if transform is None:
        return samples
    sizes = {tuple(s["image"].shape[-2:]) for s in samples}
    if isinstance(transform, v2.Transform) and len(sizes) == 1:
        return list(transform(samples))
    return [transform(sample) for sample in samples]
