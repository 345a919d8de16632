"""VideoModel training step time and peak memory: float32 with the release's decoder, float32 with
the factored decoder (`--precision auto`'s on a CPU) and bf16 autocast, with and without
channels-last, measured in one run.

A step is the video recipe's (the release's train.py): train mode with the backbone's BatchNorm frozen,
forward over one clip, the sum over frames of BCE-with-logits (in float32), backward, Adam.
Times are medians of `--rounds` interleaved rounds in this process; each configuration's peak
memory (CPU: the growth of the resident set during warm-up steps; CUDA: peak allocated) is
taken in a subprocess of its own so it is that configuration's alone.

    python -m benchmarks.train_speed                              # 256x256, clips of 4, 3 rounds
    python -m benchmarks.train_speed --size 64 --rounds 1         # a quick smoke run
    python -m benchmarks.train_speed --configs release bf16-cl    # two of the configurations
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks._common import ROOT, Row, add_common_arguments, machine, report, setup, time_interleaved
from libs.inference.optimize import to_channels_last
from libs.networks import VideoModel
from libs.runtime.arguments import ArgumentParser, run_command
from libs.runtime.precision import autocast

# --configs name -> (table row, precision, channels-last, factored decoder)
CONFIGS = {
    "release": ("fp32, release decoder (resize then conv)", "fp32", False, False),
    "fp32": ("fp32", "fp32", False, True),
    "fp32-cl": ("fp32 + channels_last", "fp32", True, True),
    "bf16": ("bf16 autocast", "bf16", False, True),
    "bf16-cl": ("bf16 autocast + channels_last", "bf16", True, True),
}
MIB = 2**20


def make_step(precision: str, channels_last: bool, factored: bool, size: int, clip_len: int, batch: int,
              device: str):
    """A closure doing one training step of a fresh VideoModel (seeded) on a fixed random clip, with
    the factored decoder or (`factored` False) the release's resize-then-convolve decoder."""
    torch.manual_seed(0)
    # a clip's frames as one batch, as the video recipe builds its model
    model = VideoModel(decoder="factored" if factored else "release", frames_as_batch=True).to(device)
    model.train()
    model.freeze_bn()
    if channels_last:
        to_channels_last(model)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    generator = torch.Generator().manual_seed(1)
    clips = torch.randn(batch, clip_len, 3, size, size, generator=generator).to(device)
    labels = (torch.rand(batch, clip_len, 1, size, size, generator=generator) > 0.7).float().to(device)
    if channels_last:
        frames = clips.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        clips = frames.unflatten(0, clips.shape[:2])

    def step() -> float:
        with autocast(precision, device):
            logits = model(clips)
        loss = sum(F.binary_cross_entropy_with_logits(logits[:, t].float(), labels[:, t])
                   for t in range(clip_len))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss.item()

    return step


def _rss() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _peak_rss() -> int:
    """This process's peak resident set size. /proc's VmHWM starts afresh at exec; getrusage's
    ru_maxrss does not (a child inherits its parent's peak), so it is only the fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_memory(name: str, args: argparse.Namespace) -> float:
    """Peak memory (MiB) of two training steps of configuration `name`, in this process."""
    step = make_step(*CONFIGS[name][1:], args.size, args.clip_len, args.batch, args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / MIB
    base = _rss()
    step()
    step()
    return (_peak_rss() - base) / MIB


def memory_in_subprocess(name: str, args: argparse.Namespace) -> float:
    command = [sys.executable, "-m", "benchmarks.train_speed", "--memory-of", name, "--size", str(args.size),
               "--clip-len", str(args.clip_len), "--batch", str(args.batch), "--device", args.device,
               "--threads", str(args.threads)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="frame height and width (default 256)")
    parser.add_argument("--clip-len", type=int, default=4, help="frames a clip (default 4)")
    parser.add_argument("--batch", type=int, default=1, help="clips per step (the release: 1)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), metavar="NAME",
                        help=f"the configurations to measure, the first being the baseline of the "
                             f"ratios: {', '.join(CONFIGS)} (default: all, in that order)")
    parser.add_argument("--memory-of", default=None, choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    setup(args)
    if args.memory_of:
        print(json.dumps({"peak_mib": measure_memory(args.memory_of, args)}))
        return 0
    print(machine(), file=sys.stderr)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    rows = [Row(CONFIGS[name][0], make_step(*CONFIGS[name][1:], args.size, args.clip_len, args.batch,
                                            args.device), 1, []) for name in args.configs]
    time_interleaved(rows, args.rounds, args.warmup, sync=sync)
    memory = [memory_in_subprocess(name, args) for name in args.configs]
    table = [[row.name, f"{row.median:.2f}", f"{rows[0].median / row.median:.2f}x", f"{mib:.0f}",
              f"{mib / memory[0]:.2f}"] for row, mib in zip(rows, memory)]
    report(f"VideoModel training step, {args.size}x{args.size}, {args.batch} clip(s) of {args.clip_len}, "
           f"Adam, median of {args.rounds} interleaved rounds",
           ["configuration", "s/step", "speed-up", "peak memory (MiB)", "memory ratio"], table)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.train_speed"))
