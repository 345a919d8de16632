"""FlowNetFusion: merges FlowNet2's large- and small-displacement flows at full resolution."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import conv, deconv, i_conv, init_like_port_, predict_flow, upsample_flow


class FlowNetFusion(nn.Module):
    """The fusion net of FlowNet 2.0: input [B, 11, H, W], output flow0 [B, 2, H, W] in pixels.

    A shallow encoder (full, 1/2, 1/4 resolution) predicts at 1/4 and refines through 1/2
    back to full resolution with `inter_conv` layers before each prediction.
    """

    def __init__(self, input_channels: int = 11) -> None:
        super().__init__()
        self.conv0 = conv(input_channels, 64)
        self.conv1 = conv(64, 64, stride=2)
        self.conv1_1 = conv(64, 128)
        self.conv2 = conv(128, 128, stride=2)
        self.conv2_1 = conv(128, 128)

        self.deconv1 = deconv(128, 32)
        self.deconv0 = deconv(162, 16)

        self.inter_conv1 = i_conv(162, 32)
        self.inter_conv0 = i_conv(82, 16)

        self.predict_flow2 = predict_flow(128)
        self.predict_flow1 = predict_flow(32)
        self.predict_flow0 = predict_flow(16)

        self.upsampled_flow2_to_1 = upsample_flow(bias=True)
        self.upsampled_flow1_to_0 = upsample_flow(bias=True)
        init_like_port_(self)

    def forward(self, x: Tensor) -> Tensor:
        conv0 = self.conv0(x)
        conv1 = self.conv1_1(self.conv1(conv0))
        conv2 = self.conv2_1(self.conv2(conv1))

        flow2 = self.predict_flow2(conv2)
        concat1 = torch.cat((conv1, self.deconv1(conv2), self.upsampled_flow2_to_1(flow2)), 1)
        flow1 = self.predict_flow1(self.inter_conv1(concat1))
        concat0 = torch.cat((conv0, self.deconv0(concat1), self.upsampled_flow1_to_0(flow1)), 1)
        return self.predict_flow0(self.inter_conv0(concat0))
