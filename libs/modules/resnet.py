"""Dilated ResNet-50: the spatial feature extractor of RCRNet (the release's
libs/networks/resnet_dilation.py).

Its modules and parameter names are torchvision's ResNet-50's (`conv1`, `bn1`,
`layer1.0.downsample.0`, ...), so torchvision's ImageNet weights and the release's
checkpoints load as they are, but it does not import torchvision: importing torchvision
takes about 1.4 s (its detection ops import torch._dynamo), a tenth of an `inference.py`
run. The release dilates every block of a dilated stage, the first one included (where
torchvision's `replace_stride_with_dilation` gives the first block the previous dilation).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .layers import kaiming_normal_fan_out_

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


class Bottleneck(nn.Module):
    """ResNet's bottleneck block (torchvision's `Bottleneck`, the same names): 1x1 reduce, 3x3
    (strided, dilated), 1x1 expand to `planes * expansion`, each followed by BatchNorm, and a
    residual sum through `downsample` where given."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class MaxPool2d(nn.MaxPool2d):
    """`nn.MaxPool2d` whose CPU forward without autograd is the maximum of strided slices, rows
    then columns, of the -inf padded map: the same values (a maximum is exact, NaN propagates as
    in ATen's kernel), faster than ATen's NCHW kernel on the ResNet stem's map. With autograd, on
    other devices or layouts, with options the slices do not cover, or traced (an ONNX export
    keeps one MaxPool node and its dynamic sizes), ATen's kernel: its backward sends a tied
    maximum's gradient to one input, as the release's did."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous() or self.ceil_mode
                or self.return_indices or self.dilation not in (1, (1, 1)) or torch.jit.is_tracing()
                or (torch.is_grad_enabled() and x.requires_grad)):
            return super().forward(x)
        kernel, stride, padding = (_pair(v) for v in (self.kernel_size, self.stride or self.kernel_size,
                                                      self.padding))
        padded = F.pad(x, (padding[1], padding[1], padding[0], padding[0]), value=float("-inf"))
        for dim, k, s in ((2, kernel[0], stride[0]), (3, kernel[1], stride[1])):
            length = (padded.shape[dim] - k) // s + 1
            every = (slice(None),) * dim + (slice(None, None, s),)  # every s-th row (column)
            windows = [padded.narrow(dim, i, s * (length - 1) + 1)[every] for i in range(k)]
            padded = windows[0]
            for window in windows[1:]:
                padded = torch.maximum(padded, window)
        return padded


def projection(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """The 1x1 conv + BatchNorm `downsample` of a block whose output differs in size or channels."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class DilatedResNet50(nn.Module):
    """ResNet-50 without its classifier, with dilated last stage(s), returning every stage's output.

    `input_channels` sets the stem conv's inputs (3 for RCRNet, 7 for FGPLG). Initialised as
    torchvision initialises a ResNet: Kaiming normal (fan_out, relu) convs, BatchNorm 1 and 0.
    """

    def __init__(self, output_stride: int = 16, input_channels: int = 3) -> None:
        super().__init__()
        strides, dilations = stage_layout(output_stride)
        self.conv1 = nn.Conv2d(input_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = 64
        for index, (planes, blocks, stride, dilation) in enumerate(
                zip((64, 128, 256, 512), RESNET50_BLOCKS, strides, dilations), start=1):
            out_channels = planes * Bottleneck.expansion
            first = Bottleneck(channels, planes, stride, projection(channels, out_channels, stride), dilation)
            layers = [first]
            layers += [Bottleneck(out_channels, planes, dilation=dilation) for _ in range(1, blocks)]
            setattr(self, f"layer{index}", nn.Sequential(*layers))
            channels = out_channels
        self.output_stride = output_stride
        self.input_channels = input_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                kaiming_normal_fan_out_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

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
