"""How close the model runs to this CPU's limit: VideoModel's arithmetic per frame against the
float32 matmul rate the same process reaches, in one run.

- The matmul peak: the best of `--matmul-repeats` square float32 matmuls of `--matmul-size`
  (2 n^3 floating-point operations each), with the torch threads the model uses, measured
  once a round between the model's runs (the best round kept).
- GFLOP per frame of VideoModel on a clip of `--clip` frames at `--size`, counted by
  `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products; elementwise
  operations are not counted), on two paths built as `inference.py` builds them
  (`Predictor.from_checkpoint` with the plan of `plan_run`):
  the default path (`--precision auto`) and the release's computation (`--precision fp32`).
- Seconds per frame of each path (median of `--rounds` interleaved rounds), with the reference
  weights (tests/reference_weights.py), and from those the achieved GFLOP/s and its share of
  the matmul peak, for the whole model and per stage: the ResNet-50 backbone, ASPP, the
  non-locally enhanced recurrent (NER) module, and the refinement blocks with the decoder.
  Stages are timed around their modules' forward, as their share of the cores (`StageMeter`);
  "rest" is what the stages leave (the classifier head, resizing, the sigmoid).

    python -m benchmarks.efficiency --rounds 5 --json benchmarks/results/efficiency.json
"""
from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._common import ROOT, Row, add_common_arguments, machine, report, setup, time_interleaved
from benchmarks.aspp_speed import crop_aspp, flop_counter
from libs.inference import Predictor
from libs.runtime.arguments import ArgumentParser, positive_int, run_command
from libs.runtime.plan import plan_run

# stage -> the VideoModel submodules it is made of (their forward; the decoder's forward_resized,
# which RCRNet calls)
STAGES = {
    "backbone (ResNet-50)": ("backbone.resnet",),
    "ASPP": ("backbone.aspp",),
    "NER module": ("non_local_block", "convgru_forward", "convgru_backward", "bidirection_conv",
                   "non_local_block2"),
    "refinement + decoder": ("backbone.refinement1", "backbone.refinement2", "backbone.refinement3",
                             "backbone.decoder.forward_resized"),
}
PATHS = {"default (--precision auto)": "auto", "release (--precision fp32)": "fp32"}


def matmul_peak(size: int, repeats: int) -> float:
    """The best GFLOP/s of `repeats` float32 [size, size] @ [size, size] products."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def save_reference_checkpoint(path: Path) -> None:
    """The reference weights of VideoModel (tests/reference_weights.py) as a plain state dict."""
    source = ROOT / "tests" / "reference_weights.py"
    spec = importlib.util.spec_from_file_location("reference_weights", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.weights_for(module.key_list("video_model")), path)


class StageMeter:
    """Wraps the methods of a model's stages to measure, per stage, either the seconds spent in
    them or (with `measure` set to a FlopCounterMode's total) the floating-point operations.

    Seconds are the stage's share of the cores: each call's wall time times the torch threads of
    the thread that made it, over the model's torch threads (VideoModel's frames side by side run
    the backbone, ASPP and classifier of two frames at once, one thread each), so that the stages
    and the rest add up to the wall time. Operations are their sum."""

    def __init__(self, model: nn.Module) -> None:
        self.spans: dict[str, list[tuple[float, float, int]]] = {stage: [] for stage in STAGES}
        self.measure: Callable[[], float] = time.perf_counter
        for stage, names in STAGES.items():
            for name in names:
                path, _, method = name.partition(".forward_")
                module = model.get_submodule(path)
                method = f"forward_{method}" if method else "forward"
                setattr(module, method, self._wrap(stage, getattr(module, method)))

    def _wrap(self, stage: str, method: Callable[..., object]) -> Callable[..., object]:
        def measured(*args: object, **kwargs: object) -> object:
            threads = torch.get_num_threads()  # this thread's
            start = self.measure()
            try:
                return method(*args, **kwargs)
            finally:
                self.spans[stage].append((start, self.measure(), threads))
        return measured

    def take(self) -> dict[str, float]:
        """The totals since the last `take` (seconds: `core_seconds`), then forget them."""
        spans, self.spans = self.spans, {stage: [] for stage in STAGES}
        if self.measure is not time.perf_counter:
            return {stage: sum(end - start for start, end, _ in calls) for stage, calls in spans.items()}
        threads = torch.get_num_threads()
        return {stage: core_seconds(calls, threads) for stage, calls in spans.items()}


def core_seconds(spans: list[tuple[float, float, int]], threads: int) -> float:
    """The wall seconds of `threads` threads that calls (start, end, threads of the call) occupy."""
    return sum((end - start) * used for start, end, used in spans) / threads


def count_flops(predictor: Predictor, meter: StageMeter,
                clip: torch.Tensor) -> tuple[float, dict[str, float]]:
    """FLOPs of one call on `clip`: the whole model's and each stage's.

    A FlopCounterMode sees its own thread's operations only, so frames side by side are counted
    one at a time (the same operations)."""
    counter = FlopCounterMode(display=False)
    meter.measure = counter.get_total_flops
    meter.take()
    model = predictor.model
    parallel = getattr(model, "parallel_frames", 1)
    if parallel > 1:
        model.parallel_frames = 1
    try:
        with counter:
            predictor(clip)
    finally:
        if parallel > 1:
            model.parallel_frames = parallel
    meter.measure = time.perf_counter
    return float(counter.get_total_flops()), meter.take()


def aspp_flops_without_padding(model: nn.Module, size: int) -> float:
    """FLOPs of one frame's ASPP without its dilated branches' products with zero padding
    (benchmarks.aspp_speed's cropped form), which oneDNN's dilated convolutions skip as well:
    the counter's total for ASPP includes them."""
    side = size
    for _ in range(4):  # output stride 16: four stride-2 stages, each rounding up
        side = -(-side // 2)
    aspp = crop_aspp(model.get_submodule("backbone.aspp")).eval()
    counter = flop_counter()
    with torch.inference_mode(), counter:
        aspp(torch.zeros(1, aspp.stages.c0.conv.in_channels, side, side))
    return float(counter.get_total_flops())


def share(gflops: float, seconds: float, peak: float) -> list[str]:
    """GFLOP/s and its percentage of the peak."""
    rate = gflops / seconds if seconds > 0 else float("nan")
    return [f"{rate:.1f}", f"{100 * rate / peak:.1f}%"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--size", type=positive_int, default=448, help="frame size (size x size)")
    parser.add_argument("--clip", type=positive_int, default=4, help="frames per clip")
    parser.add_argument("--matmul-size", type=positive_int, default=2048, help="square matmul size")
    parser.add_argument("--matmul-repeats", type=positive_int, default=10,
                        help="matmuls timed (the best kept)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the results and the machine to this JSON file "
                             "(e.g. under benchmarks/results/)")
    args = parser.parse_args(argv)
    setup(args)
    print(machine(), file=sys.stderr)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="efficiency_") as work:
        checkpoint = Path(work) / "video_best_model.pth"
        save_reference_checkpoint(checkpoint)
        predictors = {name: Predictor.from_checkpoint(checkpoint, plan_run("inference", device, precision))
                      for name, precision in PATHS.items()}
    clip = torch.rand(1, args.clip, 3, args.size, args.size)
    # counted before StageMeter wraps the stages' methods (a copy would keep calling the originals)
    aspp_useful = {name: aspp_flops_without_padding(predictor.model, args.size) / 1e9
                   for name, predictor in predictors.items()}
    meters = {name: StageMeter(predictor.model) for name, predictor in predictors.items()}
    flops = {name: count_flops(predictor, meters[name], clip) for name, predictor in predictors.items()}
    stage_times: dict[str, list[dict[str, float]]] = {name: [] for name in predictors}

    def timed(name: str) -> Callable[[], None]:
        def run() -> None:
            predictors[name](clip)
            stage_times[name].append(meters[name].take())
        return run

    rows = [Row(name, timed(name), args.clip, []) for name in predictors]
    peaks: list[float] = []  # measured once a round, between the model's runs: the best is kept
    peak_row = Row("matmul peak", lambda: peaks.append(matmul_peak(args.matmul_size, args.matmul_repeats)),
                   1, [])
    time_interleaved([*rows, peak_row], args.rounds, args.warmup)
    peak = max(peaks)

    header = ["path", "GFLOP / frame", "s / frame (median)", "GFLOP/s", "% of matmul peak"]
    table = []
    stage_header = ["path", "stage", "GFLOP / frame", "s / frame", "GFLOP/s", "% of matmul peak"]
    stage_table = []
    result_paths = {}
    for row in rows:
        total, per_stage = flops[row.name]
        gflop = total / args.clip / 1e9
        seconds = row.median / args.clip
        table.append([row.name, f"{gflop:.1f}", f"{seconds:.3f}", *share(gflop, seconds, peak)])
        stages = {}
        runs = stage_times[row.name][args.warmup:]
        for stage in STAGES:
            stage_gflop = per_stage[stage] / args.clip / 1e9
            stage_seconds = statistics.median(run[stage] for run in runs) / args.clip
            stages[stage] = {"gflop_per_frame": stage_gflop, "seconds_per_frame": stage_seconds}
            stage_table.append([row.name.split(" (")[0], stage, f"{stage_gflop:.2f}", f"{stage_seconds:.3f}",
                                *share(stage_gflop, stage_seconds, peak)])
            if stage == "ASPP":
                useful = aspp_useful[row.name]
                stages[stage]["gflop_per_frame_without_padding"] = useful
                stage_table.append([row.name.split(" (")[0], "ASPP without products with padding",
                                    f"{useful:.2f}", f"{stage_seconds:.3f}",
                                    *share(useful, stage_seconds, peak)])
        rest_gflop = gflop - sum(s["gflop_per_frame"] for s in stages.values())
        rest_seconds = statistics.median(total - sum(run.values()) for total, run in zip(row.times, runs)) \
            / args.clip
        stage_table.append([row.name.split(" (")[0], "rest", f"{rest_gflop:.2f}", f"{rest_seconds:.3f}",
                            *share(rest_gflop, rest_seconds, peak)])
        result_paths[row.name] = {"gflop_per_frame": gflop, "seconds_per_frame": seconds,
                                  "gflops": gflop / seconds, "stages": stages,
                                  "rest": {"gflop_per_frame": rest_gflop, "seconds_per_frame": rest_seconds}}
    shape = f"VideoModel at {args.size}x{args.size}, clips of {args.clip}, median of {args.rounds} rounds"
    report(f"Matmul peak: float32 {args.matmul_size}x{args.matmul_size} matmul, best of "
           f"{args.matmul_repeats}", ["GFLOP/s"], [[f"{peak:.1f}"]])
    report(f"Efficiency, {shape}", header, table)
    report(f"Per stage, {shape}", stage_header, stage_table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"benchmark": "efficiency", "machine": machine(), "torch": torch.__version__,
                  "size": args.size, "clip": args.clip, "rounds": args.rounds,
                  "matmul": {"size": args.matmul_size, "gflops": peak}, "paths": result_paths,
                  "tables": {"model": {"header": header, "rows": table},
                             "stages": {"header": stage_header, "rows": stage_table}}}
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.efficiency"))
