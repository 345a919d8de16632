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

- Power-of-two factors (H = f_h h, W = f_w w; RCRNet at input sizes divisible by 4, f = 4):
  every A_a and B_b row is exactly periodic away from the border, so the output pixels
  (f_h i + s, f_w k + r) of every low-res pixel (i, k) are one fixed [f_h f_w x 81] combination
  of the taps of its 3x3 neighbourhood: three batched matrix products over overlapping windows
  of the tap array. The border pixels' blocks (i or k at 0 or the last index: the resize's
  clamping, the conv's zero padding) are recomputed with the exact matrices.
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


def _resize_taps(taps: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 band: int = BAND) -> torch.Tensor:
    """[N, P, Q, J] = sum_ab A_a T_ab B_b^T for taps [N, h, w, 3, 3, J], rows [3, P, h], cols [3, Q, w].

    Bands of `band` output rows (columns) skip the zeros of the matrices; for a few output rows
    or columns one dense product is faster than many small ones."""
    lo, hi = _support(rows)
    return _banded_rows(_banded_cols(taps[:, lo:hi], cols, band), rows[:, :, lo:hi], band)


def _phase_factor(size_in: int, size_out: int) -> int | None:
    """The resize factor when it is a power of two >= 2 and the map is at least 3 pixels wide."""
    factor, remainder = divmod(size_out, size_in)
    if remainder or factor < 2 or factor & (factor - 1) or size_in < 3:
        return None
    return factor


def _phase_weights(fh: int, fw: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """G [3 (row offset d), fh fw (s, r), 27 (column offset e, a, b)] of the periodic interior."""
    alpha = torch.tensor(phase_coefficients(fh), dtype=torch.float64)  # [s, a, d]
    beta = torch.tensor(phase_coefficients(fw), dtype=torch.float64)  # [r, b, e]
    weights = torch.einsum("sad,rbe->dsreab", alpha, beta).reshape(3, fh * fw, 27)
    return weights.to(dtype=dtype, device=device)


def _phase_interior(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    fh: int, fw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The taps [N, h, w, 3, 3, J] and the output blocks [N, h, w, fh, fw, J] of every low-res
    pixel by the periodic combination; those of the first and last row and column of each map
    are wrong (they read past the map's edge) and left to `_fix_borders`."""
    n, _, height, width = x.shape
    out_channels = weight.shape[0]
    pixels = n * height * width
    margin = width + 1  # every pixel's 3x3 neighbourhood lies inside the padded tap array
    padded = compute_taps(x, weight, bias, margin)
    rows = padded.view(-1, out_channels)  # 9 tap rows per pixel
    weights = _phase_weights(fh, fw, padded.dtype, padded.device)
    blocks = None
    for d in range(3):
        first = (margin + (d - 1) * width - 1) * 9
        # the 27 tap rows of 3 neighbouring pixels, for every pixel: windows 9 rows apart
        windows = rows[first:first + (pixels + 2) * 9].unfold(0, 27, 9).transpose(1, 2)
        coefficients = weights[d].expand(pixels, -1, -1)
        if blocks is None:
            blocks = torch.bmm(coefficients, windows)
        else:
            blocks.baddbmm_(coefficients, windows)
    taps = padded[margin:margin + pixels].view(n, height, width, 3, 3, out_channels)
    return taps, blocks.view(n, height, width, fh, fw, out_channels)


def _fix_borders(blocks: torch.Tensor, taps: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 fh: int, fw: int) -> torch.Tensor:
    """`blocks` [N, h, w, fh, fw, J] with the border pixels' blocks set to the exact values."""
    n, height, width = taps.shape[:3]
    out_channels = taps.shape[-1]
    for i in (0, height - 1):
        exact = _resize_taps(taps, rows[:, i * fh:(i + 1) * fh], cols, cols.shape[1])  # [N, fh, W, J]
        blocks[:, i] = exact.view(n, fh, width, fw, out_channels).transpose(1, 2)
    for k in (0, width - 1):
        exact = _resize_taps(taps, rows, cols[:, k * fw:(k + 1) * fw], rows.shape[1])  # [N, H, fw, J]
        blocks[:, :, k] = exact.view(n, height, fh, fw, out_channels)
    return blocks


def upsampled_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      size: tuple[int, int], epilogue: Epilogue | None = None) -> torch.Tensor:
    """epilogue(conv2d(resize(x, size), weight, bias, padding=1)) without forming resize(x).

    x [N, C, h, w]; weight [J, C, 3, 3]; bias [J] or None; resize = bilinear, align_corners=False.
    `epilogue` (default: identity) maps the conv output, handed over as [N, J, L, 1] with the
    L = H W pixels in an internal order, to [N, K, L, 1]; it must treat pixels independently
    (BatchNorm, also with batch statistics, ReLU, 1x1 convs). Returns [N, K, H, W].
    Differentiable in x, weight and bias; any float dtype and device.
    """
    height, width = x.shape[2:]
    full_height, full_width = int(size[0]), int(size[1])
    rows = shifted_resize_matrices(height, full_height, x.dtype, x.device)
    cols = shifted_resize_matrices(width, full_width, x.dtype, x.device)
    fh, fw = _phase_factor(height, full_height), _phase_factor(width, full_width)
    n, out_channels = x.shape[0], weight.shape[0]
    if fh is not None and fw is not None:
        taps, blocks = _phase_interior(x, weight, bias, fh, fw)
        blocks = _fix_borders(blocks, taps, rows, cols, fh, fw)
    else:
        taps = compute_taps(x, weight, bias).view(n, height, width, 3, 3, out_channels)
        blocks = _resize_taps(taps, rows, cols)  # [N, H, W, J]
    flat = blocks.reshape(n, -1, 1, out_channels).permute(0, 3, 1, 2)  # [N, J, L, 1]
    out = flat if epilogue is None else epilogue(flat)
    if fh is None or fw is None:
        return out.reshape(n, -1, full_height, full_width)
    grid = out.reshape(n, -1, height, width, fh, fw).permute(0, 1, 2, 4, 3, 5)
    return grid.reshape(n, -1, full_height, full_width)
