"""Resample2d: warp an image by a dense flow field, in plain PyTorch.

output(y, x) = bilinear sample of img at (x + u(y, x), y + v(y, x)), the sample position
clamped to the image (pixels beyond a border repeat the border). NVIDIA's kernel clamps the
four tap indices rather than the position, which gives the same values; written here as
`grid_sample(padding_mode="border", align_corners=True)`, so it runs on any device and is
differentiable with respect to both the image and the flow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .precision import run_full_precision


def _normalised_grid(flow: Tensor) -> Tensor:
    """Pixel positions plus `flow` ([B, 2, H, W], u then v) as grid_sample's [-1, 1] grid [B, H, W, 2]."""
    _, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype)
    # align_corners=True maps -1 and 1 to the first and last pixel centres; a size of 1 maps to 0.
    gx = (flow[:, 0] + xs.view(1, 1, width)) * (2.0 / max(width - 1, 1)) - 1.0
    gy = (flow[:, 1] + ys.view(1, height, 1)) * (2.0 / max(height - 1, 1)) - 1.0
    return torch.stack((gx, gy), dim=-1)


def _resample(img: Tensor, flow: Tensor) -> Tensor:
    return F.grid_sample(
        img, _normalised_grid(flow), mode="bilinear", padding_mode="border", align_corners=True
    )


def resample2d(img: Tensor, flow: Tensor) -> Tensor:
    """Warp `img` [B, C, H, W] by `flow` [B, 2, H, W] (pixels; channel 0 horizontal, 1 vertical).

    Sample positions outside the image are clamped to it. Computed in float32 (float64 stays
    float64) even under autocast; the result has the inputs' promoted dtype.
    """
    if img.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"resample2d: expects img [B, C, H, W] and flow [B, 2, H, W], got "
            f"{tuple(img.shape)} and {tuple(flow.shape)}"
        )
    if img.shape[0] != flow.shape[0] or img.shape[2:] != flow.shape[2:]:
        raise ValueError(
            f"resample2d: img {tuple(img.shape)} and flow {tuple(flow.shape)} differ in batch or spatial size"
        )
    return run_full_precision(_resample, img, flow)


class Resample2d(nn.Module):
    """Module form of `resample2d` (NVIDIA's layer with its default kernel_size 1)."""

    def __init__(self, kernel_size: int = 1) -> None:
        super().__init__()
        if kernel_size != 1:
            raise NotImplementedError(f"resample2d: only kernel_size 1 is implemented, got {kernel_size}")

    def forward(self, img: Tensor, flow: Tensor) -> Tensor:
        return resample2d(img, flow)
