"""The coarse-to-fine flow decoder shared by FlowNetC and FlowNetS.

From the 1/64-scale encoder output it predicts flow6, then at each finer level concatenates
the encoder skip, a deconvolution of the previous level and the upsampled flow, and
predicts again, down to flow2 at 1/4 of the input resolution. The layers are attributes of
the network itself (`deconv5`, `predict_flow6`, `upsampled_flow6_to_5`, ...) as in NVIDIA's
port, so they are created by `_add_flow_decoder` after the encoder, keeping the port's
parameter order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import deconv, predict_flow, upsample_flow


class FlowDecoderNet(nn.Module):
    """Base of FlowNetC and FlowNetS: the decoder's layers and forward pass."""

    def _add_flow_decoder(self, upsample_bias: bool) -> None:
        self.deconv5 = deconv(1024, 512)
        self.deconv4 = deconv(1026, 256)
        self.deconv3 = deconv(770, 128)
        self.deconv2 = deconv(386, 64)

        self.predict_flow6 = predict_flow(1024)
        self.predict_flow5 = predict_flow(1026)
        self.predict_flow4 = predict_flow(770)
        self.predict_flow3 = predict_flow(386)
        self.predict_flow2 = predict_flow(194)

        self.upsampled_flow6_to_5 = upsample_flow(upsample_bias)
        self.upsampled_flow5_to_4 = upsample_flow(upsample_bias)
        self.upsampled_flow4_to_3 = upsample_flow(upsample_bias)
        self.upsampled_flow3_to_2 = upsample_flow(upsample_bias)

    def _decode(
        self, conv6: Tensor, conv5: Tensor, conv4: Tensor, conv3: Tensor, conv2: Tensor
    ) -> list[Tensor]:
        """Flows [flow2, flow3, flow4, flow5, flow6], finest first (flow2 at 1/4 resolution)."""
        flow6 = self.predict_flow6(conv6)
        concat5 = torch.cat((conv5, self.deconv5(conv6), self.upsampled_flow6_to_5(flow6)), 1)
        flow5 = self.predict_flow5(concat5)
        concat4 = torch.cat((conv4, self.deconv4(concat5), self.upsampled_flow5_to_4(flow5)), 1)
        flow4 = self.predict_flow4(concat4)
        concat3 = torch.cat((conv3, self.deconv3(concat4), self.upsampled_flow4_to_3(flow4)), 1)
        flow3 = self.predict_flow3(concat3)
        concat2 = torch.cat((conv2, self.deconv2(concat3), self.upsampled_flow3_to_2(flow3)), 1)
        flow2 = self.predict_flow2(concat2)
        return [flow2, flow3, flow4, flow5, flow6]
