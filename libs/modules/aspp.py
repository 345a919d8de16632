"""Atrous spatial pyramid pooling with an image-level branch (the release's libs/networks/rcrnet.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNReLU, fresh_init_

# output stride -> dilation (= padding) of the three 3x3 branches
ASPP_RATES: dict[int, tuple[int, int, int]] = {16: (6, 12, 18), 8: (12, 24, 36)}


class ASPP(nn.Module):
    """Five parallel branches over the last backbone feature, fused by a 3x3 conv and Dropout2d(0.1).

    Branch order in the concatenation: image pool, 1x1 (`c0`), then the dilated 3x3 (`c1`..`c3`).
    """

    def __init__(self, in_channels: int = 2048, out_channels: int = 256, output_stride: int = 16) -> None:
        super().__init__()
        if output_stride not in ASPP_RATES:
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.stages = nn.Module()
        self.stages.add_module("c0", ConvBNReLU(in_channels, out_channels, 1))
        for index, rate in enumerate(ASPP_RATES[output_stride], start=1):
            self.stages.add_module(f"c{index}", ConvBNReLU(in_channels, out_channels, 3, rate, rate))
        self.imagepool = nn.Sequential()
        self.imagepool.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.imagepool.add_module("conv", ConvBNReLU(in_channels, out_channels, 1))
        self.fire = nn.Sequential()
        self.fire.add_module("conv", ConvBNReLU(5 * out_channels, out_channels, 3, padding=1))
        self.fire.add_module("dropout", nn.Dropout2d(0.1))
        fresh_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image_level = F.interpolate(self.imagepool(x), size=x.shape[2:], mode="bilinear", align_corners=False)
        branches = [image_level] + [stage(x) for stage in self.stages.children()]
        return self.fire(torch.cat(branches, dim=1))
