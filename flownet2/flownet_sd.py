"""FlowNetSD: FlowNetS for small displacements (3x3 kernels, full-resolution conv0, inter_conv layers)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import add_encoder_tail, conv, deconv, i_conv, init_like_port_, predict_flow, upsample_flow


class FlowNetSD(nn.Module):
    """FlowNetSD of FlowNet 2.0: input [B, 6, H, W] (two normalised frames), H and W multiples of 64.

    Its decoder passes each concatenation through an `inter_conv` (no activation) before
    predicting. `forward` returns flow2, [B, 2, H/4, W/4]; `multiscale` returns [flow2, ..., flow6].
    """

    def __init__(self, input_channels: int = 6) -> None:
        super().__init__()
        self.conv0 = conv(input_channels, 64)
        self.conv1 = conv(64, 64, stride=2)
        self.conv1_1 = conv(64, 128)
        self.conv2 = conv(128, 128, stride=2)
        self.conv2_1 = conv(128, 128)
        self.conv3 = conv(128, 256, stride=2)
        self.conv3_1 = conv(256, 256)
        add_encoder_tail(self)

        self.deconv5 = deconv(1024, 512)
        self.deconv4 = deconv(1026, 256)
        self.deconv3 = deconv(770, 128)
        self.deconv2 = deconv(386, 64)

        self.inter_conv5 = i_conv(1026, 512)
        self.inter_conv4 = i_conv(770, 256)
        self.inter_conv3 = i_conv(386, 128)
        self.inter_conv2 = i_conv(194, 64)

        self.predict_flow6 = predict_flow(1024)
        self.predict_flow5 = predict_flow(512)
        self.predict_flow4 = predict_flow(256)
        self.predict_flow3 = predict_flow(128)
        self.predict_flow2 = predict_flow(64)

        self.upsampled_flow6_to_5 = upsample_flow(bias=True)
        self.upsampled_flow5_to_4 = upsample_flow(bias=True)
        self.upsampled_flow4_to_3 = upsample_flow(bias=True)
        self.upsampled_flow3_to_2 = upsample_flow(bias=True)
        init_like_port_(self)

    def multiscale(self, x: Tensor) -> list[Tensor]:
        """All five flow predictions [flow2, flow3, flow4, flow5, flow6], finest first."""
        conv1 = self.conv1_1(self.conv1(self.conv0(x)))
        conv2 = self.conv2_1(self.conv2(conv1))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))

        flow6 = self.predict_flow6(conv6)
        concat5 = torch.cat((conv5, self.deconv5(conv6), self.upsampled_flow6_to_5(flow6)), 1)
        flow5 = self.predict_flow5(self.inter_conv5(concat5))
        concat4 = torch.cat((conv4, self.deconv4(concat5), self.upsampled_flow5_to_4(flow5)), 1)
        flow4 = self.predict_flow4(self.inter_conv4(concat4))
        concat3 = torch.cat((conv3, self.deconv3(concat4), self.upsampled_flow4_to_3(flow4)), 1)
        flow3 = self.predict_flow3(self.inter_conv3(concat3))
        concat2 = torch.cat((conv2, self.deconv2(concat3), self.upsampled_flow3_to_2(flow3)), 1)
        flow2 = self.predict_flow2(self.inter_conv2(concat2))
        return [flow2, flow3, flow4, flow5, flow6]

    def forward(self, x: Tensor) -> Tensor:
        return self.multiscale(x)[0]
