"""The factored decoder's inference path: its output one low-resolution row at a time.

`factored_decoder` (factored_decoder.py) computes a 3x3 convolution of a bilinearly upsampled
map from nine 1x1 "tap" maps at low resolution, combined by the periodic resize weights: a row
stage (alpha[s, a, d], tap a of row i + d - 1 to output row phase s) and a column stage
(beta[r, b, e], tap b of column k + e - 1 to output column phase r), on the edge-replicated map,
minus the few terms that read the convolution's zero padding. Where nothing is recorded for a
gradient and the epilogue is pointwise, this module runs that computation row by row, so that
neither the taps nor the convolution output of the whole map is ever stored, and lays the data
out so that both stages are single matrix products:

- The taps of the three rows an output row needs live in a ring of three row slots laid out
  [slot][a][column][b][J]. One row's taps are three matrix products (one per a) of the row's
  pixels [w + 2, C] with the weights [C, 3 J] of that a.
- Row stage: the 9 (slot, a) blocks are consecutive and equally spaced, so the ring is a
  matrix [9, (w + 2) 3 J] and the stage is one product of it with the [fh, 9] coefficients of
  the row's rotation (which slot holds row i - 1). Out: Y [s][column][b][J].
- Column stage: in Y, the 9 (e, b) vectors a pixel needs (columns k - 1 .. k + 1) are
  consecutive J-vectors, and so are the windows of successive (s, column) pairs: one batched
  product of [fw, 9] coefficients with overlapping windows. Out: blocks [s][column][r][J], the
  order of the output's rows and columns.

The zero-padding terms are what the formula adds for the resized row -1 (h fh) or column -1
(w fw), which on the replicated map is the tap of the first (last) real row or column itself:
for columns, an entry of Y that is subtracted; for the first and last rows, the column stage
of one tap row. Where both apply (corners) the term is added back once.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Epilogue = Callable[[torch.Tensor], torch.Tensor]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give the decoder's matrix products of `x` (their `out=` forms,
    used here, are not autocast)."""
    kind = x.device.type
    if x.dtype == torch.float32 and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def logits_by_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   alpha: torch.Tensor, beta: torch.Tensor, epilogue: Epilogue) -> torch.Tensor:
    """`epilogue` of the factored decoder's output, [N, K, fh h, fw w], one low-res row at a time.

    x [N, C, h, w]; weight [J, C, 3, 3]; bias [J] or None; alpha [fh, 3, 3] and beta [fw, 3, 3]
    the periodic weights (`phase_coefficients`); `epilogue` maps [1, J, L, 1] to [1, K, L, 1]
    pixel by pixel (it also sees a few pixels that are not outputs)."""
    n, channels, height, width = x.shape
    out_channels, fh, fw = weight.shape[0], alpha.shape[0], beta.shape[0]
    dtype = compute_dtype(x)
    columns = width + 2
    slot_size = columns * 3 * out_channels  # one (slot, a) block: [column][b][J]
    # (padded before the cast: CPU autocast runs the padding in float32)
    pixels = F.pad(x, (1, 1, 1, 1), mode="replicate").to(dtype).permute(0, 2, 3, 1)  # [N, h + 2, w + 2, C]
    by_a = weight.to(dtype).permute(2, 3, 0, 1)  # [a, b, J, C]
    tap_weights = [by_a[a].reshape(3 * out_channels, channels).t() for a in range(3)]  # [C, (b, J)]
    centre_bias = None
    if bias is not None:
        zeros = bias.new_zeros(out_channels)
        centre_bias = torch.cat([zeros, bias, zeros]).to(dtype)  # on tap (1, 1) only
    rotations = []  # [fh, 9 (slot, a)] with row i - 1 + d in slot (i - 1 + d) % 3
    for first in range(3):
        coefficients = alpha.new_zeros(fh, 3, 3)
        for d in range(3):
            coefficients[:, (first + d) % 3] = alpha[:, :, d]
        rotations.append(coefficients.reshape(fh, 9).to(dtype))
    windows_per_row = fh * columns - 2
    column_weights = beta.permute(0, 2, 1).reshape(fw, 9).to(dtype).expand(windows_per_row, -1, -1)
    edge_weights = column_weights[:width]

    ring = x.new_empty(3, 3, columns, 3 * out_channels, dtype=dtype)  # [slot][a][column][(b, J)]
    rows = x.new_empty(fh, columns, 3, out_channels, dtype=dtype)  # Y: [s][column][b][J]
    # blocks[s, k] holds the output of real column k; the last two entries are not outputs
    blocks = x.new_zeros(fh, columns, fw, out_channels, dtype=dtype)
    windows = rows.view(-1, out_channels).unfold(0, 9, 3).transpose(1, 2)  # [(s, column) - 2, 9, J]
    block_windows = blocks.view(fh * columns, fw, out_channels)[:windows_per_row]
    first_column, last_column = blocks[:, 0, 0], blocks[:, width - 1, fw - 1]
    first_term, last_term = rows[:, 1, 0], rows[:, width, 2]  # taps b = 0 / 2 of columns 1 / w
    ring_matrix, row_matrix = ring.view(9, slot_size), rows.view(fh, slot_size)
    flat = blocks.view(1, -1, 1, out_channels).permute(0, 3, 1, 2)  # [1, J, L, 1]

    def taps(frame: int, row: int) -> None:
        slot, source = ring[row % 3], pixels[frame, row]
        torch.mm(source, tap_weights[0], out=slot[0])
        if centre_bias is None:
            torch.mm(source, tap_weights[1], out=slot[1])
        else:
            torch.addmm(centre_bias, source, tap_weights[1], out=slot[1])
        torch.mm(source, tap_weights[2], out=slot[2])

    out = None
    for frame in range(n):
        taps(frame, 0)
        taps(frame, 1)
        for row in range(1, height + 1):  # padded coordinates: real rows are 1 .. h
            taps(frame, row + 1)
            torch.mm(rotations[(row - 1) % 3], ring_matrix, out=row_matrix)
            torch.bmm(column_weights, windows, out=block_windows)
            first_column.sub_(first_term)
            last_column.sub_(last_term)
            for edge, a, s in ((row == 1, 0, 0), (row == height, 2, fh - 1)):
                if edge:
                    tap_row = ring[row % 3, a]
                    edge_windows = tap_row.view(-1, out_channels).unfold(0, 9, 3).transpose(1, 2)
                    blocks[s, :width] -= torch.bmm(edge_weights, edge_windows)
                    blocks[s, 0, 0] += tap_row[1, :out_channels]
                    blocks[s, width - 1, fw - 1] += tap_row[width, 2 * out_channels:]
            logits = epilogue(flat).permute(0, 2, 3, 1).view(fh, columns, fw, -1)
            if out is None:
                out = logits.new_empty(n, height, fh, width, fw, logits.shape[-1])
            out[frame, row - 1] = logits[:, :width]
    assert out is not None
    return out.permute(0, 5, 1, 2, 3, 4).reshape(n, -1, height * fh, width * fw)
