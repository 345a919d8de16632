"""FlowNetC's correlation layer in plain PyTorch.

For every pixel (y, x) of the first feature map and every displacement (dy, dx) =
(j * stride2, i * stride2) with |j|, |i| <= max_displacement // stride2, the output holds
the channel mean of f1(y, x) * f2(y + dy, x + dx), zero where (y + dy, x + dx) falls
outside the (zero-padded) second map. Displacements are laid out row-major, vertical
first: channel (j + r) * (2r + 1) + (i + r), r = max_displacement // stride2. FlowNetC
uses pad 20, kernel 1, max displacement 20, stride1 1, stride2 2: 441 channels, same
size as the input. The LeakyReLU that follows it in FlowNetC is not part of this op.

How it is computed: one loop over the 2r + 1 vertical displacements. For a vertical
displacement, every row of f1 is multiplied with the matching row of the shifted f2 by
one batched matrix product over channels, [W, C] x [C, W + 2 r stride2]: all pairs of
columns in a row. The 2r + 1 horizontal displacements are the band of that matrix at
column offsets 0, stride2, ..., read out as a strided view and written into the output.
The extra memory is one channels-last copy of each input (f2 padded) plus one band
matrix of about H * W * (W + 2 r stride2) values, columns being tiled when that would
exceed the 441 * H * W of the output; no [B, 441, C, H, W] tensor is ever built. The
backward pass runs the same banded products in reverse (a custom autograd Function whose
backward is itself made of differentiable torch ops, so double backward works too). Runs
on any device.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .precision import run_full_precision


def _check_config(pad_size: int, kernel_size: int, max_displacement: int, stride1: int, stride2: int) -> None:
    if kernel_size != 1:
        raise NotImplementedError(
            f"correlation: only kernel_size 1 is implemented (FlowNetC's), got {kernel_size}"
        )
    if stride1 != 1:
        raise NotImplementedError(f"correlation: only stride1 1 is implemented (FlowNetC's), got {stride1}")
    if max_displacement < 0 or pad_size < 0 or stride2 < 1:
        raise ValueError(
            f"correlation: need max_displacement >= 0, pad_size >= 0, stride2 >= 1 "
            f"(got {max_displacement}, {pad_size}, {stride2})"
        )


def _band_tile_width(width: int, span: int, per_pixel: int) -> int:
    """Columns per band matrix [tile, tile + span], keeping it within `per_pixel` values per output pixel."""
    if width + span <= per_pixel:
        return width
    return max(1, per_pixel - span)


def _band(pairs: Tensor, size: int, s2: int) -> Tensor:
    """The band [N, size, cols] of a [N, cols, cols + span] matrix: (n, k, x) is pairs[n, x, x + k s2]."""
    n, cols, width = pairs.shape
    return pairs.as_strided((n, size, cols), (cols * width, s2, width + 1), pairs.storage_offset())


class _BandedCorrelation(torch.autograd.Function):
    """The displacement loop on prepared maps, with a backward pass written the same way.

    rows1: [out_h * B, out_w, C], the first map channels-last (already divided by C).
    rows2: [out_h + span, B, C, out_w + span], the padded second map, rows first.
    Returns [B, size * size, out_h, out_w]. The hand-written backward runs the same banded
    matrix products in reverse and accumulates into the two gradients inside them (baddbmm),
    where plain autograd would add a zero-filled full-size gradient for each overlapping row
    slice: it takes about half the time.
    """

    @staticmethod
    def forward(ctx, rows1: Tensor, rows2: Tensor, batch: int, size: int, stride2: int) -> Tensor:
        ctx.save_for_backward(rows1, rows2)
        ctx.geometry = (batch, size, stride2)
        n, out_w, channels = rows1.shape
        out_h, span = n // batch, rows2.shape[-1] - out_w
        out = rows1.new_empty((batch, size * size, out_h, out_w))
        tile = _band_tile_width(out_w, span, size * size)
        for j in range(size):
            shifted = rows2[j * stride2 : j * stride2 + out_h].reshape(n, channels, out_w + span)
            for x0 in range(0, out_w, tile):
                x1 = min(out_w, x0 + tile)
                pairs = torch.bmm(rows1[:, x0:x1], shifted[..., x0 : x1 + span])
                band = _band(pairs, size, stride2).view(out_h, batch, size, x1 - x0)
                out[:, j * size : (j + 1) * size, :, x0:x1] = band.permute(1, 2, 0, 3)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        rows1, rows2 = ctx.saved_tensors
        batch, size, stride2 = ctx.geometry
        n, out_w, channels = rows1.shape
        out_h, span = n // batch, rows2.shape[-1] - out_w
        grad1 = torch.zeros_like(rows1)
        grad2 = torch.zeros_like(rows2)
        tile = _band_tile_width(out_w, span, size * size)
        for j in range(size):
            rows = slice(j * stride2, j * stride2 + out_h)
            shifted = rows2[rows].reshape(n, channels, out_w + span)
            grad_shifted = grad2[rows].view(n, channels, out_w + span)
            for x0 in range(0, out_w, tile):
                x1 = min(out_w, x0 + tile)
                cols = x1 - x0
                grad_pairs = grad_out.new_zeros((n, cols, cols + span))
                band = _band(grad_pairs, size, stride2).view(out_h, batch, size, cols)
                band.copy_(grad_out[:, j * size : (j + 1) * size, :, x0:x1].permute(2, 0, 1, 3))
                # Accumulated inside the matrix products (beta = 1).
                grad1[:, x0:x1].baddbmm_(grad_pairs, shifted[..., x0 : x1 + span].transpose(1, 2))
                grad_shifted[..., x0 : x1 + span].baddbmm_(rows1[:, x0:x1].transpose(1, 2), grad_pairs)
        return grad1, grad2, None, None, None


def _correlate(f1: Tensor, f2: Tensor, *, pad: int, max_disp: int, stride2: int) -> Tensor:
    batch, channels, height, width = f1.shape
    radius = max_disp // stride2
    size = 2 * radius + 1
    span = 2 * radius * stride2
    out_h = height + 2 * pad - 2 * max_disp
    out_w = width + 2 * pad - 2 * max_disp
    if out_h <= 0 or out_w <= 0:
        raise ValueError(
            f"correlation: a {height}x{width} input with pad {pad} and max displacement {max_disp} "
            "leaves no output"
        )
    # Output pixel (oy, ox) sits at (oy + max_disp, ox + max_disp) of the padded maps.
    if pad != max_disp:
        f1 = F.pad(f1, (pad,) * 4)[..., max_disp : max_disp + out_h, max_disp : max_disp + out_w]
    # First map, channels last, rows folded into the batch: [out_h * B, out_w, C], pre-divided by C.
    rows1 = f1.div(channels).permute(2, 0, 3, 1).reshape(out_h * batch, out_w, channels)
    # Second map padded and cut to the window any displacement can reach: [out_h + span, B, C, out_w + span].
    first = max_disp - radius * stride2
    f2 = F.pad(f2, (pad,) * 4)[..., first : first + out_h + span, first : first + out_w + span]
    rows2 = f2.permute(2, 0, 1, 3).contiguous()
    return _BandedCorrelation.apply(rows1, rows2, batch, size, stride2)


def correlation(
    input1: Tensor,
    input2: Tensor,
    *,
    pad_size: int = 20,
    kernel_size: int = 1,
    max_displacement: int = 20,
    stride1: int = 1,
    stride2: int = 2,
) -> Tensor:
    """Correlate two [B, C, H, W] feature maps; defaults are FlowNetC's (441 output channels).

    Computed in float32 (float64 inputs stay float64) even under autocast; the result has the
    inputs' dtype. Output: [B, (2r+1)^2, H + 2 pad - 2 max_displacement, same for W].
    """
    _check_config(pad_size, kernel_size, max_displacement, stride1, stride2)
    if input1.dim() != 4 or input1.shape != input2.shape:
        raise ValueError(
            f"correlation: expects two [B, C, H, W] tensors of one shape, got "
            f"{tuple(input1.shape)} and {tuple(input2.shape)}"
        )
    fn = partial(_correlate, pad=pad_size, max_disp=max_displacement, stride2=stride2)
    return run_full_precision(fn, input1, input2)


class Correlation(nn.Module):
    """Module form of `correlation`, with the constructor arguments of NVIDIA's layer."""

    def __init__(
        self,
        pad_size: int = 20,
        kernel_size: int = 1,
        max_displacement: int = 20,
        stride1: int = 1,
        stride2: int = 2,
        corr_multiply: int = 1,
    ) -> None:
        super().__init__()
        _check_config(pad_size, kernel_size, max_displacement, stride1, stride2)
        if corr_multiply != 1:
            raise NotImplementedError("correlation: only corr_multiply 1 (a plain product) is implemented")
        self.pad_size = pad_size
        self.kernel_size = kernel_size
        self.max_displacement = max_displacement
        self.stride1 = stride1
        self.stride2 = stride2

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return correlation(
            input1,
            input2,
            pad_size=self.pad_size,
            kernel_size=self.kernel_size,
            max_displacement=self.max_displacement,
            stride1=self.stride1,
            stride2=self.stride2,
        )

    def extra_repr(self) -> str:
        return (
            f"pad_size={self.pad_size}, kernel_size={self.kernel_size}, "
            f"max_displacement={self.max_displacement}, stride1={self.stride1}, stride2={self.stride2}"
        )
