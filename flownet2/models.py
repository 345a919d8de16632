"""FlowNet 2.0 (NVIDIA's PyTorch port, as vendored by RCRNet), in plain PyTorch.

FlowNet2 stacks FlowNetC, two FlowNetS (each refining the previous flow from the frames,
the second frame warped by that flow, the flow and the brightness error), a FlowNetSD for
small displacements, and a fusion net. Parameter names are the port's, so NVIDIA's
`FlowNet2_checkpoint.pth.tar` loads as it is (see `flownet2.checkpoint`).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .channelnorm import ChannelNorm
from .flownet_c import FlowNetC
from .flownet_fusion import FlowNetFusion
from .flownet_s import FlowNetS
from .flownet_sd import FlowNetSD
from .resample2d import Resample2d

__all__ = ["FlowNet2", "FlowNetC", "FlowNetS", "FlowNetSD", "FlowNetFusion", "SIZE_MULTIPLE"]

SIZE_MULTIPLE = 64


def _upsample4(flow: Tensor, mode: str) -> Tensor:
    """x4 upsampling of a 1/4-resolution flow, as the port's nn.Upsample (bilinear: align_corners=False)."""
    if mode == "bilinear":
        return F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False)
    return F.interpolate(flow, scale_factor=4, mode="nearest")


class FlowNet2(nn.Module):
    """FlowNet 2.0: two frames [B, 3, 2, H, W] in [0, rgb_max] -> flow [B, 2, H, W] in pixels.

    The flow maps each pixel of frame 0 to its position in frame 1 (u horizontal, v vertical).
    H and W must be multiples of 64; `flownet2.padding.estimate_flow` handles any size.
    """

    def __init__(self, rgb_max: float = 1.0, div_flow: float = 20.0) -> None:
        super().__init__()
        self.rgb_max = rgb_max
        self.div_flow = div_flow
        self.channelnorm = ChannelNorm()
        self.flownetc = FlowNetC()
        self.resample = Resample2d()
        self.flownets_1 = FlowNetS(input_channels=12)
        self.flownets_2 = FlowNetS(input_channels=12)
        self.flownets_d = FlowNetSD(input_channels=6)
        self.flownetfusion = FlowNetFusion(input_channels=11)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: float) -> FlowNet2:
        """A FlowNet2 with NVIDIA's checkpoint (e.g. `FlowNet2_checkpoint.pth.tar`) loaded strictly."""
        from .checkpoint import load_flownet2_checkpoint

        model = cls(**kwargs)
        load_flownet2_checkpoint(model, path)
        return model

    def _refine_input(self, x: Tensor, flow: Tensor) -> Tensor:
        """FlowNetS input: the frames, frame 1 warped by `flow`, flow / div_flow, the brightness error."""
        warped = self.resample(x[:, 3:], flow)
        error = self.channelnorm(x[:, :3] - warped)
        return torch.cat((x, warped, flow / self.div_flow, error), 1)

    def _warp_error(self, x: Tensor, flow: Tensor) -> Tensor:
        return self.channelnorm(x[:, :3] - self.resample(x[:, 3:], flow))

    def forward(self, inputs: Tensor) -> Tensor:
        if inputs.dim() != 5 or inputs.shape[1] != 3 or inputs.shape[2] != 2:
            raise ValueError(f"FlowNet2 expects [B, 3, 2, H, W] (two RGB frames), got {tuple(inputs.shape)}")
        height, width = inputs.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise ValueError(
                f"FlowNet2 needs H and W multiples of {SIZE_MULTIPLE}, got {height}x{width}; "
                "use flownet2.padding.estimate_flow for other sizes"
            )
        # Per sample and channel, the mean over both frames and all pixels.
        mean = inputs.reshape(*inputs.shape[:2], -1).mean(dim=-1).view(*inputs.shape[:2], 1, 1, 1)
        frames = (inputs - mean) / self.rgb_max
        x = torch.cat((frames[:, :, 0], frames[:, :, 1]), dim=1)

        flow_c = _upsample4(self.flownetc(x) * self.div_flow, "bilinear")
        flow_s1 = _upsample4(self.flownets_1(self._refine_input(x, flow_c)) * self.div_flow, "bilinear")
        flow_s2 = _upsample4(self.flownets_2(self._refine_input(x, flow_s1)) * self.div_flow, "nearest")
        # Divided, not multiplied: the release's quirk, which its fusion weights expect.
        flow_sd = _upsample4(self.flownets_d(x) / self.div_flow, "nearest")

        fusion_input = torch.cat(
            (
                x[:, :3],
                flow_sd,
                flow_s2,
                self.channelnorm(flow_sd),
                self.channelnorm(flow_s2),
                self._warp_error(x, flow_sd),
                self._warp_error(x, flow_s2),
            ),
            dim=1,
        )
        return self.flownetfusion(fusion_input)
