"""The factored decoder: a 3x3 convolution (zero padding 1) of a bilinearly resized map, computed
at the map's own resolution without forming the resized map (the same values up to rounding).

RCRNet's pixel-wise classifier (Yan et al., ICCV 2019, Sec. 3.1; the release's
libs/networks/rcrnet.py) resizes the stride-4 refinement feature to the input size with
`F.interpolate(mode="bilinear", align_corners=False)` and applies a 3x3 conv to it. Both maps
are linear. With R_h [H, h] and R_w [W, w] the resize matrices (x -> R_h x R_w^T per channel),
A_a the rows of R_h shifted by a (zero rows past the border: the conv's padding) and B_b
likewise for R_w:

    conv3x3(resize(x))_j = sum_{a, b in -1..1} A_a (sum_c W[j, c, a, b] x_c) B_b^T

Stage 1 is one matrix product: the nine 1x1 "tap" maps T_ab = W[:, :, a, b] x, at low
resolution. Stage 2 applies the resize-and-shift matrices to the taps and sums them:

- Power-of-two factors (H = f_h h, W = f_w w, 1 included; RCRNet at input sizes divisible by
  4, f = 4): away from the border every A_a and B_b row is periodic, so the output pixels
  (f_h i + s, f_w k + r) of every low-res pixel (i, k) are a fixed combination of the taps of
  its 3x3 neighbourhood, separable: a row stage (each tap's 3 neighbouring rows to the f_h
  row phases) then a column stage (3 neighbouring pixels' results to the f_w column phases),
  both batched matrix products over overlapping windows of the tap array. Computed on the
  edge-replicated map, that formula is also the resize's clamping at the border; what remains
  is the conv's zero padding, a few tap terms of the first and last rows and columns,
  subtracted. A pointwise epilogue (inference) runs row by row (factored_rows.py, with the
  data laid out so that each stage is one matrix product), so neither the taps nor the conv
  output of the whole map are ever stored. Training runs the whole map as one autograd
  Function whose backward is the transpose of the phase combination, fused with RCRNet's ReLU
  and 1x1 conv where that is the epilogue.
- Other sizes: both matrices applied to the taps, in bands of output rows and columns.

The bias of the conv (and a folded BatchNorm's shift) is added to the centre tap: each row of
R_h and R_w sums to one.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .factored_rows import Epilogue, logits_by_rows

CENTRE_TAP = 4  # (a, b) = (0, 0) in the row-major 3x3 kernel
BAND = 32  # output rows (columns) per matrix product of the general path


def resize_matrix(size_in: int, size_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """R [size_out, size_in] with resize(x) = R x along one axis: PyTorch's own bilinear weights
    (align_corners=False, source index clamped at 0), read off by resizing the identity."""
    eye = torch.eye(size_in, dtype=dtype, device=device).view(size_in, 1, size_in, 1)
    resized = F.interpolate(eye, size=(size_out, 1), mode="bilinear", align_corners=False)
    return resized.view(size_in, size_out).t()


def shifted_resize_matrices(size_in: int, size_out: int, dtype: torch.dtype,
                            device: torch.device) -> torch.Tensor:
    """[3, size_out, size_in]: index a + 1 holds the rows p + a of R (zero outside 0..size_out-1)."""
    padded = F.pad(resize_matrix(size_in, size_out, dtype, device), (0, 0, 1, 1))
    return torch.stack([padded[a:a + size_out] for a in range(3)])


def phase_coefficients(factor: int) -> list[list[list[float]]]:
    """c[s][a][d]: weight of low-res row i + d - 1 in the resized row factor * i + s + a - 1, for
    rows away from the border (float64; exact for power-of-two factors)."""
    coefficients = [[[0.0] * 3 for _ in range(3)] for _ in range(factor)]
    for s in range(factor):
        for a in range(3):
            source = (s + a - 1 + 0.5) / factor - 0.5  # relative to i; in [-0.75, 1)
            low = -1 if source < 0 else 0
            weight = source - low
            coefficients[s][a][low + 1] += 1.0 - weight
            coefficients[s][a][low + 2] += weight
    return coefficients


def tap_weights(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 1x1 tap weights [9 J, C] (row (a, b, j)) of a conv weight [J, C, 3, 3], and the tap
    bias [9 J] (`bias` on the centre tap) or None."""
    out_channels, in_channels = weight.shape[:2]
    taps = weight.permute(2, 3, 0, 1).reshape(9 * out_channels, in_channels)
    if bias is None:
        return taps, None
    tap_bias = torch.cat([bias.new_zeros(CENTRE_TAP * out_channels), bias,
                          bias.new_zeros((8 - CENTRE_TAP) * out_channels)])
    return taps, tap_bias


def compute_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """T [N h w, 3, 3, J], pixel-major: T[(n, i, k), a, b] = W[:, :, a, b] x[n, :, i, k] (+ bias on
    the centre tap)."""
    channels = x.shape[1]
    taps, tap_bias = tap_weights(weight, bias)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, channels)
    flat = pixels @ taps.t() if tap_bias is None else torch.addmm(tap_bias, pixels, taps.t())
    return flat.view(-1, 3, 3, weight.shape[0])


def _support(matrix: torch.Tensor) -> tuple[int, int]:
    """[lo, hi): the columns where `matrix` [..., rows, cols] has a nonzero entry."""
    columns = (matrix != 0).flatten(0, -2).any(0).nonzero().flatten()
    return int(columns[0]), int(columns[-1]) + 1


def _banded_cols(taps: torch.Tensor, cols: torch.Tensor, width: int) -> torch.Tensor:
    """[N, h, Q, 3, J]: the column stage sum_b T_ab B_b^T of taps [N, h, w, 3, 3, J] for column
    matrices `cols` [3, Q, w], in bands of `width` output columns (each band's nonzero columns only)."""
    bands = []
    for start in range(0, cols.shape[1], width):
        band = cols[:, start:start + width]
        lo, hi = _support(band)
        bands.append(torch.einsum("bql,nhlabj->nhqaj", band[:, :, lo:hi], taps[:, :, lo:hi]))
    return torch.cat(bands, dim=2)


def _banded_rows(partial: torch.Tensor, rows: torch.Tensor, width: int) -> torch.Tensor:
    """[N, P, Q, J]: the row stage sum_a A_a Z_a of `partial` [N, h, Q, 3, J] for row matrices
    `rows` [3, P, h], in bands of `width` output rows."""
    bands = []
    for start in range(0, rows.shape[1], width):
        band = rows[:, start:start + width]
        lo, hi = _support(band)
        bands.append(torch.einsum("aph,nhqaj->npqj", band[:, :, lo:hi], partial[:, lo:hi]))
    return torch.cat(bands, dim=1)


def _resize_taps(taps: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """[N, P, Q, J] = sum_ab A_a T_ab B_b^T for taps [N, h, w, 3, 3, J], rows [3, P, h], cols [3, Q, w],
    in bands of BAND output rows (columns) that skip the zeros of the matrices."""
    lo, hi = _support(rows)
    return _banded_rows(_banded_cols(taps[:, lo:hi], cols, BAND), rows[:, :, lo:hi], BAND)


def _phase_factor(size_in: int, size_out: int) -> int | None:
    """The resize factor when it is a power of two (1 included)."""
    factor, remainder = divmod(size_out, size_in)
    if remainder or factor & (factor - 1):
        return None
    return factor


class _PhaseGrid:
    """The taps of the edge-replicated map and the periodic formula over them.

    Bilinear resizing with align_corners=False clamps its source index at the edges, which is
    the periodic interpolation formula applied to the map padded by one replicated pixel on
    every side. So the periodic combination of the taps of `replicate_pad(x)` is exact for every
    real pixel except for the conv's zero padding: the tap terms that read the resized row -1 or
    H (column -1 or W). Those are the a = 0 taps of the first row, a = 2 of the last, b = 0 / 2
    of the first / last column, and they are subtracted (`remove_zero_padding`).

    Pixels are numbered over frames, rows and columns of the padded grid [N, h + 2, w + 2]."""

    def __init__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 fh: int, fw: int) -> None:
        self.n, _, self.height, self.width = x.shape
        self.fh, self.fw = fh, fw
        self.channels = weight.shape[0]
        self.padded_width = self.width + 2
        self.margin = self.padded_width + 1  # a padded pixel's 3x3 neighbourhood, flat
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate").permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        self.pixels = F.pad(padded, (0, 0, self.margin, self.margin))  # zero pixels around
        # the tap weights in (b, a) order: for each b, the 3 (a) taps of a pixel are one [3, J] matrix
        self.tap_weights, self.tap_bias = tap_weights(weight.transpose(2, 3), bias)
        alpha = torch.tensor(phase_coefficients(fh), dtype=torch.float64)  # [s, a, d]
        beta = torch.tensor(phase_coefficients(fw), dtype=torch.float64)  # [r, b, e]
        self.alpha, self.beta = (t.to(dtype=x.dtype, device=x.device) for t in (alpha, beta))
        self.row_weights = [self.alpha[:, :, d].contiguous() for d in range(3)]  # [s, a] per d
        self.column_weights = self.beta.permute(0, 2, 1).reshape(fw, 9)  # [r, (e, b)]
        # their transposes for the gradient: [a, s] per d, and [b, (e', r)] with pixel u + e' - 1
        self.row_adjoints = [w.t().contiguous() for w in self.row_weights]
        self.column_adjoint = self.beta.flip(2).permute(1, 2, 0).reshape(3, 3 * fw)

    def grid_taps(self) -> torch.Tensor:
        """The taps of every padded pixel and of the margins around them: [count + 2 margin, 9 J]
        in (b, a, j) order (the bias alone, or zero, in the margins)."""
        if self.tap_bias is None:
            return self.pixels @ self.tap_weights.t()
        return torch.addmm(self.tap_bias, self.pixels, self.tap_weights.t())

    def padded_rows(self, taps: torch.Tensor) -> torch.Tensor:
        """[N, h + 2, w + 2, 3 (a), 3 (b), J]: the taps of every padded row, from `taps` that
        start one pixel before the first."""
        grid = taps[1:1 + self.n * (self.height + 2) * self.padded_width]
        return grid.view(self.n, self.height + 2, self.padded_width, 3, 3, self.channels).transpose(3, 4)

    def blocks(self, taps: torch.Tensor, count: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """[count, fw, fh J] (in `out` if given): the periodic formula at the `count` pixels whose
        taps, and their margins, are `taps` [count + 2 margin, 9 J]: row stage, then column stage."""
        fh, channels, width = self.fh, self.channels, self.padded_width
        by_b = taps.view(-1, 3, channels)  # [(pixel, b), 3 (a), J]
        # rows: Y[q, b, s] = sum_(d, a) alpha[s, a, d] T[q + (d - 1) width, a, b], at the pixels q of
        # the outputs and one more on each side
        pixels = count + 2
        rows = None
        for d in range(3):
            window = by_b[d * width * 3:(d * width + pixels) * 3]
            # in the taps' dtype: the in-place product is not autocast's
            coefficients = self.row_weights[d].to(window.dtype).expand(pixels * 3, -1, -1)
            if rows is None:
                rows = torch.bmm(coefficients, window)
            else:
                rows.baddbmm_(coefficients, window)
        # columns: sum_(e, b) beta[r, b, e] Y[p + e - 1, b], the 9 (e, b) rows of 3 neighbouring pixels
        windows = rows.view(pixels * 3, fh * channels).unfold(0, 9, 3).transpose(1, 2)
        return torch.bmm(self.column_weights.to(windows.dtype).expand(count, -1, -1), windows, out=out)

    def gradient_buffer(self, count: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What `blocks_adjoint` reads: a buffer [count + 2 margin + 2 (w + 2) + 2, fw, fh J] (dtype
        and device of `like`), zero outside its interior, and that interior ([count, fw, fh J])."""
        start = self.margin + self.padded_width + 1
        buffer = like.new_empty(count + 2 * start, self.fw, self.fh * self.channels)
        buffer[:start].zero_()
        buffer[start + count:].zero_()
        return buffer, buffer[start:start + count]

    def blocks_adjoint(self, grad: torch.Tensor, padded: torch.Tensor | None = None) -> torch.Tensor:
        """[count + 2 margin, 9 J]: the gradient of `blocks` with respect to its taps, for the
        gradient `grad` [count, fw, fh J] of its output (already the interior of `padded`, a
        `gradient_buffer`, if given): the transposed stages in the reverse order (columns, then
        rows), each a gather over neighbouring pixels like the forward's."""
        fw, fh, channels, width = self.fw, self.fh, self.channels, self.padded_width
        count = grad.shape[0]
        taps = count + 2 * self.margin
        gathered = taps + 2 * width  # pixels u = t - margin - (d - 1) width the row stage reads
        if padded is None:
            padded, interior = self.gradient_buffer(count, grad)
            interior.copy_(grad)
        # columns: G[u, b, s] = sum_(e, r) beta[r, b, e] grad[u - e + 1], windows of pixels u - 1 .. u + 1
        windows = padded.view(-1, fh * channels).unfold(0, 3 * fw, fw).transpose(1, 2)
        columns = torch.bmm(self.column_adjoint.expand(gathered, -1, -1), windows)
        columns = columns.view(gathered * 3, fh, channels)  # [(u, b), s, J]
        # rows: dT[t, a, b] = sum_(d, s) alpha[s, a, d] G[t - margin - (d - 1) width, b, s]
        out = None
        for d in range(3):
            window = columns[(2 - d) * width * 3:((2 - d) * width + taps) * 3]
            coefficients = self.row_adjoints[d].to(window.dtype).expand(taps * 3, -1, -1)
            if out is None:
                out = torch.bmm(coefficients, window)
            else:
                out.baddbmm_(coefficients, window)
        return out.view(taps, 9 * channels)

    def remove_zero_padding(self, blocks: torch.Tensor, taps: torch.Tensor) -> None:
        """Subtract, in place, the tap terms that read the conv's zero padding from `blocks`
        [N, h, w + 2, fw, fh, J] of the real rows; `taps` [N, h + 2, w + 2, 3 (a), 3 (b), J] are
        those of every padded row."""
        height, width, fh, fw = self.height, self.width, self.fh, self.fw
        # each term is a combination of replicated rows (columns) 0 and 1, or h and h + 1, which
        # are equal: it is the tap of row 1 (h) itself
        for row, source, a, s in ((0, 1, 0, 0), (-1, height, 2, fh - 1)):
            window = taps[:, source, :, a].unfold(1, 3, 1)  # [N, w, 3 (b), J, 3 (e)]
            blocks[:, row, 1:width + 1, :, s] -= torch.einsum("rbe,nkbje->nkrj", self.beta, window)
        for column, b, r in ((1, 0, 0), (width, 2, fw - 1)):
            window = taps[:, :, column, :, b].unfold(1, 3, 1)  # [N, h, 3 (a), J, 3 (d)]
            blocks[:, :, column, r] -= torch.einsum("sad,niajd->nisj", self.alpha, window)
        # the corner terms were subtracted twice
        for row, source, a, s in ((0, 1, 0, 0), (-1, height, 2, fh - 1)):
            blocks[:, row, 1, 0, s] += taps[:, source, 1, a, 0]
            blocks[:, row, width, fw - 1, s] += taps[:, source, width, a, 2]

    def zero_padding_adjoint(self, grad: torch.Tensor, taps_grad: torch.Tensor) -> None:
        """The transpose of `remove_zero_padding`: subtract, in place, from `taps_grad`
        [N, h + 2, w + 2, 3 (a), 3 (b), J] what the subtracted terms contribute to the gradient,
        for the gradient `grad` [N, h, w + 2, fw, fh, J] of the blocks."""
        height, width, fh, fw = self.height, self.width, self.fh, self.fw
        for row, source, a, s in ((0, 1, 0, 0), (-1, height, 2, fh - 1)):
            window = torch.einsum("rbe,nkrj->nkbje", self.beta, grad[:, row, 1:width + 1, :, s])
            for e in range(3):
                taps_grad[:, source, e:e + width, a] -= window[..., e]
        for column, b, r in ((1, 0, 0), (width, 2, fw - 1)):
            window = torch.einsum("sad,nisj->niajd", self.alpha, grad[:, :, column, r])
            for d in range(3):
                taps_grad[:, d:d + height, column, :, b] -= window[..., d]
        for row, source, a, s in ((0, 1, 0, 0), (-1, height, 2, fh - 1)):
            taps_grad[:, source, 1, a, 0] += grad[:, row, 1, 0, s]
            taps_grad[:, source, width, a, 2] += grad[:, row, width, fw - 1, s]

    def blocks_of_grid(self, taps: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """[count, fw, fh J] (in `out` if given): the output blocks of every padded pixel from the
        taps [count + 2 margin, 9 J] of the whole grid."""
        count = taps.shape[0] - 2 * self.margin
        flat = self.blocks(taps, count, out)
        rows = self.padded_rows(taps[self.padded_width:])
        self.remove_zero_padding(self.padded_grid(flat)[:, 1:self.height + 1], rows)
        return flat

    def taps_gradient(self, grad: torch.Tensor, padded: torch.Tensor | None = None) -> torch.Tensor:
        """The transpose of `blocks_of_grid`: the gradient of the taps for the gradient `grad`
        [count, fw, fh J] (contiguous; the interior of `padded`, a `gradient_buffer`, if given)
        of the blocks."""
        taps_grad = self.blocks_adjoint(grad, padded)
        rows = self.padded_rows(taps_grad[self.padded_width:])
        self.zero_padding_adjoint(self.padded_grid(grad)[:, 1:self.height + 1], rows)
        return taps_grad

    def output_blocks(self) -> torch.Tensor:
        """[N, h + 2, w + 2, fw, fh, J]: the conv output blocks at every padded pixel; those of
        real pixels ([:, 1:h+1, 1:w+1]) are exact, the rest are not outputs."""
        return self.padded_grid(_OutputBlocks.apply(self.grid_taps(), self))

    def padded_grid(self, flat: torch.Tensor) -> torch.Tensor:
        """[N, h + 2, w + 2, fw, fh, J]: blocks of every padded pixel, from [count, fw, fh J]."""
        return flat.view(self.n, self.height + 2, self.padded_width, self.fw, self.fh, self.channels)


class _OutputBlocks(torch.autograd.Function):
    """`_PhaseGrid.output_blocks` from the taps [count + 2 margin, 9 J] of the whole grid, with
    its transpose as the backward. Autograd would scatter-add the gradient of every overlapping
    window, and of every in-place border term, into zero tensors the size of the taps."""

    @staticmethod
    def forward(taps: torch.Tensor, grid: _PhaseGrid) -> torch.Tensor:
        return grid.blocks_of_grid(taps)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.grid = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.grid.taps_gradient(grad.contiguous()), None


class ReluLinear:
    """The epilogue relu(y), then a 1x1 convolution: `weight` [K, J], `bias` [K] or None (RCRNet's
    decoder after its 3x3 ConvBNReLU's convolution and folded BatchNorm).

    Called on [N, J, L, 1] (rectifying `y` in place) it is an ordinary epilogue. Recorded by
    autograd, `factored_decoder` runs it fused with the output blocks (`_ReluLinearBlocks`)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight = weight
        self.bias = bias

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        pixels = F.linear(torch.relu_(y).permute(0, 2, 3, 1), self.weight, self.bias)
        return pixels.permute(0, 3, 1, 2)


class _ReluLinearBlocks(torch.autograd.Function):
    """relu(output blocks) times the 1x1 weight, [count fw fh, K], from the taps of the whole grid.

    The rectified blocks are the only tensor of the map's size kept for the backward, which turns
    them in place into their own gradient (a 0/1 mask times grad_output times the weight) and
    hands it to the blocks' transpose: no copies of the map between layouts, no zero-filled
    scatter buffers, no separate ReLU mask (benchmarks/train_speed.py measures the gain)."""

    @staticmethod
    def forward(ctx: Any, taps: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                grid: _PhaseGrid) -> torch.Tensor:
        # the blocks go into the buffer their gradient will need (with zero margins)
        buffer, interior = grid.gradient_buffer(taps.shape[0] - 2 * grid.margin, taps)
        rows = grid.blocks_of_grid(taps, interior).view(-1, grid.channels).clamp_min_(0)
        weight = weight.to(rows.dtype)
        out = rows @ weight.t() if bias is None else torch.addmm(bias.to(rows.dtype), rows, weight.t())
        ctx.grid, ctx.rows, ctx.buffer, ctx.has_bias = grid, rows, buffer, bias is not None
        ctx.save_for_backward(weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, buffer = ctx.rows, ctx.buffer
        if rows is None:
            raise RuntimeError("the factored decoder's backward ran twice on one graph (retain_graph): "
                               "its saved blocks are consumed by the first")
        ctx.rows = ctx.buffer = None
        (weight,) = ctx.saved_tensors
        grad = grad.to(rows.dtype)
        grad_weight = grad.t() @ rows if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        # in place, in the buffer: the rectified blocks' 0/1 signs times grad_output times the weight
        rows.sign_()
        grad_rows = rows.mul_(grad).mul_(weight) if weight.shape[0] == 1 else rows.mul_(grad @ weight)
        grid = ctx.grid
        taps_grad = grid.taps_gradient(grad_rows.view(-1, grid.fw, grid.fh * grid.channels), buffer)
        return taps_grad, grad_weight, grad_bias, None


def factored_decoder(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     size: tuple[int, int], epilogue: Epilogue | None = None,
                     pointwise: bool = False) -> torch.Tensor:
    """epilogue(conv2d(resize(x, size), weight, bias, padding=1)) without forming resize(x).

    x [N, C, h, w]; weight [J, C, 3, 3]; bias [J] or None; resize = bilinear, align_corners=False.
    `epilogue` (default: identity) maps the conv output, handed over as [N, J, L, 1] with the
    L pixels in an internal order, to [N, K, L, 1]; it must treat pixels independently
    (BatchNorm, also with batch statistics, ReLU, 1x1 convs). With `pointwise` it promises no
    statistics over pixels either (no train-mode BatchNorm): it may then also see pixels that
    are not outputs, and, where no gradient is recorded, the outputs of one low-resolution row
    at a time (`logits_by_rows`: the conv output of the whole map is never stored); a pointwise
    `ReluLinear` epilogue recorded by autograd runs fused with the blocks (`_ReluLinearBlocks`). Returns
    [N, K, H, W]. Differentiable in x, weight and bias (and the epilogue's parameters); any float
    dtype and device.
    """
    height, width = x.shape[2:]
    full_height, full_width = int(size[0]), int(size[1])
    fh, fw = _phase_factor(height, full_height), _phase_factor(width, full_width)
    n, out_channels = x.shape[0], weight.shape[0]
    if fh is None or fw is None:
        rows = shifted_resize_matrices(height, full_height, x.dtype, x.device)
        cols = shifted_resize_matrices(width, full_width, x.dtype, x.device)
        taps = compute_taps(x, weight, bias).view(n, height, width, 3, 3, out_channels)
        blocks = _resize_taps(taps, rows, cols)  # [N, H, W, J]
        flat = blocks.reshape(n, -1, 1, out_channels).permute(0, 3, 1, 2)  # [N, J, L, 1]
        out = flat if epilogue is None else epilogue(flat)
        return out.reshape(n, -1, full_height, full_width)
    recording = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias))
    if epilogue is not None and pointwise and not recording:
        alpha, beta = (torch.tensor(phase_coefficients(f), dtype=torch.float64, device=x.device)
                       for f in (fh, fw))
        return logits_by_rows(x, weight, bias, alpha, beta, epilogue)
    grid = _PhaseGrid(x, weight, bias, fh, fw)
    if isinstance(epilogue, ReluLinear) and pointwise:
        flat = _ReluLinearBlocks.apply(grid.grid_taps(), epilogue.weight, epilogue.bias, grid)
        logits = flat.view(n, height + 2, grid.padded_width, fw, fh, -1)[:, 1:height + 1, 1:width + 1]
    else:
        blocks = grid.output_blocks()
        if not pointwise:  # statistics over real pixels only
            blocks = blocks[:, 1:height + 1, 1:width + 1]
        flat = blocks.reshape(n, -1, 1, out_channels).permute(0, 3, 1, 2)  # [N, J, L, 1]
        out = flat if epilogue is None else epilogue(flat)
        logits = out.permute(0, 2, 3, 1).view(*blocks.shape[:-1], -1)
        if pointwise:
            logits = logits[:, 1:height + 1, 1:width + 1]
    return logits.permute(0, 5, 1, 4, 2, 3).reshape(n, -1, full_height, full_width)
