"""One prepared check of the CUDA path: correctness on the GPU first, then speed, in under 8 minutes.

    python -m benchmarks.cuda_check --out results/cuda              # on a CUDA machine
    python -m benchmarks.cuda_check --out /tmp/cuda-dry --dry-run   # the same code on the CPU, tiny sizes

Correctness (any failure makes the exit status 1):
- golden: ImageModel, VideoModel, FGPLG and FlowNet 2.0 under the reference weights against the
  release's outputs, in float64 and float32 with TF32 off (float64: within 1e-6 of the output's
  largest magnitude; float32 and FGPLG: 1e-4);
- ops: FlowNet 2.0's correlation, resample2d and channel norm on the device against the CPU,
  forward and backward, in float64;
- maps: inference.py --device cuda against --device cpu (--precision fp32) on the same frames,
  PNG by PNG, within the inference tolerance (at most 0.1% of the pixels differ, none by more
  than 2 levels); once more with TF32 disabled in cuDNN and cuBLAS (NVIDIA_TF32_OVERRIDE=0);
- training: a few steps of each recipe (image, video, fgplg with FlowNet 2.0, random weights) in
  fp32, bf16 autocast and fp16 with loss scaling: finite losses and weights;
- torchrun: an all-reduce and a DDP step over NCCL with two processes (NCCL refuses two on one
  GPU; then one), and train.py under torchrun against one process with the same global batch.

Speed (recorded; a failure here does not change the exit status):
- VideoModel frames/s at 448x448, clips of 4: fp32, TF32, bf16 and fp16 autocast; channels-last
  with BatchNorm folded; CUDA graphs; torch.compile (compile time reported apart); 1, 4 and 16
  clips per batch; each with its 8-bit deviation from fp32;
- FlowNet 2.0 pairs/s at 448x448 (fp32, bf16 and fp16 autocast);
- inference.py end to end on 854x480 JPEG frames (a short and a long run: the difference gives
  the steady rate) against the model alone on the same clips;
- peak memory of video training steps at 448x448 (clips of 4), fp32 and bf16.

Every check is guarded: a failure is recorded with a one-line reason and the run goes on. Each
section has a share of the time budget (`--budget`, default 420 s); speed checks that no longer
fit are skipped and recorded. Results go to `<out>/cuda_check.json` (rewritten after every
check) and the logs of the processes started to `<out>/logs/`; a table is printed last.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    ROOT,
    clip_batches,
    deviation,
    machine,
    markdown_table,
    setup,
    synthetic_data,
    trained_video_model,
)
from libs.runtime.errors import one_line

REFERENCE = Path(os.environ.get("RCRNET_REFERENCE", ROOT.parent / "shared" / "reference"))
RESULTS_FILE = "cuda_check.json"
FC_KEYS = ("backbone.resnet.fc.weight", "backbone.resnet.fc.bias")
FGPLG_INPUTS = ("frame", "frame_l", "frame_r", "label_l", "label_r")
FRAMES_PER_SECOND_TARGET = 1000.0
PIPELINE_TARGET = 0.8
# lines of torchrun's report about a failed worker (the worker's own lines say why)
TORCHRUN_REPORT = r"^[EWI]\d{4} |elastic|ChildFailedError|FAILED$|error_file|To enable traceback"
DRY_RUN_SAME_CODE = "dry run: another row runs the same code"
SUMMARY = re.compile(r"(\d+) saliency maps written .* in ([0-9.]+) s")

# name: (kind, share of the time budget); the sections run in this order
SECTIONS: dict[str, tuple[str, float]] = {
    "setup": ("setup", 0.10),
    "golden": ("correctness", 0.06),
    "ops": ("correctness", 0.02),
    "maps": ("correctness", 0.07),
    "training": ("correctness", 0.08),
    "torchrun": ("correctness", 0.12),
    "video_speed": ("speed", 0.36),
    "flownet2_speed": ("speed", 0.03),
    "end_to_end": ("speed", 0.11),
    "training_memory": ("speed", 0.03),
    "targets": ("target", 0.02),
}


@dataclass(frozen=True)
class Plan:
    """Sizes, counts and time limits of a run: the GPU run's or the CPU dry run's."""

    dry_run: bool
    size: int  # frames of the speed, memory and inference.py checks are size x size
    clip_len: int
    batches: tuple[int, int, int]  # clips per batch: small, medium, large
    warmup: int
    max_calls: int  # timed calls of one configuration at most
    timed_seconds: float  # and seconds at most (after the first call)
    deviation_clips: int
    model_steps: int  # the benchmark model: training steps and frame size
    model_size: int
    frame_height: int  # inference.py's input frames
    frame_width: int
    map_frames: int
    e2e_frames: tuple[int, int]  # the short and the long inference.py run
    workers: int
    train_size: int
    train_steps: int
    ddp_size: int
    budget: float
    compile: bool
    compile_reserve: float  # section seconds a torch.compile configuration needs to start
    subprocess_threads: int  # OMP_NUM_THREADS of the processes started (0: theirs)


def make_plan(dry_run: bool, budget: float | None, compile: str) -> Plan:
    """The GPU plan (448x448, clips of 4, 1/4/16 clips per batch) or the dry run's (tiny)."""
    cores = os.cpu_count() or 2
    if dry_run:
        return Plan(dry_run=True, size=64, clip_len=2, batches=(1, 2, 3), warmup=0, max_calls=1,
                    timed_seconds=0.2, deviation_clips=2, model_steps=1, model_size=64, frame_height=48,
                    frame_width=64, map_frames=4, e2e_frames=(4, 8), workers=1, train_size=32, train_steps=1,
                    ddp_size=32, budget=budget or 1800.0, compile=compile == "on", compile_reserve=0.0,
                    subprocess_threads=1)
    return Plan(dry_run=False, size=448, clip_len=4, batches=(1, 4, 16), warmup=3, max_calls=60,
                timed_seconds=1.5, deviation_clips=6, model_steps=240, model_size=224, frame_height=480,
                frame_width=854, map_frames=8, e2e_frames=(64, 512), workers=max(1, min(8, cores - 2)),
                train_size=256, train_steps=3, ddp_size=64, budget=budget or 420.0, compile=compile != "off",
                compile_reserve=90.0, subprocess_threads=0)


class Skip(Exception):
    """A check that does not apply here; its reason is recorded."""


def skipped(reason: str) -> Callable[[], Outcome]:
    """A check function that only records why it does not apply."""

    def check() -> Outcome:
        raise Skip(reason)

    return check


@dataclass
class Outcome:
    """What a check found: a short text for the table, its numbers, and whether it passed."""

    text: str
    numbers: dict[str, Any] = field(default_factory=dict)
    passed: bool = True


@dataclass
class Record:
    """One check's entry in the results."""

    section: str
    name: str
    kind: str
    status: str  # pass, fail or skip
    seconds: float
    text: str = ""
    reason: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    trace: str = ""


class Run:
    """The records of a run, its time budget per section, its progress lines and its JSON file."""

    def __init__(self, out: Path, plan: Plan, device: torch.device, meta: dict[str, Any]) -> None:
        self.out = out
        self.plan = plan
        self.device = device
        self.meta = meta
        self.start = time.perf_counter()
        self.deadline = self.start + plan.budget
        self.records: list[Record] = []
        self.section = ""
        self.section_deadline = math.inf

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def log(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {text}", flush=True)

    def begin(self, section: str) -> None:
        """Start a section: its deadline is its share of what is left of the budget."""
        names = list(SECTIONS)
        shares = sum(SECTIONS[n][1] for n in names[names.index(section):])
        now = time.perf_counter()
        self.section = section
        self.section_deadline = now + max(0.0, self.deadline - now) * SECTIONS[section][1] / shares
        self.log(f"== {section} ({self.section_deadline - now:.0f} s of the budget)")

    def left(self) -> float:
        """Seconds left to the current section."""
        return self.section_deadline - time.perf_counter()

    def check(self, name: str, fn: Callable[[], Outcome], *, cuda_only: str = "",
              needs: float = 0.0) -> Record:
        """Run one guarded check and record it. `cuda_only`: what needs CUDA (skipped elsewhere);
        `needs`: seconds of the section a speed check needs to start."""
        kind = SECTIONS[self.section][0]
        start = time.perf_counter()
        record = Record(self.section, name, kind, "pass", 0.0)
        try:
            if cuda_only and self.device.type != "cuda":
                raise Skip(f"{cuda_only} needs CUDA")
            if kind == "speed" and self.left() < needs:
                raise Skip(f"time budget: {max(0.0, self.left()):.0f} s left in the section, "
                           f"{needs:.0f} s needed")
            outcome = fn()
            record.status = "pass" if outcome.passed else "fail"
            record.text, record.numbers = outcome.text, outcome.numbers
        except Skip as skip:
            record.status, record.reason = "skip", str(skip)
        except Exception as error:  # a failed check is recorded, the run goes on
            self.failed(record, error)
        if self.device.type == "cuda":
            try:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            except RuntimeError as error:  # a CUDA error left by the check
                self.failed(record, error)
        record.seconds = time.perf_counter() - start
        self.records.append(record)
        self.log(f"{self.section} / {name}: {record.status}  {record.text or record.reason}")
        self.write()
        return record

    @staticmethod
    def failed(record: Record, error: BaseException) -> None:
        record.status = "fail"
        record.reason = f"{type(error).__name__}: {one_line(error)}"[:400]
        record.trace = traceback.format_exc()[-3000:]
        print(record.trace, file=sys.stderr, flush=True)

    def find(self, section: str, name: str) -> Record | None:
        return next((r for r in self.records if r.section == section and r.name == name), None)

    def exit_status(self) -> int:
        """0 when no correctness check failed (skips are for what does not apply here), else 1."""
        return int(any(r.kind == "correctness" and r.status == "fail" for r in self.records))

    def write(self) -> None:
        sections = {name: [asdict(r) for r in self.records if r.section == name] for name in SECTIONS}
        counts = {kind: {status: sum(r.kind == kind and r.status == status for r in self.records)
                         for status in ("pass", "fail", "skip")}
                  for kind in ("correctness", "speed", "target")}
        document = {"meta": self.meta, "plan": asdict(self.plan), "seconds": self.elapsed(),
                    "exit_status": self.exit_status(), "counts": counts, "sections": sections}
        path = self.out / RESULTS_FILE
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(document, indent=1, default=str) + "\n")
        partial.replace(path)

    def table(self) -> str:
        rows = [[r.section, r.name, r.status, (r.text or r.reason).replace("|", "/")] for r in self.records]
        return markdown_table(["section", "check", "result", "numbers"], rows)


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for cuBLAS matrix products and cuDNN convolutions on or off, restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """cuDNN's algorithm search for each new input shape on or off, restored afterwards."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function waiting for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def throughput(run: Callable[[], object], items: int, plan: Plan, sync: Callable[[], None],
               limit: float) -> dict[str, float]:
    """Items per second of `run()` (each call does `items`), after `plan.warmup` untimed calls:
    up to three blocks of back-to-back calls, one synchronisation per block, median block."""
    for _ in range(plan.warmup):
        run()
    sync()
    start = time.perf_counter()
    run()
    sync()
    one = time.perf_counter() - start
    seconds = max(0.0, min(plan.timed_seconds, limit))
    calls = max(1, min(plan.max_calls, int(seconds / max(one, 1e-6))))
    blocks = min(3, calls)
    per_block = max(1, calls // blocks)
    times = []
    for _ in range(blocks):
        sync()
        start = time.perf_counter()
        for _ in range(per_block):
            run()
        sync()
        times.append((time.perf_counter() - start) / per_block)
    per_call = statistics.median(times)
    return {"items_per_s": items / per_call, "ms_per_call": 1e3 * per_call, "timed_calls": blocks * per_block}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, in float64 on the CPU."""
    expected = expected.detach().double().cpu()
    scale = expected.abs().max().item() or 1.0
    return (actual.detach().double().cpu() - expected).abs().max().item() / scale


def child_env(plan: Plan) -> dict[str, str]:
    """Environment of the processes started: unbuffered output, and on the dry run one thread each."""
    env = {"PYTHONUNBUFFERED": "1"}
    if plan.subprocess_threads:
        env.update(OMP_NUM_THREADS=str(plan.subprocess_threads), OMP_WAIT_POLICY="PASSIVE")
    return env


@dataclass
class Finished:
    """A process started by the check, once it ended."""

    name: str
    returncode: int | None  # None: killed at the time limit
    seconds: float
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """One line saying why it failed."""
        if self.returncode is None:
            return f"{self.name}: killed after {self.seconds:.0f} s (time limit)"
        # torchrun prefixes its workers' lines with [rankN]:
        lines = [re.sub(r"^\[(default)?rank\d+\]:\s*", "", line).strip() for line in self.log.splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            return f"{self.name} exited with {self.returncode} and no output"
        # an exception raised in the process, else any line saying error, leaving out torchrun's own report
        own = [not re.search(TORCHRUN_REPORT, line) for line in lines]
        raised = [i for i, line in enumerate(lines)
                  if own[i] and re.match(r"[\w.]*(Error|Exception): ", line)]
        said = [i for i, line in enumerate(lines)
                if own[i] and re.search(r"error|refused|failed", line, re.IGNORECASE)]
        index = (raised or said or [len(lines) - 1])[-1]
        text = lines[index]
        after = lines[index + 1: index + 5]
        if "Last error:" in after and after.index("Last error:") + 1 < len(after):  # NCCL's explanation
            text += f" ({after[after.index('Last error:') + 1]})"
        return f"{self.name} exited with {self.returncode}: {text[:300]}"


def run_processes(commands: dict[str, tuple[list[str], dict[str, str]]], timeout: float,
                  logs: Path) -> dict[str, Finished]:
    """Start every command at once (each in its own process group, output to `logs/<name>.log`),
    wait for all, and kill those still running after `timeout` seconds."""
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[str, tuple[subprocess.Popen, Any, float]] = {}
    for name, (argv, env) in commands.items():
        handle = (logs / f"{name}.log").open("w")
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)
        running[name] = (proc, handle, time.perf_counter())
    deadline = time.perf_counter() + timeout
    done: dict[str, Finished] = {}
    while running:
        for name, (proc, handle, start) in list(running.items()):
            code = proc.poll()
            late = time.perf_counter() > deadline
            if code is None and not late:
                continue
            if code is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            handle.close()
            done[name] = Finished(name, code, time.perf_counter() - start,
                                  (logs / f"{name}.log").read_text(errors="replace"))
            del running[name]
        time.sleep(0.05)
    return done


def cycled_folder(folder: Path, frames: list[Path], count: int) -> Path:
    """A folder of `count` frames: copies of `frames`, cycled, named 00000.jpg, 00001.jpg, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        shutil.copyfile(frames[index % len(frames)], folder / f"{index:05d}{frames[0].suffix}")
    return folder


def compare_maps(first: Path, second: Path) -> Outcome:
    """The 8-bit PNG maps of two inference.py runs: share of differing pixels, largest difference."""
    from PIL import Image

    names = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    others = sorted(p.relative_to(second) for p in second.rglob("*.png"))
    if not names or names != others:
        return Outcome(f"different map files: {len(names)} and {len(others)}", passed=False)
    differing = total = largest = 0
    for name in names:
        a = np.asarray(Image.open(first / name), dtype=np.int16)
        b = np.asarray(Image.open(second / name), dtype=np.int16)
        if a.shape != b.shape:
            return Outcome(f"{name}: shapes {a.shape} and {b.shape}", passed=False)
        diff = np.abs(a - b)
        differing += int((diff > 0).sum())
        total += diff.size
        largest = max(largest, int(diff.max()))
    share = differing / total
    within = share <= 1e-3 and largest <= 2
    return Outcome(f"{100 * share:.4f}% of pixels differ, largest {largest} levels ({len(names)} maps)",
                   {"maps": len(names), "pixels_differing": share, "largest_levels": largest,
                    "within_tolerance": within}, within)


def batch_of(clips: torch.Tensor, start: int, size: int) -> torch.Tensor:
    """`size` clips from index `start` on, wrapping around."""
    return clips[[(start + k) % len(clips) for k in range(size)]]


def flat_weights(state: dict[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
    """The tensors `keys` of a state dict, flattened into one float64 vector."""
    return torch.cat([state[k].detach().double().flatten().cpu() for k in keys])


def graphed(fn: Callable[[torch.Tensor], torch.Tensor],
            example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """`fn` captured in a CUDA graph for inputs shaped like `example`: warmed up on a side stream
    (cuDNN's algorithm search included), captured once, then replayed on a static input buffer.
    The returned tensor is the graph's static output, overwritten by the next call."""
    static_input = example.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn(static_input)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_output = fn(static_input)

    def replay(x: torch.Tensor) -> torch.Tensor:
        static_input.copy_(x)
        graph.replay()
        return static_output

    replay.graph = graph  # keeps the graph (and its memory pool) alive with the function
    return replay


# ----------------------------------------------------------------------------- the NCCL probe


def nccl_version() -> str | None:
    """NCCL's version as a.b.c (None without NCCL)."""
    if not torch.distributed.is_available() or not torch.distributed.is_nccl_available():
        return None
    version = torch.cuda.nccl.version()
    if isinstance(version, int):  # older torch: major * 1000 + minor * 100 + patch
        version = (version // 1000, version // 100 % 10, version % 100)
    return ".".join(map(str, version))


def nccl_probe(path: Path, device_name: str) -> int:
    """Run by torchrun (`--nccl-probe`): an all-reduce and one DDP step across the processes (NCCL on
    CUDA, gloo on the CPU); rank 0 writes what it found to `path`."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "cpu":
        device, backend, options = torch.device("cpu"), "gloo", {}
    else:
        device = torch.device(device_name if ":" in device_name else f"cuda:{local_rank}")
        torch.cuda.set_device(device)
        backend, options = "nccl", {"device_id": device}
    dist.init_process_group(backend, **options)
    try:
        total = torch.full((8,), float(rank + 1), device=device)
        dist.all_reduce(total)
        reduced = bool(torch.all(total == world * (world + 1) / 2))

        def layer() -> torch.nn.Module:
            torch.manual_seed(0)
            return torch.nn.Conv2d(3, 4, 3).to(device)

        def batch(seed: int) -> torch.Tensor:
            return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed)).to(device)

        module = layer()
        ddp = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        ddp(batch(rank)).square().mean().backward()
        grad = module.weight.grad.detach().flatten()
        grads = [torch.empty_like(grad) for _ in range(world)]
        dist.all_gather(grads, grad)
        # DDP's gradient is the mean of each process's own: recompute that without DDP
        alone = layer()
        for seed in range(world):
            (alone(batch(seed)).square().mean() / world).backward()
        expected = alone.weight.grad.detach().flatten()
        averaged = torch.allclose(grad, expected, rtol=1e-5, atol=1e-7)
        identical = all(torch.equal(grads[0], g) for g in grads)
        if rank == 0:
            nccl = nccl_version() if backend == "nccl" else None
            path.write_text(json.dumps({"backend": backend, "world_size": world, "all_reduce": reduced,
                                        "ddp_gradients_averaged": averaged, "same_on_every_rank": identical,
                                        "nccl": nccl}))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


# ----------------------------------------------------------------------------- the checks


@dataclass
class Setting:
    """One way of running the VideoModel: precision (tf32: fp32 with TF32), clips per batch, and how
    (eager: the model itself; plain: autocast only; channels_last: no BatchNorm folding; prepared:
    prepare_model's defaults; graph: prepared, in a CUDA graph; compile; compile_graphs:
    torch.compile's reduce-overhead mode)."""

    precision: str
    batch: int
    how: str = "prepared"

    @property
    def name(self) -> str:
        label = {"eager": "eager (the model itself, no_grad)", "plain": "autocast only",
                 "channels_last": "channels-last (BN not folded)", "prepared": "channels-last + BN folded",
                 "graph": "channels-last + BN folded + CUDA graph",
                 "compile": "channels-last + BN folded + torch.compile",
                 "compile_graphs": "channels-last + BN folded + torch.compile reduce-overhead"}[self.how]
        return f"{self.precision} {label}, {self.batch} clip{'s' if self.batch > 1 else ''}/batch"

    @property
    def cuda_only(self) -> str:
        if self.how in ("graph", "compile_graphs"):
            return "CUDA graphs"
        return "TF32" if self.precision == "tf32" else ""


class CudaCheck:
    """The sections of the check, in order, sharing the data, the model and the run's records."""

    def __init__(self, args: argparse.Namespace, plan: Plan, out: Path, work: Path,
                 device: torch.device) -> None:
        self.args = args
        self.plan = plan
        self.out = out
        self.work = work
        self.device = device
        self.cache = Path(args.cache)
        self.logs = out / "logs"
        self.sync = synchronizer(device)
        self.run = Run(out, plan, device, describe_machine(device, plan, args))
        self.refweights: Any = None
        self.train_config: Path | None = None
        self.frames: list[Path] = []
        self.model: torch.nn.Module | None = None
        self.model_path: Path | None = None
        self.clips: torch.Tensor | None = None
        self.reference: torch.Tensor | None = None

    @property
    def device_name(self) -> str:
        return str(self.device)

    def all(self) -> int:
        for section in (self.setup, self.golden, self.ops, self.maps, self.training, self.torchrun,
                        self.video_speed, self.flownet2_speed, self.end_to_end, self.training_memory,
                        self.targets):
            section()
        self.run.write()
        print("\n" + self.run.table(), flush=True)
        status = self.run.exit_status()
        print(f"\n{RESULTS_FILE} in {self.out}; {self.run.elapsed():.0f} s; exit status {status}", flush=True)
        return status

    def need_model(self) -> torch.nn.Module:
        if self.model is None:
            raise RuntimeError("no benchmark model (its setup check failed)")
        return self.model

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        self.run.begin("setup")
        self.run.check("synthetic data", self.make_data)
        self.run.check("benchmark model", self.make_model)

    def make_data(self) -> Outcome:
        from libs.datasets.synthetic import generate_synthetic

        folder = self.cache / "cuda_check"
        self.train_config = generate_synthetic(folder / "train_48x64", seed=3, height=48, width=64, videos=1,
                                               frames=12, vos_frames=20, images=4)
        p = self.plan
        frames = generate_synthetic(folder / f"frames_{p.frame_height}x{p.frame_width}", seed=1,
                                    height=p.frame_height, width=p.frame_width, videos=1, frames=16,
                                    vos_frames=2, images=1)
        videos = frames.parent / "DAVIS2016" / "JPEGImages" / "480p"
        self.frames = sorted(sorted(d for d in videos.iterdir() if d.is_dir())[0].glob("*.jpg"))
        return Outcome(f"training videos 48x64, {len(self.frames)} frames of "
                       f"{p.frame_width}x{p.frame_height}", {"frames": len(self.frames)})

    def make_model(self) -> Outcome:
        from libs.networks.weights import save_weights

        start = time.perf_counter()
        self.model = trained_video_model(self.plan.model_steps, self.plan.model_size, device=self.device)
        self.model_path = self.work / "video_model.pth"
        save_weights(self.model, self.model_path)
        return Outcome(f"VideoModel trained {self.plan.model_steps} steps at {self.plan.model_size}x"
                       f"{self.plan.model_size} on the synthetic videos (or read from {self.cache})",
                       {"seconds": time.perf_counter() - start})

    # ------------------------------------------------------------------ correctness

    def golden(self) -> None:
        self.run.begin("golden")
        self.run.check("reference weights module", self.load_refweights)
        native = {"image_model": torch.float64, "video_model": torch.float64, "flownet2": torch.float64,
                  "fgplg": torch.float32}
        for name in native:
            model: list[torch.nn.Module] = []
            for dtype in (torch.float64, torch.float32):
                label = f"{name} {str(dtype).removeprefix('torch.')}"
                if self.plan.dry_run and dtype != native[name]:
                    self.run.check(label, skipped("dry run: the CPU tests' dtype only"))
                elif self.plan.dry_run and name in ("fgplg", "flownet2"):
                    self.run.check(label, skipped("dry run: the CPU test suite runs this golden test"))
                else:
                    self.run.check(label, lambda n=name, d=dtype, m=model: self.golden_case(n, d, m))
            model.clear()

    def load_refweights(self) -> Outcome:
        spec = importlib.util.spec_from_file_location("refweights", REFERENCE / "refweights.py")
        if spec is None or not (REFERENCE / "refweights.py").is_file():
            raise FileNotFoundError(f"no reference folder at {REFERENCE} (set RCRNET_REFERENCE)")
        self.refweights = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.refweights)
        return Outcome(str(REFERENCE))

    def golden_case(self, name: str, dtype: torch.dtype, cache: list[torch.nn.Module]) -> Outcome:
        """The release's output for the reference weights, on the device in `dtype` (TF32 off); the
        model is built once per name (kept in `cache`)."""
        from flownet2.models import FlowNet2
        from libs.networks import FGPLG, ImageModel, VideoModel

        refweights = self.refweights
        if refweights is None:
            raise RuntimeError("no reference weights (see the check above)")
        case = torch.load(REFERENCE / "golden" / f"{name}.pt", weights_only=True)
        if not cache:
            keys = refweights.read_keys(REFERENCE / "keys" / f"{name}.tsv")
            weights = refweights.reference_state_dict(keys)
            weights = {k: v for k, v in weights.items() if k not in FC_KEYS}
            build = {"image_model": ImageModel, "video_model": VideoModel, "fgplg": FGPLG,
                     "flownet2": lambda: FlowNet2(rgb_max=case["rgb_max"])}[name]
            model = build()
            model.load_state_dict(weights, strict=True)
            cache.append(model.eval())
        model = cache[0].to(self.device, dtype)
        with torch.no_grad(), tf32(False):
            if name == "fgplg":
                output = model.generate_pseudo_label(*(case[k].to(self.device, dtype) for k in FGPLG_INPUTS))
            else:
                output = model(case["input"].to(self.device, dtype))
        error = relative_error(output, case["output"])
        tolerance = 1e-6 if dtype == torch.float64 and name != "fgplg" else 1e-4
        return Outcome(f"error {error:.1e} of max|output| (tolerance {tolerance:g})",
                       {"relative_error": error, "tolerance": tolerance}, error <= tolerance)

    def ops(self) -> None:
        self.run.begin("ops")
        for name in ("correlation", "resample2d", "channel_norm"):
            self.run.check(f"{name} forward and backward, float64, vs CPU", lambda n=name: self.op_case(n))

    def op_case(self, name: str) -> Outcome:
        from flownet2.channelnorm import channel_norm
        from flownet2.correlation import correlation
        from flownet2.resample2d import resample2d

        g = torch.Generator().manual_seed(0)
        if name == "correlation":
            fn = correlation
            inputs = [torch.randn(2, 8, 12, 14, generator=g, dtype=torch.float64) for _ in range(2)]
        elif name == "resample2d":
            fn = resample2d
            inputs = [torch.randn(2, 3, 10, 12, generator=g, dtype=torch.float64),
                      4 * torch.randn(2, 2, 10, 12, generator=g, dtype=torch.float64)]
        else:
            fn, inputs = channel_norm, [torch.randn(2, 6, 9, 11, generator=g, dtype=torch.float64)]

        def forward_backward(device: torch.device, grad: torch.Tensor | None) -> tuple[torch.Tensor, list]:
            xs = [x.to(device).requires_grad_() for x in inputs]
            out = fn(*xs)
            grads = torch.autograd.grad(out, xs, grad.to(device)) if grad is not None else []
            return out.detach().cpu(), [x.cpu() for x in grads]

        shape = forward_backward(torch.device("cpu"), None)[0].shape
        grad = torch.randn(shape, generator=g, dtype=torch.float64)
        expected, expected_grads = forward_backward(torch.device("cpu"), grad)
        output, grads = forward_backward(self.device, grad)
        errors = [relative_error(output, expected)]
        errors += [relative_error(a, b) for a, b in zip(grads, expected_grads)]
        tolerance = 1e-10
        return Outcome(f"forward {errors[0]:.1e}, gradients {max(errors[1:]):.1e} of max "
                       f"(tolerance {tolerance:g})",
                       {"forward": errors[0], "gradients": errors[1:], "tolerance": tolerance},
                       max(errors) <= tolerance)

    def inference_command(self, folder: Path, results: Path, device: str, extra: list[str],
                          workers: int | None = None) -> list[str]:
        """inference.py on a folder of frames with the benchmark model (`workers`: -j, default the plan's)."""
        p = self.plan
        return [sys.executable, str(ROOT / "inference.py"), "--input", str(folder), "--checkpoint",
                str(self.model_path), "--results-folder", str(results), "--size", str(p.size), "--clip-len",
                str(p.clip_len), "-j", str(workers or p.workers), "--device", device, "--compile", "off",
                "--overwrite", *extra]

    def maps(self) -> None:
        self.run.begin("maps")
        runs: dict[str, Finished] = {}
        self.run.check("inference.py --precision fp32 on the CPU and the device", lambda: self.map_runs(runs))
        self.run.check("maps: device vs CPU", lambda: self.map_compare(runs, "device"))
        self.run.check("maps: device with NVIDIA_TF32_OVERRIDE=0 vs CPU",
                       lambda: self.map_compare(runs, "device_tf32_off"), cuda_only="TF32")

    def map_runs(self, runs: dict[str, Finished]) -> Outcome:
        self.need_model()
        folder = cycled_folder(self.work / "frames_maps", self.frames, self.plan.map_frames)
        env = child_env(self.plan)
        devices = {"cpu": ("cpu", {}), "device": (self.device_name, {})}
        if self.device.type == "cuda":
            devices["device_tf32_off"] = (self.device_name, {"NVIDIA_TF32_OVERRIDE": "0"})
        commands = {f"maps_{name}": (self.inference_command(folder, self.work / "maps" / name, device,
                                                            ["--precision", "fp32"], workers=2),
                                     {**env, **extra})
                    for name, (device, extra) in devices.items()}
        finished = run_processes(commands, max(60.0, self.run.left()), self.logs)
        runs.update({name.removeprefix("maps_"): f for name, f in finished.items()})
        failed = [f.failure() for f in finished.values() if not f.ok]
        if failed:
            raise RuntimeError("; ".join(failed))
        return Outcome(", ".join(f"{n} {f.seconds:.0f} s" for n, f in runs.items()),
                       {n: f.seconds for n, f in runs.items()})

    def map_compare(self, runs: dict[str, Finished], name: str) -> Outcome:
        if not all(n in runs and runs[n].ok for n in ("cpu", name)):
            raise RuntimeError("the inference.py runs did not all succeed (see the check above)")
        return compare_maps(self.work / "maps" / "cpu", self.work / "maps" / name)

    def training(self) -> None:
        self.run.begin("training")
        p = self.plan
        for recipe in ("image", "video", "fgplg"):
            clip_len = p.clip_len if recipe == "video" else None
            for precision in ("fp32", "bf16", "fp16"):
                name = f"{recipe} recipe, {precision}, {p.train_steps} steps"
                if p.dry_run and recipe != "video" and precision != "fp32":
                    self.run.check(name, skipped(DRY_RUN_SAME_CODE))
                    continue
                self.run.check(name, lambda r=recipe, q=precision, c=clip_len:
                               self.train_case(r, q, p.train_size, p.train_steps, c))

    def train_case(self, recipe_name: str, precision: str, size: int, steps: int, clip_len: int | None = None,
                   memory: bool = False) -> Outcome:
        """A few steps of a recipe through the training loop on the synthetic videos; finite loss and
        weights (and, with `memory`, the peak of CUDA memory allocated)."""
        from libs.engine import (
            RECIPES,
            RecipeOptions,
            TrainConfig,
            Trainer,
            build_datasets,
            build_model,
            make_task,
        )
        from libs.runtime.session import Runtime

        if precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise Skip(f"{torch.cuda.get_device_name(self.device)} has no bfloat16")
        recipe = RECIPES[recipe_name]
        options = RecipeOptions(data=self.train_config.parent, dataset_config=self.train_config, size=size,
                                clip_len=clip_len, checkpoint="none", flow="flownet2",
                                flownet_checkpoint="none", label_interval=3)
        train_set, _ = build_datasets(recipe, options)
        torch.manual_seed(0)
        model = build_model(recipe, options, log=False)
        config = TrainConfig(save_folder=self.work / "train", epochs=1, lr=recipe.lr,
                             batch_size=2 if recipe.clip_len is None else 1, num_workers=0,
                             steps_per_epoch=steps, progress=False, tensorboard=False)
        from libs.runtime.plan import plan_run

        trainer = Trainer(make_task(recipe, model), Runtime(device=self.device, seed=0), config, train_set,
                          None, plan_run("training", self.device, precision))
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
        values = trainer.train_epoch(1)
        finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        numbers = {"loss": values["loss"], "frames": values["frames"], "seconds": values["seconds"],
                   "weights_finite": finite, "size": size}
        text = f"loss {values['loss']:.4f}, {values['seconds'] / max(1, steps):.2f} s/step"
        if precision == "fp16":
            numbers["loss_scale"] = trainer.scaler.get_scale()
            text += f", loss scale {numbers['loss_scale']:g}"
        if memory:
            numbers["peak_mib"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            text += f", peak {numbers['peak_mib']:.0f} MiB"
        if not finite:
            text += ", weights not finite"
        return Outcome(text, numbers, math.isfinite(values["loss"]) and finite)

    def torchrun(self) -> None:
        self.run.begin("torchrun")
        probe = self.run.check("NCCL all-reduce and DDP step, 2 processes", lambda: self.probe(2),
                               cuda_only="NCCL")
        ranks = 2
        if self.plan.dry_run:
            ranks = 1  # two gloo processes are trained and compared by tests/test_engine.py
        elif probe.status != "pass":
            ranks = 1
            self.run.check("NCCL all-reduce and DDP step, 1 process", lambda: self.probe(1), cuda_only="NCCL")
        self.run.check(f"train.py under torchrun ({ranks} process{'es' if ranks > 1 else ''}) vs one process",
                       lambda: self.torchrun_train(ranks))

    def probe(self, ranks: int) -> Outcome:
        count = torch.cuda.device_count()
        device = "cuda" if ranks <= count else "cuda:0"
        result = self.work / f"probe_{ranks}.json"
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                "--module", "benchmarks.cuda_check", "--nccl-probe", str(result), "--probe-device", device]
        finished = run_processes({f"nccl_probe_{ranks}": (argv, child_env(self.plan))},
                                 max(60.0, min(120.0, self.run.left())), self.logs)[f"nccl_probe_{ranks}"]
        if not finished.ok:
            if ranks > count:
                raise Skip(f"NCCL refused {ranks} processes on {count} GPU: {finished.failure()}")
            raise RuntimeError(finished.failure())
        found = json.loads(result.read_text())
        passed = found["all_reduce"] and found["ddp_gradients_averaged"] and found["same_on_every_rank"]
        return Outcome(f"{found['backend']} {found.get('nccl') or ''}, world size {found['world_size']}: "
                       f"all-reduce {found['all_reduce']}, DDP gradients averaged "
                       f"{found['ddp_gradients_averaged']}", found, passed)

    def torchrun_train(self, ranks: int) -> Outcome:
        """train.py (video recipe, fresh weights, seed 0, fp32, 1 epoch) under torchrun with `ranks`
        processes of 1 clip against one process of `ranks` clips per batch.

        One process under torchrun is the same computation: the weights must agree to 1% of the
        update (cuDNN's atomics may differ). With two, each process draws its own dropout masks and
        clip reversals, so only the direction and size of the update can be compared."""
        from libs.engine import RECIPES, RecipeOptions, backup_path, build_datasets, build_model, resume_path
        from libs.networks.weights import read_state_dict
        from libs.runtime.files import read_torch_file
        from libs.runtime.session import seed_everything

        if self.device.type == "cpu":
            device = "cpu"
        else:
            device = "cuda" if ranks <= torch.cuda.device_count() else "cuda:0"
        common = ["--data", str(self.train_config.parent), "--dataset-config", str(self.train_config),
                  "--size", str(self.plan.ddp_size), "-j", "0", "--device", device, "--seed", "0",
                  "--checkpoint", "none", "--epochs", "1", "--precision", "fp32"]
        train_py = str(ROOT / "train.py")
        single, parallel = self.work / "single", self.work / "torchrun"
        env = child_env(self.plan)
        commands = {
            "train_single": ([sys.executable, train_py, *common, "--batch-size", str(ranks), "--save-folder",
                              str(single)], env),
            "train_torchrun": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                f"--nproc_per_node={ranks}", train_py, *common, "--batch-size", "1",
                                "--save-folder", str(parallel)], env),
        }
        finished = run_processes(commands, max(90.0, self.run.left()), self.logs)
        failed = [f.failure() for f in finished.values() if not f.ok]
        if failed:
            raise RuntimeError("; ".join(failed))
        seed_everything(0)
        recipe = RECIPES["video"]
        options = RecipeOptions(data=self.train_config.parent, dataset_config=self.train_config,
                                size=self.plan.ddp_size, checkpoint="none")
        build_datasets(recipe, options)  # as train.py does before building the model
        fresh = build_model(recipe, options, log=False).state_dict()
        trained = read_state_dict(backup_path(single, recipe.prefix, 1))
        keys = [k for k, v in trained.items() if v.is_floating_point()]
        initial, one = flat_weights(fresh, keys), flat_weights(trained, keys)
        many = flat_weights(read_state_dict(backup_path(parallel, recipe.prefix, 1)), keys)
        world = read_torch_file(resume_path(parallel, recipe.prefix), "resume file")["world_size"]
        update, other = one - initial, many - initial
        difference = ((many - one).norm() / update.norm()).item()
        cosine = (torch.dot(update, other) / (update.norm() * other.norm())).item()
        ratio = (other.norm() / update.norm()).item()
        numbers = {"ranks": ranks, "world_size_in_resume": world, "difference_over_update": difference,
                   "update_cosine": cosine, "update_norm_ratio": ratio, "max_abs_difference":
                   (many - one).abs().max().item(), "seconds": {n: f.seconds for n, f in finished.items()}}
        if ranks == 1:
            passed = difference <= 1e-2
            rule = "difference <= 1% of the update"
        else:
            passed = cosine >= 0.3 and 0.5 <= ratio <= 2.0
            rule = "stochastic: update cosine >= 0.3, norm ratio in [0.5, 2]"
        passed = passed and world == ranks
        return Outcome(f"difference {100 * difference:.3g}% of the update, cosine {cosine:.3f}, norm ratio "
                       f"{ratio:.3f} ({rule})", numbers, passed)

    # ------------------------------------------------------------------ speed

    def settings(self) -> list[Setting]:
        """The VideoModel configurations, most telling first (the later ones are cut when time runs out).
        The dry run leaves out rows whose code another row runs (another batch size)."""
        small, medium, large = self.plan.batches
        precisions = ("fp32", "tf32", "bf16", "fp16")
        rows = [Setting("fp32", small, "eager"), Setting("tf32", small, "eager")]
        rows += [Setting(p, small) for p in precisions]
        rows += [Setting(p, large) for p in precisions]
        rows += [Setting("tf32", small, "graph"), Setting("bf16", small, "graph")]
        rows += [Setting(p, large, "graph") for p in ("fp32", "tf32", "bf16", "fp16")]
        rows += [Setting("tf32", large, "compile_graphs"), Setting("fp32", medium, "compile"),
                 Setting("bf16", large, "compile")]
        rows += [Setting(p, medium) for p in ("tf32", "bf16")]
        rows += [Setting("bf16", small, "plain"), Setting("bf16", small, "channels_last")]
        if self.plan.dry_run:  # fp16 is emulated (slow) on most CPUs; the rest is other rows' code
            rows = [r for r in rows if r.precision != "fp16" and r.how != "plain"
                    and (r.batch == small or r.how != "prepared" or r.precision == "fp32")]
        return rows

    def runner(self, setting: Setting, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """`setting`'s function: clips [B, T, 3, H, W] on the device -> probabilities (float32)."""
        from libs.inference.optimize import InferenceModel, prepare_model

        model = self.need_model()
        precision = "fp32" if setting.precision == "tf32" else setting.precision
        if setting.how == "eager":
            def eager(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return torch.sigmoid(torch.stack(model(list(x.unbind(1))), 1).float())
            return eager
        from libs.runtime.plan import RunPlan

        fold_bn = setting.how not in ("plain", "channels_last")
        plan = RunPlan(self.device, precision, channels_last=setting.how != "plain", fold_bn=fold_bn,
                       compile="on" if setting.how == "compile" else "off")
        prepared = prepare_model(model, plan)
        if setting.how == "compile_graphs":
            compiled = torch.compile(prepared.model, mode="reduce-overhead", dynamic=False)
            prepared = InferenceModel(prepared.model, prepared.precision, self.device, prepared.channels_last,
                                      compiled)

            def marked(x: torch.Tensor) -> torch.Tensor:
                torch.compiler.cudagraph_mark_step_begin()
                return torch.sigmoid(prepared(x))
            return marked

        def call(x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(prepared(x))
        return graphed(call, example) if setting.how == "graph" else call

    def probabilities(self, run: Callable[[torch.Tensor], torch.Tensor], batch: int) -> torch.Tensor:
        """`run` over the deviation clips, `batch` clips per call (wrapping around), on the CPU."""
        clips = self.clips
        out = [run(batch_of(clips, i, batch)).float().cpu() for i in range(0, len(clips), batch)]
        return torch.cat(out)[: len(clips)]

    def video_speed(self) -> None:
        self.run.begin("video_speed")
        self.run.check("deviation clips and the fp32 reference", self.video_reference)
        for setting in self.settings():
            needs = self.plan.compile_reserve if setting.how.startswith("compile") else 1.0
            if setting.how.startswith("compile") and not self.plan.compile:
                self.run.check(setting.name, skipped("torch.compile off (--compile)"))
                continue
            self.run.check(setting.name, lambda s=setting: self.video_case(s), cuda_only=setting.cuda_only,
                           needs=needs)
        self.run.check("VideoModel: fastest within the inference tolerance", self.fastest)
        self.clips = self.reference = None

    def video_reference(self) -> Outcome:
        self.need_model()
        batches = clip_batches(synthetic_data(), self.plan.size, self.plan.clip_len, batch=1, training=False)
        self.clips = torch.cat([next(batches)[0] for _ in range(self.plan.deviation_clips)]).to(self.device)
        with tf32(False):
            run = self.runner(Setting("fp32", 1, "eager"), self.clips[:1])
            self.reference = self.probabilities(run, 1)
        soft = ((self.reference > 0.02) & (self.reference < 0.98)).float().mean().item()
        return Outcome(f"{len(self.clips)} clips of {self.plan.clip_len} at {self.plan.size}x"
                       f"{self.plan.size}; {100 * soft:.1f}% of pixels have 0.02 < p < 0.98",
                       {"soft_pixels": soft})

    def video_case(self, setting: Setting) -> Outcome:
        if self.reference is None:
            raise RuntimeError("no fp32 reference (its check failed)")
        if setting.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise Skip("no bfloat16 on this GPU")
        example = batch_of(self.clips, 0, setting.batch)
        frames = setting.batch * self.plan.clip_len
        with tf32(setting.precision == "tf32"), cudnn_benchmark(True):
            start = time.perf_counter()
            predict = self.runner(setting, example)
            predict(example)
            self.sync()
            first = time.perf_counter() - start
            dev = deviation(self.reference, self.probabilities(predict, setting.batch))
            speed = throughput(lambda: predict(example), frames, self.plan, self.sync, self.run.left() - 1.0)
        if setting.how.startswith("compile"):
            torch.compiler.reset()
        within = dev.within()
        numbers = {"frames_per_s": speed["items_per_s"], "ms_per_batch": speed["ms_per_call"],
                   "timed_calls": speed["timed_calls"], "first_call_s": first,
                   "pixels_differing": dev.differing, "largest_levels": dev.largest,
                   "within_tolerance": within, "precision": setting.precision, "batch_clips": setting.batch,
                   "how": setting.how}
        return Outcome(f"{speed['items_per_s']:.1f} frames/s, deviation {dev.describe()} "
                       f"({'within' if within else 'outside'} tolerance), first call {first:.1f} s", numbers)

    def fastest(self) -> Outcome:
        rows = [r for r in self.run.records if r.section == "video_speed" and r.status == "pass"
                and "frames_per_s" in r.numbers]
        within = [r for r in rows if r.numbers["within_tolerance"]]
        if not within:
            raise RuntimeError("no configuration measured within the tolerance")
        best = max(within, key=lambda r: r.numbers["frames_per_s"])
        fastest = max(rows, key=lambda r: r.numbers["frames_per_s"])
        return Outcome(f"{best.name}: {best.numbers['frames_per_s']:.1f} frames/s (fastest of all: "
                       f"{fastest.name}, {fastest.numbers['frames_per_s']:.1f})",
                       {"configuration": best.name, "frames_per_s": best.numbers["frames_per_s"],
                        "fastest_configuration": fastest.name,
                        "fastest_frames_per_s": fastest.numbers["frames_per_s"]})

    def flownet2_speed(self) -> None:
        self.run.begin("flownet2_speed")
        results: dict[str, torch.Tensor] = {}
        precisions = (("fp32", None), ("bf16 autocast", torch.bfloat16), ("fp16 autocast", torch.float16))
        for name, dtype in precisions:
            label = f"FlowNet 2.0 {name}, 1 pair of {self.plan.size}x{self.plan.size}"
            if self.plan.dry_run and dtype == torch.bfloat16:
                self.run.check(label, skipped(DRY_RUN_SAME_CODE))
                continue
            self.run.check(label, lambda d=dtype: self.flownet2_case(d, results), needs=2.0)

    def flownet2_case(self, dtype: torch.dtype | None, results: dict[str, Any]) -> Outcome:
        from flownet2.models import FlowNet2

        if dtype == torch.bfloat16 and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise Skip("no bfloat16 on this GPU")
        if "model" not in results:
            torch.manual_seed(0)
            results["model"] = FlowNet2().to(self.device).eval()
            g = torch.Generator().manual_seed(0)
            small = torch.rand(1, 3, 2, self.plan.size // 8, self.plan.size // 8, generator=g)
            results["pair"] = torch.nn.functional.interpolate(small, size=(2, self.plan.size, self.plan.size),
                                                              mode="trilinear").to(self.device)
        net, pair = results["model"], results["pair"]

        def run() -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return net(pair)

        with tf32(False), cudnn_benchmark(True), torch.inference_mode():
            flow = run().float()
            speed = throughput(run, 1, self.plan, self.sync, self.run.left() - 1.0)
        numbers = {"pairs_per_s": speed["items_per_s"], "ms_per_pair": speed["ms_per_call"]}
        text = f"{speed['items_per_s']:.1f} pairs/s ({speed['ms_per_call']:.1f} ms)"
        if dtype is None:
            results["fp32"] = flow
        elif "fp32" in results:
            difference = ((flow - results["fp32"]).norm() / results["fp32"].norm()).item()
            numbers["flow_relative_difference"] = difference
            text += f", flow differs from fp32 by {100 * difference:.2f}% (L2)"
        return Outcome(text, numbers)

    def end_to_end(self) -> None:
        self.run.begin("end_to_end")
        medium = self.plan.batches[1]
        self.run.check("inference.py (defaults) vs model only", lambda: self.e2e_case([], 1, True),
                       needs=20.0)
        flags = ["--precision", "bf16", "--batch-size", str(medium)]
        name = f"inference.py {' '.join(flags)} vs model only"
        if self.plan.dry_run:
            self.run.check(name, skipped(DRY_RUN_SAME_CODE))
        else:
            self.run.check(name, lambda: self.e2e_case(flags, medium, False), needs=20.0)

    def e2e_case(self, flags: list[str], batch: int, short_run: bool) -> Outcome:
        """inference.py on the long folder (and the short one: the difference of the two runs is the
        steady rate, without the process's fixed costs) against the model alone on the same clips."""
        from libs.datasets import get_transforms
        from libs.inference import FolderClips, Predictor, collate_clips
        from libs.runtime.precision import resolve_precision

        model = self.need_model()
        asked = flags[flags.index("--precision") + 1] if "--precision" in flags else "auto"
        precision = resolve_precision(asked, self.device)
        short_n, long_n = self.plan.e2e_frames
        folders = {n: cycled_folder(self.work / f"frames_{n}", self.frames, n) for n in (short_n, long_n)}
        runs = {}
        for n in ((short_n, long_n) if short_run else (long_n,)):
            name = f"e2e_{precision}_b{batch}_{n}"
            command = self.inference_command(folders[n], self.work / name, self.device_name, flags)
            finished = run_processes({name: (command, child_env(self.plan))}, max(60.0, self.run.left()),
                                     self.logs)[name]
            if not finished.ok:
                raise RuntimeError(finished.failure())
            match = SUMMARY.search(finished.log)
            if match is None:
                raise RuntimeError(f"{name}: inference.py printed no summary line")
            runs[n] = (int(match.group(1)), float(match.group(2)), finished.seconds)
        maps, seconds, wall = runs[long_n]
        rate = maps / seconds
        numbers: dict[str, Any] = {"precision": precision, "batch_clips": batch, "frames": maps,
                                   "frames_per_s": rate, "run_seconds": seconds, "process_seconds": wall}
        if short_run:
            steady = (maps - runs[short_n][0]) / max(1e-9, seconds - runs[short_n][1])
            numbers.update(steady_frames_per_s=steady, short_run_seconds=runs[short_n][1])
        # the model alone, as inference.py runs it (PyTorch's default cuDNN settings), on clips in memory
        transform = get_transforms(False, self.plan.size)["test"]
        source = FolderClips(folders[short_n], transform, self.plan.clip_len)
        clips = [collate_clips([source[i] for i in range(j, min(j + batch, len(source)))])["images"]
                 for j in range(0, len(source), batch)]
        if self.device.type == "cuda":
            clips = [c.pin_memory() for c in clips]
        from libs.runtime.plan import plan_run

        predictor = Predictor(model, plan_run("inference", self.device, precision))
        frames = sum(c.shape[0] * c.shape[1] for c in clips)

        def model_only() -> None:
            for c in clips:
                predictor(c)

        with cudnn_benchmark(False):
            speed = throughput(model_only, frames, self.plan, self.sync, self.run.left() - 1.0)
        model_rate = speed["items_per_s"]
        numbers.update(model_only_frames_per_s=model_rate, ratio=rate / model_rate)
        text = (f"{rate:.1f} frames/s over {maps} frames ({100 * rate / model_rate:.0f}% of the model's "
                f"{model_rate:.1f})")
        if short_run:
            numbers["steady_ratio"] = numbers["steady_frames_per_s"] / model_rate
            text += f"; steady {numbers['steady_frames_per_s']:.1f} ({100 * numbers['steady_ratio']:.0f}%)"
        return Outcome(text + f", {precision}", numbers)

    def training_memory(self) -> None:
        self.run.begin("training_memory")
        p = self.plan
        for precision in ("fp32", "bf16"):
            self.run.check(f"video recipe step at {p.size}x{p.size}, clips of {p.clip_len}, {precision}",
                           lambda q=precision: self.train_case("video", q, p.size, 2, p.clip_len,
                                                               memory=True),
                           cuda_only="torch.cuda.max_memory_allocated", needs=5.0)

    def targets(self) -> None:
        self.run.begin("targets")
        self.run.check(f"VideoModel >= {FRAMES_PER_SECOND_TARGET:.0f} frames/s within tolerance at 448x448",
                       self.speed_target)
        self.run.check(f"inference.py >= {100 * PIPELINE_TARGET:.0f}% of its model-only rate",
                       self.pipeline_target)

    def speed_target(self) -> Outcome:
        record = self.run.find("video_speed", "VideoModel: fastest within the inference tolerance")
        if record is None or record.status != "pass":
            raise RuntimeError("nothing measured within the tolerance")
        rate = record.numbers["frames_per_s"]
        if self.plan.dry_run:
            raise Skip(f"dry run ({rate:.1f} frames/s at {self.plan.size}x{self.plan.size} on the CPU)")
        return Outcome(f"{rate:.1f} frames/s ({record.numbers['configuration']})", {"frames_per_s": rate},
                       rate >= FRAMES_PER_SECOND_TARGET)

    def pipeline_target(self) -> Outcome:
        record = self.run.find("end_to_end", "inference.py (defaults) vs model only")
        if record is None or record.status != "pass":
            raise RuntimeError("inference.py end to end was not measured")
        steady, overall = record.numbers["steady_ratio"], record.numbers["ratio"]
        text = f"steady {100 * steady:.0f}%, whole run {100 * overall:.0f}% of the model-only rate"
        if self.plan.dry_run:
            raise Skip(f"dry run ({text})")
        return Outcome(text, {"steady_ratio": steady, "ratio": overall}, steady >= PIPELINE_TARGET)


def describe_machine(device: torch.device, plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """What ran where: the machine, torch, CUDA, cuDNN, NCCL, the GPU and the commit."""
    meta: dict[str, Any] = {"machine": machine(), "torch": torch.__version__, "cuda": torch.version.cuda,
                            "device": str(device), "argv": sys.argv, "dry_run": plan.dry_run}
    try:
        meta["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        meta["commit"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=props.total_memory / 2**30, gpus=torch.cuda.device_count(),
                    cudnn=torch.backends.cudnn.version(),
                    nccl=nccl_version())
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for cuda_check.json and the logs (required)")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same checks on the CPU at tiny sizes (CUDA-only parts skipped, with "
                             "the reason)")
    parser.add_argument("--device", default="cuda", help="the CUDA device (default cuda)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default 420; dry run 1800)")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                        help="the torch.compile configurations (auto: on a GPU, not in the dry run)")
    parser.add_argument("--cache", default=str(ROOT / "data" / "bench"),
                        help="where the synthetic data and the benchmark model are kept (default data/bench)")
    parser.add_argument("--nccl-probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-device", default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nccl_probe:
        return nccl_probe(Path(args.nccl_probe), args.probe_device)
    if not args.out:
        parser.error("the following arguments are required: --out")
    if args.dry_run:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("cuda_check.py: CUDA is not available here (--dry-run runs the checks on the CPU)",
              file=sys.stderr)
        return 2
    else:
        device = torch.device(args.device)
        device = torch.device("cuda", device.index or 0)
        torch.cuda.set_device(device)
    plan = make_plan(args.dry_run, args.budget, args.compile)
    setup(argparse.Namespace(threads=0, cache=args.cache))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cuda_check_"))
    try:
        return CudaCheck(args, plan, out, work, device).all()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
