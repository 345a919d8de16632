"""Non-local block over space-time, embedded dot-product form without softmax (the release's
libs/modules/non_local_dot_product.py)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import fresh_init_

AFFINITY_ELEMENTS = 1 << 21  # affinity entries formed at a time (8 MB in float32)


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
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [B, N, C']
        phi = self.phi(x).flatten(2)  # [B, C', N]
        g = self.g(x).flatten(2).transpose(1, 2)  # [B, N, C']
        # The release's order and layouts: the N x N affinity first, and y made contiguous before W
        # (a strided view would be channels-last, which the 1x1 Conv3d rounds differently).
        # theta^T (phi g^T) / N would be exact algebra at a 25th of the arithmetic, but a trained NER
        # module can amplify its other rounding into different maps (README, "Performance").
        # A large affinity is formed a band of rows at a time: a row of y needs its own row only,
        # and the products compute each element as the whole matrix's do (tests/test_networks.py),
        # while the whole (39 MB for a 4-frame clip at 448) would be fresh memory at every call.
        # (The ONNX tracer would fix the bands' sizes: it records the whole product.)
        count = phi.shape[-1]
        if torch.onnx.is_in_onnx_export() or count * count <= AFFINITY_ELEMENTS:
            y = torch.matmul(torch.matmul(theta, phi) / count, g)
        else:
            y = torch.cat([torch.matmul(torch.matmul(rows, phi) / count, g)
                           for rows in theta.split(max(1, AFFINITY_ELEMENTS // count), dim=1)], dim=1)
        y = y.transpose(1, 2).contiguous()
        return self.W(y.view(batch, self.inter_channels, *positions)) + x
