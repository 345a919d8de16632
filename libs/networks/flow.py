"""Optical-flow estimators for FGPLG: FlowNet 2.0 (the release's) and OpenCV's DIS (weight-free).

Both take two batches of RGB frames in [0, 1] ([B, 3, H, W], any H and W) and return the
flow [B, 2, H, W] in pixels that maps each pixel of the first frame to its position in the
second (channel 0 horizontal, 1 vertical), so `resample2d(x1, flow)` brings `x1` onto the
first frame's grid. Every sample of a batch gets its own flow.

The estimator is never trained: its parameters (FlowNet2's) do not require gradients, it
stays in eval mode, and it runs without autograd.
"""
from __future__ import annotations

import contextlib
from typing import ClassVar

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from flownet2.models import FlowNet2
from flownet2.padding import estimate_flow

FLOW_CHOICES: tuple[str, ...] = ("flownet2", "dis")

# OpenCV's DIS presets; "medium" adds variational refinement at a finer scale, which the
# small, fast-moving synthetic objects need and which stays cheap at 448x448.
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _check_pair(frame0: Tensor, frame1: Tensor) -> None:
    if frame0.dim() != 4 or frame0.shape[1] != 3 or frame0.shape != frame1.shape:
        raise ValueError(
            f"flow estimation expects two RGB batches [B, 3, H, W] of one shape, got "
            f"{tuple(frame0.shape)} and {tuple(frame1.shape)}"
        )


class FlowEstimator(nn.Module):
    """Base class: `estimate(frame0, frame1)` -> flow [B, 2, H, W] from frame0 to frame1 (pixels)."""

    name: ClassVar[str] = ""

    def estimate(self, frame0: Tensor, frame1: Tensor) -> Tensor:
        raise NotImplementedError

    def train(self, mode: bool = True) -> FlowEstimator:
        """Always eval: the estimator is frozen whatever mode its owner is put in."""
        return super().train(False)


class FlowNet2Estimator(FlowNet2, FlowEstimator):
    """FlowNet 2.0 as FGPLG's estimator. Its parameter names are FlowNet2's (`flownetc.*`, ...).

    The frames go in as they are, in [0, 1], and FlowNet2 divides them by `rgb_max` (as in
    the release, whose default rgb_max is 1). Runs in its parameters' dtype (float32, like
    the release, which cast the frames with `.float()`) with autocast off, unless
    `half_precision` (the release's `--fp16`): then under autocast (float16 on CUDA,
    bfloat16 on CPU), the correlation, warping and channel norm staying in float32. Sizes
    that are not multiples of 64 are padded (see `flownet2.padding`).
    """

    name: ClassVar[str] = "flownet2"

    def __init__(self, rgb_max: float = 1.0, half_precision: bool = False) -> None:
        super().__init__(rgb_max=rgb_max)
        self.half_precision = half_precision
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def estimate(self, frame0: Tensor, frame1: Tensor) -> Tensor:
        _check_pair(frame0, frame1)
        dtype = next(self.parameters()).dtype
        device_type = frame0.device.type
        if self.half_precision:
            half = torch.float16 if device_type == "cuda" else torch.bfloat16
            context: contextlib.AbstractContextManager = torch.autocast(device_type, dtype=half)
        else:
            context = torch.autocast(device_type, enabled=False)
        with torch.no_grad(), context:
            flow = estimate_flow(self, frame0.to(dtype), frame1.to(dtype))
        return flow.to(dtype)


class DISFlowEstimator(FlowEstimator):
    """OpenCV's Dense Inverse Search optical flow, per sample on the CPU: no weights, no GPU.

    Frames are converted to 8-bit grey (OpenCV's RGB->grey weights) and the flow is handed
    back on the frames' device and dtype. The OpenCV object is created per call, so the
    module stays picklable and safe to copy.
    """

    name: ClassVar[str] = "dis"

    def __init__(self, preset: str = "medium") -> None:
        super().__init__()
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; expected one of {', '.join(DIS_PRESETS)}")
        self.preset = preset

    @staticmethod
    def _grey(frames: Tensor) -> np.ndarray:
        rgb = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        return rgb.permute(0, 2, 3, 1).cpu().numpy()

    def estimate(self, frame0: Tensor, frame1: Tensor) -> Tensor:
        _check_pair(frame0, frame1)
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])
        flows = []
        for rgb0, rgb1 in zip(self._grey(frame0), self._grey(frame1)):
            grey0 = cv2.cvtColor(np.ascontiguousarray(rgb0), cv2.COLOR_RGB2GRAY)
            grey1 = cv2.cvtColor(np.ascontiguousarray(rgb1), cv2.COLOR_RGB2GRAY)
            flows.append(dis.calc(grey0, grey1, None))
        flow = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)
        return flow.to(device=frame0.device, dtype=frame0.dtype)


def build_flow_estimator(flow: str, rgb_max: float = 1.0, half_precision: bool = False) -> FlowEstimator:
    """The estimator named `flow` ("flownet2" or "dis"); `rgb_max` and `half_precision` are FlowNet2's."""
    if flow == "flownet2":
        return FlowNet2Estimator(rgb_max=rgb_max, half_precision=half_precision)
    if flow == "dis":
        return DISFlowEstimator()
    raise ValueError(f"unknown flow estimator {flow!r}; expected one of {', '.join(FLOW_CHOICES)}")
