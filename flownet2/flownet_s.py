"""FlowNetS: a single-stream encoder over stacked inputs, then the flow decoder."""

from __future__ import annotations

from torch import Tensor

from .decoder import FlowDecoderNet
from .layers import add_encoder_tail, conv, init_like_port_


class FlowNetS(FlowDecoderNet):
    """FlowNetS of FlowNet 2.0 (12 input channels in FlowNet2's stack), H and W multiples of 64.

    Its `upsampled_flow*` layers have no bias. `forward` returns flow2, [B, 2, H/4, W/4], in
    units of div_flow pixels; `multiscale` returns [flow2, ..., flow6].
    """

    def __init__(self, input_channels: int = 12) -> None:
        super().__init__()
        self.conv1 = conv(input_channels, 64, kernel_size=7, stride=2)
        self.conv2 = conv(64, 128, kernel_size=5, stride=2)
        self.conv3 = conv(128, 256, kernel_size=5, stride=2)
        self.conv3_1 = conv(256, 256)
        add_encoder_tail(self)
        self._add_flow_decoder(upsample_bias=False)
        init_like_port_(self)

    def multiscale(self, x: Tensor) -> list[Tensor]:
        """All five flow predictions [flow2, flow3, flow4, flow5, flow6], finest first."""
        conv2 = self.conv2(self.conv1(x))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self._decode(conv6, conv5, conv4, conv3, conv2)

    def forward(self, x: Tensor) -> Tensor:
        return self.multiscale(x)[0]
