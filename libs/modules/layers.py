"""Small shared layers, the fresh initialisation of the layers RCRNet adds to ResNet-50, and the
channels-last weight layout."""
from __future__ import annotations

import torch
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


def kaiming_normal_fan_out_(weight: torch.Tensor) -> None:
    """Kaiming normal (fan_out, relu) initialisation of a conv weight, as torchvision's ResNet and
    the release's new layers use. Nothing on the meta device, where checkpoints are built before
    their weights are loaded: `normal_` on meta tensors imports torch._dynamo (1.4 s of a run)."""
    if not weight.is_meta:
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")


def fresh_init_(module: nn.Module) -> None:
    """Initialise every conv and BatchNorm inside `module` as the release does for its new layers.

    Conv weights: Kaiming normal (fan_out, relu); BatchNorm weights: 1; every bias: 0.001.
    Applied to everything outside the ImageNet backbone (as the release's libs/networks/rcrnet.py does).
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            kaiming_normal_fan_out_(layer.weight)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, FRESH_BIAS)
        elif isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(layer.weight)
            nn.init.constant_(layer.bias, FRESH_BIAS)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put every Conv2d weight in channels-last layout (Conv3d and others are left alone).

    oneDNN and cuDNN then convolve channels-last activations without reordering each one.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return model
