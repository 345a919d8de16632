"""FlowNet2 inference speed and peak memory: frame pairs per second at 448x448 (RCRNet's size).

Rows: float32 eager and bf16 autocast on the CPU, and the same plus fp16 autocast on CUDA when
a GPU is present. Each row runs in its own subprocess so that its peak memory is its own
(CPU: peak resident set size of the process; CUDA: `torch.cuda.max_memory_allocated`). Speed
ratios and the relative difference of each row's flow from the float32 flow (same seeded
weights and frames) are computed within the same run.

    python -m benchmarks.flownet2_speed                 # 448x448, batch 1, CPU (+ CUDA if present)
    python -m benchmarks.flownet2_speed --iters 10 --devices cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from flownet2.models import FlowNet2
from libs.runtime.arguments import ArgumentParser, run_command
from libs.runtime.calibration import hardware_name

ROOT = Path(__file__).resolve().parents[1]

PRECISIONS = {"float32": None, "bf16 autocast": torch.bfloat16, "fp16 autocast": torch.float16}
MIB = 2**20


def _current_rss_bytes() -> int:
    """Resident set size now (Linux); 0 where /proc is unavailable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def run_row(device: str, precision: str, size: int, batch: int, warmup: int, iters: int, out: Path) -> dict:
    """Time one configuration in this process; save its flow to `out`; return the measurements."""
    torch.manual_seed(0)
    model = FlowNet2().eval()
    # PyTorch's default conv init keeps activations O(1) through the 5 stacked networks (the
    # port's init, uniform [0, 1) biases, makes them grow): realistic magnitudes for bf16/fp16.
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.reset_parameters()
    model.to(device)
    frames = torch.rand(batch, 3, 2, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    dtype = PRECISIONS[precision]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward() -> torch.Tensor:
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            return model(frames)

    # Weights and frames are in memory; everything above this is the forward passes' own.
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = _current_rss_bytes()
    with torch.inference_mode():
        for _ in range(warmup):
            forward()
        sync()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            flow = forward()
            sync()
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else _peak_rss_bytes()
    torch.save(flow.float().cpu(), out)
    seconds = statistics.median(times)
    return {
        "device": device,
        "precision": precision,
        "ms_per_pair": 1000 * seconds / batch,
        "pairs_per_s": batch / seconds,
        "peak_bytes": peak,
        "peak_above_baseline_bytes": max(0, peak - baseline),
    }


def _device_name(device: str) -> str:
    if device == "cuda":
        return hardware_name(device)
    return f"{hardware_name(device)}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448, help="frame height and width (multiple of 64)")
    parser.add_argument("--batch", type=int, default=1, help="frame pairs per forward pass")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--iters", type=int, default=3, help="timed forward passes (the median is reported)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--row", nargs=2, metavar=("DEVICE", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.row:
        result = run_row(*args.row, args.size, args.batch, args.warmup, args.iters, args.out)
        print(json.dumps(result))
        return

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            precisions = ["float32", "bf16 autocast"] + (["fp16 autocast"] if device == "cuda" else [])
            flows = {}
            for precision in precisions:
                out = Path(tmp) / f"{device}-{precision.replace(' ', '_')}.pt"
                command = [sys.executable, "-m", "benchmarks.flownet2_speed", "--row", device, precision,
                           "--out", str(out)]
                command += ["--size", str(args.size), "--batch", str(args.batch)]
                command += ["--warmup", str(args.warmup), "--iters", str(args.iters)]
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{device} {precision}: failed\n{done.stderr}", file=sys.stderr)
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                flows[precision] = torch.load(out, weights_only=True)
                reference = flows.get("float32")
                row["rel_diff"] = (
                    ((flows[precision] - reference).norm() / reference.norm()).item()
                    if reference is not None
                    else float("nan")
                )
                base = next((r for r in rows if r["device"] == device and r["precision"] == "float32"), row)
                row["speedup"] = row["pairs_per_s"] / base["pairs_per_s"]
                row["memory_ratio"] = row["peak_bytes"] / base["peak_bytes"]
                rows.append(row)

    print(
        f"FlowNet2, {args.size}x{args.size}, batch {args.batch}, "
        f"median of {args.iters} after {args.warmup} warm-up"
    )
    print(f"torch {torch.__version__}; " + "; ".join(f"{d}: {_device_name(d)}" for d in devices))
    memory = "peak RSS" if devices == ["cpu"] else "peak memory (CPU: RSS, CUDA: allocated)"
    header = (
        f"| device | precision | ms / pair | pairs / s | speed vs fp32 | {memory} MiB "
        "| above weights+input MiB | memory vs fp32 | flow rel. diff vs fp32 |"
    )
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for r in rows:
        print(
            f"| {r['device']} | {r['precision']} | {r['ms_per_pair']:.0f} | {r['pairs_per_s']:.2f} "
            f"| {r['speedup']:.2f}x | {r['peak_bytes'] / MIB:.0f} "
            f"| {r['peak_above_baseline_bytes'] / MIB:.0f} "
            f"| {r['memory_ratio']:.2f}x | {r['rel_diff']:.1e} |"
        )


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.flownet2_speed"))
