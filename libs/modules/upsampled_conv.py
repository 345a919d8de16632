"""A 3x3 convolution (zero padding 1) of a bilinearly resized map, computed exactly at the map's
own resolution.

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
  (f_h i + s, f_w k + r) of every low-res pixel (i, k) are one fixed [f_h f_w x 27] combination
  of the taps of each of 3 neighbouring rows: three batched matrix products over overlapping
  windows of the tap array. Computed on the edge-replicated map, that formula is also the
  resize's clamping at the border; what remains is the conv's zero padding, a few tap terms of
  the first and last rows and columns, subtracted. A pointwise epilogue (inference) runs on
  bands of rows as they are computed, so the conv output of the whole map is never stored.
- Other sizes: both matrices applied to the taps, in bands of output rows and columns.

The bias of the conv (and a folded BatchNorm's shift) is added to the centre tap: each row of
R_h and R_w sums to one.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

CENTRE_TAP = 4  # (a, b) = (0, 0) in the row-major 3x3 kernel
BAND = 32  # output rows (columns) per matrix product of the general path
BAND_PIXELS = 256  # low-res pixels per band of the pointwise inference path: 2 rows at 448x448
# (about 4 MB of 256-channel conv output; 1-3 rows measured fastest on the AMD EPYC)

Epilogue = Callable[[torch.Tensor], torch.Tensor]


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


def compute_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 margin: int = 0) -> torch.Tensor:
    """T [margin + N h w + margin, 3, 3, J], pixel-major: T[(n, i, k), a, b] = W[:, :, a, b] x[n, :, i, k]
    (+ bias on the centre tap), between `margin` rows of the bias alone (zero without one)."""
    channels = x.shape[1]
    taps, tap_bias = tap_weights(weight, bias)
    pixels = F.pad(x.permute(0, 2, 3, 1).reshape(-1, channels), (0, 0, margin, margin))
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
    of the first / last column, and they are subtracted (`remove_zero_padding`)."""

    def __init__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 fh: int, fw: int) -> None:
        self.n, _, self.height, self.width = x.shape
        self.fh, self.fw = fh, fw
        self.channels = weight.shape[0]
        self.padded_width = self.width + 2
        self.margin = self.padded_width + 1  # every padded pixel's 3x3 neighbourhood is in range
        padded = compute_taps(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias, self.margin)
        self.rows = padded.view(-1, self.channels)  # 9 tap rows per pixel
        # [N, h + 2, w + 2, 3, 3, J]
        self.taps = padded[self.margin:-self.margin].view(self.n, self.height + 2, self.padded_width,
                                                          3, 3, self.channels)
        alpha = torch.tensor(phase_coefficients(fh), dtype=torch.float64)  # [s, a, d]
        beta = torch.tensor(phase_coefficients(fw), dtype=torch.float64)  # [r, b, e]
        # G [3 (row offset d), fh fw (s, r), 27 (column offset e, a, b)]
        weights = torch.einsum("sad,rbe->dsreab", alpha, beta).reshape(3, fh * fw, 27)
        self.weights, self.alpha, self.beta = (t.to(dtype=x.dtype, device=x.device)
                                               for t in (weights, alpha, beta))

    def blocks(self, first: int, count: int) -> torch.Tensor:
        """[count, fh fw, J]: the periodic formula at padded pixels first .. first + count - 1
        (flat index over frames, rows, columns of the padded grid)."""
        blocks = None
        for d in range(3):
            start = (self.margin + first + (d - 1) * self.padded_width - 1) * 9
            # the 27 tap rows of 3 neighbouring pixels, for every pixel: windows 9 rows apart
            windows = self.rows[start:start + (count + 2) * 9].unfold(0, 27, 9).transpose(1, 2)
            coefficients = self.weights[d].expand(count, -1, -1)
            if blocks is None:
                blocks = torch.bmm(coefficients, windows)
            else:
                blocks.baddbmm_(coefficients, windows)
        return blocks

    def remove_zero_padding(self, blocks: torch.Tensor, taps: torch.Tensor, top: int) -> None:
        """Subtract, in place, the tap terms that read the conv's zero padding from `blocks`
        [N', R, w + 2, fh, fw, J] of the padded rows top .. top + R - 1 (1 <= top, top + R <= h + 1)
        of the frames whose taps are `taps` [N', h + 2, w + 2, 3, 3, J]."""
        height, width, fh, fw = self.height, self.width, self.fh, self.fw
        band = blocks.shape[1]
        first, last = top == 1, top + band == height + 1
        # each term is a combination of replicated rows (columns) 0 and 1, or h and h + 1, which
        # are equal: it is the tap of row 1 (h) itself
        if first:
            window = taps[:, 1, :, 0].unfold(1, 3, 1)  # [N', w, 3 (b), J, 3 (e)]
            blocks[:, 0, 1:width + 1, 0] -= torch.einsum("rbe,nkbje->nkrj", self.beta, window)
        if last:
            window = taps[:, height, :, 2].unfold(1, 3, 1)
            blocks[:, -1, 1:width + 1, fh - 1] -= torch.einsum("rbe,nkbje->nkrj", self.beta, window)
        for column, b, r in ((1, 0, 0), (width, 2, fw - 1)):
            window = taps[:, top - 1:top + band + 1, column, :, b].unfold(1, 3, 1)  # [N', R, 3 (a), J, 3 (d)]
            blocks[:, :, column, :, r] -= torch.einsum("sad,niajd->nisj", self.alpha, window)
        # the corner terms were subtracted twice
        for row, a, s, edge in ((0, 0, 0, first), (-1, 2, fh - 1, last)):
            if edge:
                source = 1 if a == 0 else height
                blocks[:, row, 1, s, 0] += taps[:, source, 1, a, 0]
                blocks[:, row, width, s, fw - 1] += taps[:, source, width, a, 2]

    def exact_blocks(self) -> torch.Tensor:
        """[N, h + 2, w + 2, fh, fw, J]: the conv output blocks at every padded pixel; those of
        real pixels ([:, 1:h+1, 1:w+1]) are exact, the rest are not outputs."""
        padded_pixels = self.n * (self.height + 2) * self.padded_width
        blocks = self.blocks(0, padded_pixels).view(self.n, self.height + 2, self.padded_width,
                                                    self.fh, self.fw, self.channels)
        self.remove_zero_padding(blocks[:, 1:self.height + 1], self.taps, 1)
        return blocks

    def exact_logits(self, epilogue: Epilogue, band_pixels: int) -> torch.Tensor:
        """[N, h, w + 2, fh, fw, K]: `epilogue` of the exact blocks, in bands of padded rows of
        about `band_pixels` pixels, without storing the conv output of the whole map."""
        rows_per_band = max(1, band_pixels // self.padded_width)
        out = None
        for frame in range(self.n):
            taps = self.taps[frame:frame + 1]
            for top in range(1, self.height + 1, rows_per_band):
                band = min(rows_per_band, self.height + 1 - top)
                count = band * self.padded_width
                first = (frame * (self.height + 2) + top) * self.padded_width
                blocks = self.blocks(first, count)
                self.remove_zero_padding(blocks.view(1, band, self.padded_width, self.fh, self.fw,
                                                     self.channels), taps, top)
                flat = blocks.view(1, -1, 1, self.channels).permute(0, 3, 1, 2)  # [1, J, L, 1]
                logits = epilogue(flat).permute(0, 2, 3, 1).reshape(band, self.padded_width, self.fh,
                                                                    self.fw, -1)
                if out is None:
                    out = logits.new_empty(self.n, self.height, self.padded_width, self.fh, self.fw,
                                           logits.shape[-1])
                out[frame, top - 1:top - 1 + band] = logits
        return out


def upsampled_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      size: tuple[int, int], epilogue: Epilogue | None = None,
                      pointwise: bool = False, band_pixels: int = BAND_PIXELS) -> torch.Tensor:
    """epilogue(conv2d(resize(x, size), weight, bias, padding=1)) without forming resize(x).

    x [N, C, h, w]; weight [J, C, 3, 3]; bias [J] or None; resize = bilinear, align_corners=False.
    `epilogue` (default: identity) maps the conv output, handed over as [N, J, L, 1] with the
    L pixels in an internal order, to [N, K, L, 1]; it must treat pixels independently
    (BatchNorm, also with batch statistics, ReLU, 1x1 convs). With `pointwise` it promises no
    statistics over pixels either (no train-mode BatchNorm): it may then also see pixels that
    are not outputs, and, where no gradient is recorded, bands of about `band_pixels` pixels at
    a time (the conv output of the whole map is never stored). Returns [N, K, H, W].
    Differentiable in x, weight and bias; any float dtype and device.
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
    grid = _PhaseGrid(x, weight, bias, fh, fw)
    recording = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias))
    if epilogue is not None and pointwise and not recording:
        logits = grid.exact_logits(epilogue, band_pixels)[:, :, 1:width + 1]  # [N, h, w, fh, fw, K]
    else:
        blocks = grid.exact_blocks()
        if not pointwise:  # statistics over real pixels only
            blocks = blocks[:, 1:height + 1, 1:width + 1]
        flat = blocks.reshape(n, -1, 1, out_channels).permute(0, 3, 1, 2)  # [N, J, L, 1]
        out = flat if epilogue is None else epilogue(flat)
        logits = out.permute(0, 2, 3, 1).view(*blocks.shape[:-1], -1)
        if pointwise:
            logits = logits[:, 1:height + 1, 1:width + 1]
    return logits.permute(0, 5, 1, 3, 2, 4).reshape(n, -1, full_height, full_width)
