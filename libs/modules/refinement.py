"""Top-down refinement blocks and the full-resolution decoder of RCRNet's pixel-wise classifier
(the release's libs/networks/rcrnet.py)."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from .layers import ConvBNReLU, fresh_init_


class SkipBottleneck(Bottleneck):
    """torchvision's Bottleneck with expansion 2: reduces a backbone skip feature to 2 * planes channels."""

    expansion = 2

    def __init__(self, in_channels: int, planes: int) -> None:
        out_channels = planes * self.expansion
        projection = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), nn.BatchNorm2d(out_channels)
        )
        super().__init__(in_channels, planes, downsample=projection)


class RefinementBlock(nn.Module):
    """Fuses a backbone skip feature `td` with a deeper feature `bu` of the same spatial size.

    `skip` reduces td to `skip_channels`; `refine` is a 3x3 ConvBNReLU over concat(bu, skip(td)).
    """

    def __init__(
        self, td_channels: int, bu_channels: int, skip_channels: int = 96, out_channels: int = 128
    ) -> None:
        super().__init__()
        self.skip = SkipBottleneck(td_channels, skip_channels // SkipBottleneck.expansion)
        self.refine = ConvBNReLU(bu_channels + skip_channels, out_channels, 3, padding=1)
        fresh_init_(self)

    def forward(self, td: torch.Tensor, bu: torch.Tensor) -> torch.Tensor:
        return self.refine(torch.cat((bu, self.skip(td)), dim=1))


class Decoder(nn.Sequential):
    """3x3 ConvBNReLU (128 -> 256) then a 1x1 conv with bias to the class logits, at input resolution."""

    def __init__(self, in_channels: int = 128, hidden_channels: int = 256, n_classes: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, hidden_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_channels, n_classes, kernel_size=1)
        fresh_init_(self)
