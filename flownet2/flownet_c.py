"""FlowNetC: a siamese encoder, a correlation of the two frames' features, the flow decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .correlation import Correlation
from .decoder import FlowDecoderNet
from .layers import LEAKY_SLOPE, add_encoder_tail, conv, init_like_port_


class FlowNetC(FlowDecoderNet):
    """FlowNetC of FlowNet 2.0: input [B, 6, H, W] (two normalised RGB frames), H and W multiples of 64.

    `forward` returns flow2, [B, 2, H/4, W/4], in units of div_flow (20) pixels;
    `multiscale` returns [flow2, ..., flow6] as used by multi-scale training losses.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv(3, 64, kernel_size=7, stride=2)
        self.conv2 = conv(64, 128, kernel_size=5, stride=2)
        self.conv3 = conv(128, 256, kernel_size=5, stride=2)
        self.conv_redir = conv(256, 32, kernel_size=1, stride=1)
        self.corr = Correlation(pad_size=20, kernel_size=1, max_displacement=20, stride1=1, stride2=2)
        self.conv3_1 = conv(473, 256)
        add_encoder_tail(self)
        self._add_flow_decoder(upsample_bias=True)
        init_like_port_(self)

    def multiscale(self, x: Tensor) -> list[Tensor]:
        """All five flow predictions [flow2, flow3, flow4, flow5, flow6], finest first."""
        # The first frame's and second frame's features come from the same layers.
        conv2a = self.conv2(self.conv1(x[:, :3]))
        conv3a = self.conv3(conv2a)
        conv3b = self.conv3(self.conv2(self.conv1(x[:, 3:])))
        corr = F.leaky_relu(self.corr(conv3a, conv3b), LEAKY_SLOPE)
        conv3_1 = self.conv3_1(torch.cat((self.conv_redir(conv3a), corr), 1))
        conv4 = self.conv4_1(self.conv4(conv3_1))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self._decode(conv6, conv5, conv4, conv3_1, conv2a)

    def forward(self, x: Tensor) -> Tensor:
        return self.multiscale(x)[0]
