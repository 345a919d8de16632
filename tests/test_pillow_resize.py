"""Frames are resized by Pillow's bilinear filter, as the release's PIL transforms did."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from libs.datasets.transforms import pillow_resize, resize_label, resize_normalise


def _frame(height: int = 480, width: int = 854) -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(smooth).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(big.astype(int) + rng.integers(-20, 21, big.shape), 0, 255).astype(np.uint8)


def test_frames_resized_exactly_as_pillow():
    array = _frame()
    expected = np.asarray(Image.fromarray(array).resize((448, 448), Image.Resampling.BILINEAR))
    image = torch.from_numpy(array).permute(2, 0, 1)
    resized = pillow_resize(image, [448, 448])
    assert resized.dtype == torch.uint8
    assert np.array_equal(resized.permute(1, 2, 0).numpy(), expected)
    # torchvision's own uint8 kernel is what this replaces: it does differ
    tensor_kernel = v2.Resize([448, 448], antialias=True)(tv_tensors.Image(image)).permute(1, 2, 0).numpy()
    assert not np.array_equal(tensor_kernel, expected)


def test_labels_take_torchvisions_float_kernel_and_pipeline_uses_pillow():
    """Labels are resized as torchvision's v2.Resize resizes float images (bilinear,
    antialiased), bit for bit, then clamped to [0, 1]."""
    from libs.datasets.augment import SoftMask

    label = torch.rand(1, 60, 90)
    for size in ([30, 40], [90, 100]):
        expected = v2.Resize(size, antialias=True)(SoftMask(label)).as_subclass(torch.Tensor)
        assert torch.equal(resize_label(label, size), expected)
    sample = resize_normalise(448)({"image": torch.from_numpy(_frame()).permute(2, 0, 1)})
    assert sample["image"].shape == (3, 448, 448) and sample["image"].dtype == torch.float32


def test_normalised_frames_are_the_releases_bit_for_bit():
    """Pillow's bilinear resize, then x / 255 (the release's ToTensor divides; torchvision's
    ToDtype multiplies by 1/255, a last-bit difference on half of the values), then
    (x - mean) / std: the release's normalised input exactly."""
    array = _frame()
    resized = np.asarray(Image.fromarray(array).resize((448, 448), Image.Resampling.BILINEAR))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    release = (torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div(255) - mean) / std
    frame = torch.from_numpy(array).permute(2, 0, 1)
    ours = resize_normalise(448)({"image": frame})["image"]
    assert type(ours) is torch.Tensor and torch.equal(ours, release)
    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 256)
    scaled = v2.ToDtype(torch.float32, scale=True)(tv_tensors.Image(values))
    assert not torch.equal(scaled.as_subclass(torch.Tensor), values.float().div(255))
