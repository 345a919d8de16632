"""The CUDA path's speed, measured in one run on the GPU, each configuration with its maps' distance
from float32.

Tables, in order:
- VideoModel frames/s at `--size` (448: RCRNet's), clips of 4: the release's way (float32 eager),
  then fp32 (TF32 off, as `--precision fp32` runs), TF32, bf16 and fp16 autocast, each prepared as
  inference.py prepares the model (channels-last, BatchNorm folded), 1 and `--large-batch` clips per
  call, CUDA graphs and `torch.compile` for the large batch;
- FGPLG pseudo-labels/s with FlowNet 2.0 (two flows and one 7-channel RCRNet a label);
- inference.py end to end on a folder of JPEG frames against the model alone, same precision;
- a training step's time and peak GPU memory (benchmarks/train_speed.py on the GPU);
- FlowNet 2.0 pairs/s and peak memory (benchmarks/flownet2_speed.py on the GPU).

The code is the CPU benchmarks': the interleaved timing, the benchmark model and the 8-bit deviation
(_common.py), the release's way of calling the model (inference_speed.py), the FGPLG built from the
benchmark model (pseudo_label_speed.py), inference.py's runs (end_to_end.py), and the training and
FlowNet 2.0 benchmarks themselves, run with the GPU as their device. Correctness on CUDA is tested by
tests/test_cuda.py.

    python -m benchmarks.cuda_speed --json results.json     # on a CUDA machine
    python -m benchmarks.cuda_speed --dry-run               # the same code on the CPU, tiny sizes
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmarks import end_to_end, inference_speed, pseudo_label_speed, train_speed
from benchmarks._common import (
    ROOT,
    Row,
    add_common_arguments,
    add_trained_model_arguments,
    clip_batches,
    deviation,
    machine,
    report,
    setup,
    synthetic_data,
    time_interleaved,
    trained_video_model,
)
from libs.inference import Predictor
from libs.inference.optimize import inference_context, prepare_model
from libs.runtime.arguments import ArgumentParser, run_command
from libs.runtime.plan import RunPlan, plan_run
from libs.runtime.precision import tf32

PARTS = ("video", "pseudo_labels", "end_to_end", "training", "flownet2")
Predict = Callable[[torch.Tensor], torch.Tensor]


class Tables:
    """The run's tables: printed as they come (naming the machine) and kept for `--json`."""

    def __init__(self) -> None:
        self.tables: list[dict] = []

    def add(self, title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        report(title, header, rows)
        self.tables.append({"title": title, "header": list(header),
                            "rows": [[str(cell) for cell in row] for row in rows]})

    def write(self, path: Path) -> None:
        document = {"machine": machine(), "torch": torch.__version__, "cuda": torch.version.cuda,
                    "tables": self.tables}
        path.write_text(json.dumps(document, indent=1) + "\n")


def with_tf32(predict: Predict, enabled: bool) -> Predict:
    """`predict` run with TF32 on or off whatever the global setting."""

    def run(x: torch.Tensor) -> torch.Tensor:
        with tf32(enabled):
            return predict(x)

    return run


def prepared(model: torch.nn.Module, precision: str, device: torch.device, compile: bool = False) -> Predict:
    """The model changed as a run plan changes it (channels-last, BatchNorm folded) at `precision`."""
    plan = RunPlan(device, precision, channels_last=True, fold_bn=True, compile="on" if compile else "off",
                   why="benchmark")
    fast = prepare_model(model, plan)
    return lambda clips: torch.sigmoid(fast(clips))


def graphed(predict: Predict, example: torch.Tensor) -> Predict:
    """`predict` captured in a CUDA graph for inputs shaped like `example` (warmed up on a side stream
    first); each call copies its input into the graph's and returns the graph's output tensor."""
    static_input = example.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            predict(static_input)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_output = predict(static_input)

    def replay(x: torch.Tensor) -> torch.Tensor:
        static_input.copy_(x)
        graph.replay()
        return static_output

    replay.graph = graph  # keeps the graph and its memory pool alive
    return replay


def video_rows(model: torch.nn.Module, device: torch.device, args: argparse.Namespace,
               example: torch.Tensor) -> list[tuple[str, Predict, int]]:
    """(name, predict, clips per call) of each VideoModel configuration, the release's way first."""
    cuda = device.type == "cuda"
    precisions = ["fp32", "tf32", "bf16"] if cuda else ["fp32", "bf16"]  # TF32 is CUDA's
    if inference_speed.fp16_works() is None or cuda:
        precisions.append("fp16")
    if cuda and not torch.cuda.is_bf16_supported():
        precisions.remove("bf16")
    rows = [("fp32 eager, no_grad, list of frames (release)",
             with_tf32(inference_speed.release_way(model), False), 1)]
    for precision in precisions:
        predict = with_tf32(prepared(model, "fp32" if precision == "tf32" else precision, device),
                            precision == "tf32")
        rows.append((f"{precision} prepared, 1 clip", predict, 1))
        rows.append((f"{precision} prepared, {args.large_batch} clips", predict, args.large_batch))
        if cuda and precision != "fp32":
            rows.append((f"{precision} prepared + CUDA graph, {args.large_batch} clips",
                         graphed(predict, example[: args.large_batch]), args.large_batch))
    if args.compile:
        for precision in [p for p in precisions if p in ("bf16", "fp16")]:
            rows.append((f"{precision} prepared + torch.compile, {args.large_batch} clips",
                         prepared(model, precision, device, compile=True), args.large_batch))
    return rows


def batch_of(clips: torch.Tensor, start: int, size: int) -> torch.Tensor:
    return inference_speed.batch_of(clips, start, size)


def measure(rows: list[tuple[str, Callable, int]], inputs: torch.Tensor | list,
            per_call: Callable[[int], int], args: argparse.Namespace,
            sync: Callable[[], None]) -> list[list[object]]:
    """Each row's deviation from the first row over `inputs` and its rate (items per second, timed
    in interleaved rounds); table rows: name, rate, speed-up over the first, deviation, within."""
    outputs = []
    for _, predict, batch in rows:
        if isinstance(inputs, list):  # pseudo-label inputs, one label a call
            outputs.append(torch.cat([predict(x).float().cpu() for x in inputs]))
        else:
            chunks = [predict(batch_of(inputs, i, batch)).float().cpu() for i in range(0, len(inputs), batch)]
            outputs.append(torch.cat(chunks)[: len(inputs)])
    first = inputs[0] if isinstance(inputs, list) else None
    timed = [Row(name, (lambda p=predict, b=batch: p(first if first is not None else batch_of(inputs, 0, b))),
                 per_call(batch), []) for name, predict, batch in rows]
    time_interleaved(timed, args.rounds, args.warmup, sync=sync)
    table = []
    for row, output in zip(timed, outputs):
        dev = deviation(outputs[0], output)
        table.append([row.name, f"{row.rate:.1f}", f"{row.rate / timed[0].rate:.2f}x", dev.describe(),
                      "yes" if dev.within() else "no"])
    return table


def video_part(model, device, args, sync, tables: Tables) -> None:
    batches = clip_batches(synthetic_data(), args.size, args.clip_len, batch=1, training=False)
    count = max(args.deviation_clips, args.large_batch)
    clips = torch.cat([next(batches)[0] for _ in range(count)]).to(device)
    rows = video_rows(model, device, args, clips)
    table = measure(rows, clips, lambda batch: batch * args.clip_len, args, sync)
    tables.add(f"VideoModel on {device}, {args.size}x{args.size}, clips of {args.clip_len}, median of "
               f"{args.rounds} interleaved rounds",
               ["configuration", "frames/s", "speed-up", "pixels differing / max levels", "within tolerance"],
               table)


def pseudo_label_part(model, device, args, sync, tables: Tables) -> None:
    generator = pseudo_label_speed.generator_from(model.cpu()).to(device)
    model.to(device)
    batches = clip_batches(synthetic_data(), args.size, clip_len=3, batch=1, training=False)
    inputs = []
    for _ in range(max(1, args.deviation_clips)):
        clip, labels = (t.to(device) for t in next(batches))
        inputs.append((clip[:, 1], clip[:, 0], clip[:, 2], labels[:, 0], labels[:, 2]))

    def fast(precision: str) -> Callable:
        plan = RunPlan(device, precision, channels_last=True, fold_bn=True, why="benchmark")
        prepared_model = prepare_model(generator, plan).model

        def predict(x):
            with inference_context(precision, device):
                return torch.sigmoid(prepared_model.generate_pseudo_label(*x).float())

        return predict

    faithful = pseudo_label_speed.faithful(generator)
    rows = [("fp32 eager (release way)", with_tf32(faithful, False), 1),
            ("fp32 prepared", with_tf32(fast("fp32"), False), 1)]
    if device.type == "cuda":
        rows.append(("tf32 prepared", with_tf32(fast("fp32"), True), 1))
        if torch.cuda.is_bf16_supported():
            rows.append(("bf16 prepared", fast("bf16"), 1))
    table = measure(rows, inputs, lambda batch: 1, args, sync)
    tables.add(f"FGPLG pseudo-labels with FlowNet 2.0 on {device}, {args.size}x{args.size}, one label a call",
               ["configuration", "labels/s", "speed-up", "pixels differing / max levels", "within tolerance"],
               table)


def end_to_end_part(model, device, args, sync, tables: Tables) -> None:
    """inference.py (defaults and --precision fp32) against the model alone at the same precision."""
    cache = Path(args.cache)
    checkpoint = cache / f"video_synthetic_s{args.train_size}_n{args.train_steps}.pth"
    folder = end_to_end.video_frames(cache, args.size, args.frames)
    clips = end_to_end.load_clips(folder, args.size, args.clip_len)
    out = Path(tempfile.mkdtemp(prefix="cuda_e2e_"))
    batches = [clips[i: i + 1].to(device) for i in range(len(clips))]

    def row(precision: str) -> list[object]:
        predictor = Predictor.from_checkpoint(checkpoint, plan_run("inference", device, precision))
        runs: list[dict] = []
        flags = ["--device", str(device), "--precision", precision, "--compile", "off"]
        frames = clips.shape[0] * clips.shape[1]

        def script() -> None:
            runs.append(end_to_end.run_inference_py(folder, checkpoint, out / precision, args.size, flags))

        rows = [Row("model only", lambda: [predictor(c) for c in batches], frames, []),
                Row("inference.py", script, frames, [])]
        time_interleaved(rows, args.rounds, args.warmup, sync=sync)
        own = sorted(r["seconds"] for r in runs[-args.rounds:])[args.rounds // 2]
        rate = runs[-1]["maps"] / own
        return [f"--precision {precision} ({predictor.describe()})", f"{rows[0].rate:.1f}", f"{rate:.1f}",
                f"{100 * rate / rows[0].rate:.0f}%", f"{rows[1].median:.1f}"]

    try:
        table = [row("auto"), row("fp32")]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    tables.add(f"inference.py end to end on {device}, {args.frames} JPEG frames of {args.size}x{args.size}, "
               f"median of {args.rounds} interleaved rounds",
               ["precision", "model only frames/s", "inference.py frames/s", "of the model-only rate",
                "process wall (s)"], table)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="the same code on the CPU at tiny sizes (CUDA graphs left out)")
    parser.add_argument("--device", default="cuda", help="the GPU (default cuda)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS, help="default: all")
    parser.add_argument("--size", type=int, default=448, help="frame height and width (default 448)")
    parser.add_argument("--clip-len", type=int, default=4, help="frames a clip (default 4)")
    parser.add_argument("--large-batch", type=int, default=16, help="clips per call of the large rows")
    parser.add_argument("--deviation-clips", type=int, default=6,
                        help="clips of the synthetic evaluation videos the deviation is measured on")
    parser.add_argument("--frames", type=int, default=256, help="inference.py's frames (default 256)")
    parser.add_argument("--train-step-size", type=int, default=256, help="training frame size (default 256)")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile rows")
    parser.add_argument("--json", type=Path, default=None, help="also write the tables to this JSON file")
    add_trained_model_arguments(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
        args.size, args.clip_len, args.large_batch, args.deviation_clips, args.frames = 64, 2, 2, 1, 4
        args.train_step_size, args.rounds, args.warmup, args.compile = 32, 1, 0, False
        args.train_steps, args.train_size = 1, 64
    elif not torch.cuda.is_available():
        print("cuda_speed.py: CUDA is not available here (--dry-run runs the same code on the CPU)",
              file=sys.stderr)
        return 2
    else:
        index = torch.device(args.device).index
        device = torch.device("cuda", torch.cuda.current_device() if index is None else index)
        torch.cuda.set_device(device)
    setup(args)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    print(machine(), file=sys.stderr)
    tables = Tables()
    model = trained_video_model(args.train_steps, args.train_size, device=device)
    parts = {"video": video_part, "pseudo_labels": pseudo_label_part, "end_to_end": end_to_end_part}
    for name in args.parts:
        if name in parts:
            parts[name](model, device, args, sync, tables)
    common = ["--size", str(args.train_step_size), "--clip-len", str(args.clip_len), "--rounds",
              str(args.rounds), "--warmup", str(args.warmup), "--device", device.type]
    if "training" in args.parts:
        train_speed.main(common)
    if "flownet2" in args.parts:
        command = [sys.executable, "-m", "benchmarks.flownet2_speed", "--devices", device.type,
                   "--size", str(max(64, args.size // 64 * 64)), "--warmup", str(args.warmup), "--iters",
                   str(max(1, args.rounds))]
        flow = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        print(flow.stdout, end="")
        if flow.returncode != 0:
            print(flow.stderr[-3000:], file=sys.stderr)
            return 1
    if args.json is not None:
        tables.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.cuda_speed"))
