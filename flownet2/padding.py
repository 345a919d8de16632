"""Optical flow for frames of any size with FlowNet2, which needs sizes that are multiples of 64.

Two ways to get there, chosen by `mode`:

- "pad" (default): pad both frames to the next multiple of 64 by repeating their border
  pixels, run the network, and crop the flow back. The image is not resampled, so the
  network sees objects and motions at their true pixel scale (its correlation reaches
  +-40 pixels at full resolution, and its weights were learned at that scale), and the flow
  needs no rescaling. Repeating the border is also what FlowNet2's own warping does for
  positions outside the frame (Resample2d clamps to the border). The cost is up to 63
  extra rows and columns of computation, and the padded pixels slightly shift the
  per-channel mean FlowNet2 subtracts.
- "resize": resize both frames bilinearly to the nearest multiples of 64 (at least 64),
  run the network, resize the flow back and multiply u by W / W' and v by H / H', since a
  displacement measured on the resized frames is in resized pixels. Cheaper for sizes just
  above a multiple of 64, at the price of a small anisotropic rescaling of the content.

Sizes that already are multiples of 64 go through the network unchanged in both modes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MULTIPLE = 64


def padded_length(length: int, multiple: int = MULTIPLE) -> int:
    """The smallest multiple of `multiple` that is at least `length`."""
    return -(-length // multiple) * multiple


def resized_length(length: int, multiple: int = MULTIPLE) -> int:
    """The multiple of `multiple` nearest to `length`, at least `multiple`."""
    return max(multiple, int(round(length / multiple)) * multiple)


def _check_frames(frame0: Tensor, frame1: Tensor) -> None:
    if frame0.dim() != 4 or frame0.shape[1] != 3 or frame0.shape != frame1.shape:
        raise ValueError(
            f"estimate_flow: expects two RGB frames [B, 3, H, W] of one shape, got "
            f"{tuple(frame0.shape)} and {tuple(frame1.shape)}"
        )


def _flow_by_padding(model: nn.Module, frame0: Tensor, frame1: Tensor, multiple: int) -> Tensor:
    height, width = frame0.shape[-2:]
    pad_h = padded_length(height, multiple) - height
    pad_w = padded_length(width, multiple) - width
    top, left = pad_h // 2, pad_w // 2
    pads = (left, pad_w - left, top, pad_h - top)
    if pad_h or pad_w:
        frame0 = F.pad(frame0, pads, mode="replicate")
        frame1 = F.pad(frame1, pads, mode="replicate")
    flow = model(torch.stack((frame0, frame1), dim=2))
    return flow[..., top : top + height, left : left + width]


def _flow_by_resizing(model: nn.Module, frame0: Tensor, frame1: Tensor, multiple: int) -> Tensor:
    height, width = frame0.shape[-2:]
    size = (resized_length(height, multiple), resized_length(width, multiple))
    if size == (height, width):
        return model(torch.stack((frame0, frame1), dim=2))
    frames = torch.stack(
        [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in (frame0, frame1)], dim=2
    )
    flow = model(frames)
    flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    scale = torch.tensor([width / size[1], height / size[0]], dtype=flow.dtype, device=flow.device)
    return flow * scale.view(1, 2, 1, 1)


def estimate_flow(
    model: nn.Module,
    frame0: Tensor,
    frame1: Tensor,
    *,
    mode: Literal["pad", "resize"] = "pad",
    multiple: int = MULTIPLE,
) -> Tensor:
    """Flow from `frame0` to `frame1` ([B, 3, H, W] in [0, rgb_max], any H and W) -> [B, 2, H, W].

    `model` is a FlowNet2 (or anything with its call convention: [B, 3, 2, H', W'] -> [B, 2, H', W']
    for H', W' multiples of `multiple`). The flow is in pixels of the given frames. See the
    module docstring for the two modes; "pad" is the default because it keeps the pixel scale.
    """
    _check_frames(frame0, frame1)
    if mode == "pad":
        return _flow_by_padding(model, frame0, frame1, multiple)
    if mode == "resize":
        return _flow_by_resizing(model, frame0, frame1, multiple)
    raise ValueError(f"estimate_flow: mode must be 'pad' or 'resize', got {mode!r}")
