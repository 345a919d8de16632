"""Small shared layers and the fresh initialisation of the layers RCRNet adds to ResNet-50."""
from __future__ import annotations

from torch import nn

FRESH_BIAS = 0.001


class ConvBNReLU(nn.Sequential):
    """Conv2d without bias, BatchNorm2d, ReLU: the `conv` / `bn` unit of ASPP, refinement and decoder."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)


def fresh_init_(module: nn.Module) -> None:
    """Initialise every conv and BatchNorm inside `module` as the release does for its new layers.

    Conv weights: Kaiming normal (fan_out, relu); BatchNorm weights: 1; every bias: 0.001.
    Applied to everything outside the ImageNet backbone (SPEC §3).
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.constant_(layer.bias, FRESH_BIAS)
        elif isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(layer.weight)
            nn.init.constant_(layer.bias, FRESH_BIAS)
