"""Non-local block over space-time, embedded dot-product form without softmax (the release's
libs/modules/non_local_dot_product.py)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import fresh_init_


class NonLocalBlock3D(nn.Module):
    """z = x + W(f g) with f = theta(x)^T phi(x) / N over all N = T*h*w positions.

    No sub-sampling and no BatchNorm. W starts at zero, so the block starts as the identity.
    Input and output: [B, C, T, h, w].
    """

    def __init__(self, in_channels: int = 256, inter_channels: int | None = None) -> None:
        super().__init__()
        self.inter_channels = inter_channels or max(in_channels // 2, 1)
        self.g = nn.Conv3d(in_channels, self.inter_channels, kernel_size=1)
        self.W = nn.Conv3d(self.inter_channels, in_channels, kernel_size=1)
        self.theta = nn.Conv3d(in_channels, self.inter_channels, kernel_size=1)
        self.phi = nn.Conv3d(in_channels, self.inter_channels, kernel_size=1)
        fresh_init_(self)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, *positions = x.shape
        theta = self.theta(x).flatten(2)  # [B, C', N]
        phi = self.phi(x).flatten(2)
        g = self.g(x).flatten(2)
        n = phi.shape[-1]
        # Without a softmax the affinity is linear, so theta^T (phi g^T) / N equals (theta^T phi / N) g
        # while costing O(N C'^2) instead of O(N^2 C') and never holding the N x N matrix.
        context = torch.bmm(phi, g.transpose(1, 2)) / n  # [B, C', C']
        y = torch.bmm(context.transpose(1, 2), theta)  # [B, C', N]
        return x + self.W(y.view(batch, self.inter_channels, *positions))
