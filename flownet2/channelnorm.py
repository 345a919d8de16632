"""ChannelNorm: the per-pixel L2 norm over channels, [B, C, H, W] -> [B, 1, H, W].

FlowNet2 uses it for the brightness error |frame0 - warped frame1| and for flow magnitudes.
`torch.linalg.vector_norm` gives a zero (not NaN) gradient where the norm is zero, which
plays the role of the epsilon in NVIDIA's backward kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .precision import run_full_precision


def _norm(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)


def channel_norm(x: Tensor) -> Tensor:
    """L2 norm of `x` [B, C, H, W] over channels, accumulated in float32 (float64 stays float64)."""
    if x.dim() != 4:
        raise ValueError(f"channel_norm: expects [B, C, H, W], got {tuple(x.shape)}")
    return run_full_precision(_norm, x)


class ChannelNorm(nn.Module):
    """Module form of `channel_norm` (NVIDIA's layer with its default norm_deg 2)."""

    def __init__(self, norm_deg: int = 2) -> None:
        super().__init__()
        if norm_deg != 2:
            raise NotImplementedError(
                f"channel_norm: only the L2 norm is implemented, got norm_deg {norm_deg}"
            )

    def forward(self, x: Tensor) -> Tensor:
        return channel_norm(x)
