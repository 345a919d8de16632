"""ASPP's dilated 3x3 branches: the release's conv against a cropped formulation that skips the
products with zero padding, in one process, timed in alternation (median of rounds):

- the ASPP module alone on a [B, 2048, S, S] map (S = 28 at a 448 input, output stride 16), at
  batch 1 and batch 4;
- a VideoModel clip at --size under `--precision auto`'s plan on this machine, with the
  release's ASPP convs and with the cropped ones;
- GFLOP per frame of that model at --size (torch.utils.flop_counter) for both;
- the cropped form's float32 deviation from the release's conv (logits).

The cropped form (`cropped_dilated_conv3x3`): with padding equal to the dilation r, the tap
(ky, kx) of a 3x3 kernel reads the input at the offset (dy, dx) = ((ky - 1) r, (kx - 1) r).
A conv is a sum over taps of per-tap matrix products (weight[:, :, ky, kx] times the input's
channel vectors), so leaving out the terms whose input is padding leaves the same linear map:
each tap becomes a matrix product over the output window where its input lies inside the map,
accumulated into that window, and a tap whose window is empty (r >= the map's size) is
skipped. ASPP's rates 6, 12, 18 on a 28x28 map pad about 27%, 49% and 67% of their products.
It is a candidate measured here, not a computation the models use (docs/architecture.md, "ASPP's
dilated branches").

    python -m benchmarks.aspp_speed --rounds 5 --reference ../shared/reference
"""
from __future__ import annotations

import copy
import sys

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._common import Row, add_common_arguments, report, setup, time_interleaved
from benchmarks.factored_decoder_speed import reference_video_model
from libs.inference.optimize import optimize_for_inference
from libs.modules import ASPP
from libs.runtime.arguments import ArgumentParser, positive_int, run_command
from libs.runtime.plan import plan_run


def _window(offset: int, length: int) -> tuple[slice, slice] | None:
    """(output slice, input slice) along one axis of a tap at `offset`, or None when empty."""
    low, high = max(0, -offset), min(length, length - offset)
    if low >= high:
        return None
    return slice(low, high), slice(low + offset, high + offset)


def cropped_dilated_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            dilation: int) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=dilation, dilation=dilation)` for a 3x3 `weight`
    [out, in, 3, 3] and `x` [N, in, H, W], without the products with the padding (same values up
    to float rounding). The result has `x`'s memory layout (NCHW or channels-last)."""
    if weight.shape[2:] != (3, 3) or x.dim() != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"cropped_dilated_conv3x3: expected x [N, {weight.shape[1]}, H, W] and a 3x3 "
                         f"weight, got x {tuple(x.shape)} and weight {tuple(weight.shape)}")
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    n, _, h, w = x.shape
    # spatial-major (channels-last): products are map rows [positions, in] @ [in, out]
    spatial_major = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    if spatial_major:
        x = x.permute(0, 2, 3, 1)  # [N, H, W, C], contiguous
    else:
        x = x.contiguous()  # [N, C, H, W]
    taps = weight.permute(2, 3, 0, 1)  # [3, 3, out, in]
    if taps.stride(-1) != 1:
        taps = taps.contiguous()

    def rows(t: torch.Tensor, frame: int, window: slice) -> torch.Tensor:
        """The 2D matrix of `t`'s map rows `window` of one frame (a view, never a copy)."""
        if spatial_major:
            part = t[frame, window]
            return part.view(-1, part.shape[-1])
        part = t[frame, :, window]
        return part.view(part.shape[0], -1)

    def product(t: torch.Tensor, ky: int, kx: int) -> torch.Tensor:
        """Tap (ky, kx) over the whole of `t` (a map or a column crop of one)."""
        tap = taps[ky, kx]
        if spatial_major:
            return torch.matmul(t.reshape(-1, t.shape[-1]), tap.t()).view(*t.shape[:-1], tap.shape[0])
        return torch.matmul(tap, t.view(t.shape[0], t.shape[1], -1)).view(t.shape[0], tap.shape[0],
                                                                         *t.shape[2:])

    def accumulate(acc: torch.Tensor, source: torch.Tensor, tap: torch.Tensor,
                   window: tuple[slice, slice]) -> None:
        """acc[out rows] += tap [out, in] applied to source[in rows], frame by frame, in place."""
        out_rows, in_rows = window
        for frame in range(n):
            a, b = rows(acc, frame, out_rows), rows(source, frame, in_rows)
            if spatial_major:
                a.addmm_(b, tap.t())
            else:
                a.addmm_(tap, b)

    row_windows = [_window((k - 1) * dilation, h) for k in range(3)]
    out = product(x, 1, 1)
    for kx in range(3):
        columns = _window((kx - 1) * dilation, w)
        if columns is None:
            continue
        if kx == 1:
            source, acc = x, out
        else:
            out_cols, in_cols = columns
            source = (x[:, :, in_cols] if spatial_major else x[..., in_cols]).contiguous()
            acc = product(source, 1, kx)
        for ky in (0, 2):
            if row_windows[ky] is not None:
                accumulate(acc, source, taps[ky, kx], row_windows[ky])
        if kx != 1:
            if spatial_major:
                out[:, :, out_cols] += acc
            else:
                out[..., out_cols] += acc
    if bias is not None:
        out = out + (bias if spatial_major else bias.view(-1, 1, 1))
    return out.permute(0, 3, 1, 2) if spatial_major else out


class CroppedDilatedConv2d(nn.Conv2d):
    """A 3x3 `nn.Conv2d` (stride 1, padding = dilation, one group) computed by
    `cropped_dilated_conv3x3`: the same parameters as the conv it replaces."""

    def __init__(self, conv: nn.Conv2d) -> None:
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.groups != 1 \
                or conv.padding != conv.dilation or conv.dilation[0] != conv.dilation[1]:
            raise ValueError(f"not a 3x3 conv with padding = dilation: {conv}")
        super().__init__(conv.in_channels, conv.out_channels, 3, padding=conv.padding,
                         dilation=conv.dilation, bias=conv.bias is not None, device="meta")
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cropped_dilated_conv3x3(x, self.weight, self.bias, self.dilation[0])


def crop_aspp(model: nn.Module) -> nn.Module:
    """A copy of `model` whose ASPP dilated branches (`stages.c1`..`c3`) use the cropped form."""
    model = copy.deepcopy(model)
    for aspp in [m for m in model.modules() if isinstance(m, ASPP)]:
        for name, unit in aspp.stages.named_children():
            if name != "c0":
                unit.conv = CroppedDilatedConv2d(unit.conv)
    return model


def _addmm_flop(self_shape: torch.Size, a_shape: torch.Size, b_shape: torch.Size, *args: object,
                **kwargs: object) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts the cropped form's in-place `addmm_` (the counter's own
    table knows only the out-of-place `addmm`)."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _addmm_flop})


def flops_per_frame(model: nn.Module, clip: torch.Tensor) -> float:
    """GFLOP per frame of `model(clip)`, the cropped form's products included."""
    counter = flop_counter()
    with torch.inference_mode(), counter:
        model(clip)
    return counter.get_total_flops() / clip.shape[1] / 1e9


def inference(model: nn.Module, x: torch.Tensor):
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--size", type=positive_int, default=448, help="VideoModel frame size")
    parser.add_argument("--clip", type=positive_int, default=4, help="frames per VideoModel clip")
    parser.add_argument("--map", type=positive_int, default=28, help="ASPP input map size (448 / 16)")
    parser.add_argument("--reference", default=None, help="reference folder (refweights.py, keys/)")
    args = parser.parse_args(argv)
    setup(args)
    torch.manual_seed(0)
    aspp = {"release": ASPP().eval()}
    aspp["cropped"] = crop_aspp(aspp["release"])
    maps = {batch: torch.randn(batch, 2048, args.map, args.map) for batch in (1, 4)}
    plan = plan_run("inference", torch.device("cpu"), "auto")
    video = {"release": optimize_for_inference(reference_video_model(args.reference, plan.decoder), plan)}
    video["cropped"] = crop_aspp(video["release"])
    clip = torch.rand(1, args.clip, 3, args.size, args.size)

    rows = []
    for batch, x in maps.items():
        for form in ("release", "cropped"):
            rows.append(Row(f"ASPP {args.map}x{args.map}x2048, batch {batch}, {form}",
                            inference(aspp[form], x), batch, []))
    for form in ("release", "cropped"):
        rows.append(Row(f"VideoModel clip of {args.clip} at {args.size}, {form}",
                        inference(video[form], clip), args.clip, []))
    time_interleaved(rows, args.rounds, args.warmup)
    table = [[a.name.rsplit(",", 1)[0], f"{a.median:.3f}", f"{b.median:.3f}",
              f"{min(a.times):.3f}", f"{min(b.times):.3f}", f"{a.median / b.median:.2f}x"]
             for a, b in zip(rows[::2], rows[1::2])]
    report(f"ASPP's dilated branches: the release's conv vs the cropped form, seconds (median and best of "
           f"{args.rounds}; VideoModel under {plan.name()})",
           ["what", "release s", "cropped s", "release best", "cropped best", "speed-up (medians)"], table)

    flops = [flops_per_frame(video[form], clip[:, :1]) for form in ("release", "cropped")]
    report(f"VideoModel GFLOP per frame at {args.size}x{args.size} ({plan.name()})",
           ["release ASPP", "cropped ASPP"], [[f"{flops[0]:.1f}", f"{flops[1]:.1f}"]])

    with torch.inference_mode():
        slow, fast = video["release"](clip), video["cropped"](clip)
    error = (fast - slow).abs().max().item()
    weights = "reference weights" if args.reference else "random weights"
    report(f"Cropped vs the release's ASPP in float32, VideoModel logits ({weights})",
           ["max abs", "max abs / max |logit|"], [[f"{error:.3g}", f"{error / slow.abs().max().item():.3g}"]])
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.aspp_speed"))
