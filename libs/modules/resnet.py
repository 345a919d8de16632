"""Dilated ResNet-50: the spatial feature extractor of RCRNet (the release's
libs/networks/resnet_dilation.py).

Built on torchvision's `ResNet` and `Bottleneck`, so parameter names (and ImageNet
weights) are torchvision's. torchvision's `replace_stride_with_dilation` gives the first
block of a dilated stage the previous stage's dilation; the release dilates every block
of the stage, the first one included, so the 3x3 convs are patched after construction.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

RESNET50_BLOCKS = (3, 4, 6, 3)

# output stride -> (strides, dilations) of layer1..layer4
STAGE_LAYOUTS: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    8: ((1, 2, 1, 1), (1, 1, 2, 2)),
}


class ResNetFeatures(NamedTuple):
    """The outputs of the four stages: 256, 512, 1024 and 2048 channels."""

    block1: torch.Tensor
    block2: torch.Tensor
    block3: torch.Tensor
    block4: torch.Tensor


def stage_layout(output_stride: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (strides, dilations) of the four stages for an output stride of 8 or 16."""
    if output_stride not in STAGE_LAYOUTS:
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    return STAGE_LAYOUTS[output_stride]


class DilatedResNet50(ResNet):
    """ResNet-50 without its classifier, with dilated last stage(s), returning every stage's output.

    `input_channels` sets the stem conv's inputs (3 for RCRNet, 7 for FGPLG).
    """

    def __init__(self, output_stride: int = 16, input_channels: int = 3) -> None:
        strides, dilations = stage_layout(output_stride)
        # stride 1 in layer3/layer4 is what torchvision calls "replace stride with dilation"
        super().__init__(
            Bottleneck, list(RESNET50_BLOCKS), replace_stride_with_dilation=[s == 1 for s in strides[1:]]
        )
        del self.fc, self.avgpool
        if input_channels != 3:
            self.conv1 = nn.Conv2d(input_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.output_stride = output_stride
        self.input_channels = input_channels
        for stage, dilation in zip(self.stages(), dilations):
            for block in stage:
                block.conv2.dilation = (dilation, dilation)
                block.conv2.padding = (dilation, dilation)

    def stages(self) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential, nn.Sequential]:
        """layer1..layer4."""
        return self.layer1, self.layer2, self.layer3, self.layer4

    def forward(self, x: torch.Tensor) -> ResNetFeatures:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        block1 = self.layer1(x)
        block2 = self.layer2(block1)
        block3 = self.layer3(block2)
        block4 = self.layer4(block3)
        return ResNetFeatures(block1, block2, block3, block4)
