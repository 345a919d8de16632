"""RCRNet: dilated ResNet-50 + ASPP spatial feature extractor and a top-down pixel-wise classifier."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from libs.modules import ASPP, RELEASE_DECODER, Decoder, DilatedResNet50, RefinementBlock


class SpatialFeatures(NamedTuple):
    """What the spatial feature extractor hands the classifier: three skip features and ASPP's output."""

    block1: torch.Tensor  # layer1, 256 ch, stride 4
    block2: torch.Tensor  # layer2, 512 ch, stride 8
    block3: torch.Tensor  # layer3, 1024 ch, stride 16 (8 at output stride 8)
    aspp: torch.Tensor  # 256 ch, same size as block3


def _resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class RCRNet(nn.Module):
    """RCRNet (the release's libs/networks/rcrnet.py): logits [B, n_classes, H, W] for frames
    [B, input_channels, H, W].

    The split into `spatial_features` and `classify_pixels` lets RCRNet+NER insert its
    recurrent module between the two halves. `decoder`: "release" (the default: the release's
    resize-then-conv) or "factored" (the factored decoder, `libs.modules.Decoder`).
    """

    def __init__(self, n_classes: int = 1, output_stride: int = 16, input_channels: int = 3,
                 decoder: str = RELEASE_DECODER) -> None:
        super().__init__()
        self.resnet = DilatedResNet50(output_stride=output_stride, input_channels=input_channels)
        self.aspp = ASPP(2048, 256, output_stride)
        self.decoder = Decoder(128, 256, n_classes, decoder=decoder)
        self.refinement1 = RefinementBlock(td_channels=1024, bu_channels=256)
        self.refinement2 = RefinementBlock(td_channels=512, bu_channels=128)
        self.refinement3 = RefinementBlock(td_channels=256, bu_channels=128)

    @property
    def output_stride(self) -> int:
        return self.resnet.output_stride

    def spatial_features(self, x: torch.Tensor) -> SpatialFeatures:
        """Backbone stages 1-3 and the ASPP feature of frames [B, C, H, W]."""
        block1, block2, block3, block4 = self.resnet(x)
        return SpatialFeatures(block1, block2, block3, self.aspp(block4))

    def classify_pixels(
        self, features: SpatialFeatures, deep: torch.Tensor, size: torch.Size | tuple[int, int]
    ) -> torch.Tensor:
        """Top-down refinement from `deep` (ASPP or NER output) through block3, block2, block1 to logits.

        Each refined map is resized to the next skip feature's size, the last one to `size` (the input's).
        """
        x = self.refinement1(features.block3, deep)
        x = self.refinement2(features.block2, _resize(x, features.block2.shape[2:]))
        x = self.refinement3(features.block1, _resize(x, features.block1.shape[2:]))
        if isinstance(self.decoder, Decoder):
            return self.decoder.forward_resized(x, size)
        # a wrapped decoder (e.g. a float32 island under bf16 autocast) takes the resized map
        return self.decoder(_resize(x, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"RCRNet expects frames [B, C, H, W], got shape {tuple(x.shape)}")
        features = self.spatial_features(x)
        return self.classify_pixels(features, features.aspp, x.shape[2:])

    def freeze_bn(self) -> None:
        """Put every BatchNorm in eval mode (running statistics frozen; affine parameters still train)."""
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()

