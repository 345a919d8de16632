"""Shared helpers of the benchmark scripts: interleaved timing, tables, the machine, and a
VideoModel trained briefly on the synthetic data (cached under `data/bench/`).

The machine the benchmarks run on may be shared, so configurations are timed in
alternation, round after round, and compared by the ratio of their median times; where a
machine's speed drifts over minutes, `Row.paired` gives the ratio within each round as well.
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

BENCH_DATA = ROOT / "data" / "bench"
_cache = [BENCH_DATA]


def add_common_arguments(parser) -> None:
    """--size, --rounds, --warmup, --threads (shared by the scripts)."""
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; each round runs every row once")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of every row first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--cache", default=str(BENCH_DATA),
                        help="where the synthetic data and the trained model are kept (default data/bench)")


def add_trained_model_arguments(parser) -> None:
    """--train-steps, --train-size: which cached benchmark model (`trained_video_model`) to use."""
    parser.add_argument("--train-steps", type=int, default=240, help="training steps of the benchmark model")
    parser.add_argument("--train-size", type=int, default=224,
                        help="training frame size of the benchmark model")


def report(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a result: a title line naming the machine, then the Markdown table."""
    print(f"\n{title}; {machine()}\n")
    print(markdown_table(header, rows))


def setup(args) -> None:
    """Apply the common arguments."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    _cache[0] = Path(args.cache)


def machine() -> str:
    """CPU model, cores, torch version (and GPU name when one is used)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


@dataclass
class Row:
    """One configuration: `run()` does one timed unit of work worth `items` frames (or steps)."""

    name: str
    run: Callable[[], object]
    items: int
    times: list[float]
    before: Callable[[], object] | None = None  # untimed, before each timed run

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def rate(self) -> float:
        return self.items / self.median

    def paired(self, baseline: Row) -> list[float]:
        """This row's speed over `baseline`'s, round by round (rows timed in the same rounds of
        `time_interleaved`): runs of one round are minutes apart, not a whole benchmark, so a
        slow spell of a shared machine moves both sides of a ratio alike."""
        if len(self.times) != len(baseline.times):
            raise ValueError(f"{self.name!r} and {baseline.name!r} were not timed in the same rounds")
        return [(self.items / mine) / (baseline.items / theirs)
                for mine, theirs in zip(self.times, baseline.times)]


def time_interleaved(rows: Sequence[Row], rounds: int, warmup: int = 1,
                     sync: Callable[[], None] = lambda: None, log: bool = True) -> None:
    """Run every row `warmup` times untimed, then `rounds` rounds, each row once per round (the
    order rotating from round to round), appending each run's seconds to `row.times`."""
    for _ in range(warmup):
        for row in rows:
            row.run()
            sync()
    for r in range(rounds):
        order = list(rows[r % len(rows):]) + list(rows[: r % len(rows)])
        for row in order:
            if row.before is not None:
                row.before()
            gc.collect()
            sync()
            start = time.perf_counter()
            row.run()
            sync()
            row.times.append(time.perf_counter() - start)
            if log:
                print(f"  round {r + 1}/{rounds} {row.name}: {row.times[-1]:.3f} s",
                      file=sys.stderr, flush=True)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Deviation:
    """How far one configuration's 8-bit saliency is from the float32 one."""

    differing: float  # share of pixels whose 8-bit value differs
    largest: int  # largest difference in 8-bit levels

    def within(self, share: float = 1e-3, levels: int = 2) -> bool:
        """The inference tolerance: at most `share` of the pixels differ, none by more than `levels`."""
        return self.differing <= share and self.largest <= levels

    def describe(self) -> str:
        return f"{100 * self.differing:.4f}% / {self.largest}"


def to_uint8(probs: torch.Tensor, rounding: str = "round") -> torch.Tensor:
    """8-bit saliency: round(255 p) (`round`) or floor(255 p) as the PNG files hold (`floor`)."""
    scaled = probs.float().clamp(0, 1) * 255
    return (scaled.round() if rounding == "round" else scaled.floor()).to(torch.int16)


def deviation(reference: torch.Tensor, probs: torch.Tensor) -> Deviation:
    """Deviation of `probs` from `reference` (saliency probabilities), the worse of rounding and
    truncation to 8 bits."""
    worst = Deviation(0.0, 0)
    for rounding in ("round", "floor"):
        diff = (to_uint8(reference, rounding) - to_uint8(probs, rounding)).abs()
        worst = Deviation(max(worst.differing, (diff > 0).float().mean().item()),
                          max(worst.largest, int(diff.max().item())))
    return worst


# ----------------------------------------------------------------------------- a trained model


def synthetic_data(height: int = 96, width: int = 128) -> Path:
    """The synthetic datasets for the benchmarks (generated once); returns their config path."""
    from libs.datasets.synthetic import generate_synthetic

    return generate_synthetic(_cache[0] / f"synthetic_{height}x{width}", seed=0, height=height, width=width,
                              videos=6, frames=16, vos_frames=46, images=8)


def clip_batches(config: Path, size: int, clip_len: int, batch: int,
                 training: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (clips [B, T, 3, S, S], labels [B, T, 1, S, S]) from the synthetic videos: the
    DAVIS2016 and FBMS training splits (shuffled, clips reversed at random) or their evaluation
    splits (in order)."""
    from torch.utils.data import DataLoader

    from libs.datasets import get_datasets, get_transforms

    splits = ["train", "train"] if training else ["val", "test"]
    dataset = get_datasets(["DAVIS2016", "FBMS"], splits, config, config.parent, training=True,
                           transforms=get_transforms(False, size)["train"], read_clip=True,
                           random_reverse_clip=training, clip_len=clip_len)

    def collate(items):
        images = torch.stack([torch.stack([f["image"] for f in clip]) for clip in items])
        labels = torch.stack([torch.stack([f["label"] for f in clip]) for clip in items])
        return images.as_subclass(torch.Tensor), labels.as_subclass(torch.Tensor)

    generator = torch.Generator().manual_seed(0)
    while True:
        yield from DataLoader(dataset, batch_size=batch, shuffle=training, collate_fn=collate,
                              drop_last=training, generator=generator)


def trained_video_model(steps: int = 240, size: int = 224, lr: float = 2e-4, verbose: bool = True,
                        device: torch.device | str = "cpu"):
    """A VideoModel trained for `steps` steps on the synthetic videos at `size` (cached).

    Random-initialised (no ImageNet weights offline), trained with its BatchNorm in training
    mode so the running statistics become the data's, bf16 autocast to be quick (on the CPU,
    and on GPUs with bfloat16 support; float32 elsewhere); returned on `device` in eval mode,
    float32. The
    point is realistic weights and activations, and confident maps with soft boundaries, for
    measuring how far reduced precision moves the 8-bit output.
    """
    from libs.networks import VideoModel
    from libs.networks.weights import load_weights, save_weights

    device = torch.device(device)
    path = _cache[0] / f"video_synthetic_s{size}_n{steps}.pth"
    torch.manual_seed(0)
    if path.is_file():
        model = VideoModel()
        load_weights(model, path)
        return model.to(device).eval()
    config = synthetic_data()
    # BatchNorm statistics over a clip's 4 frames (frame by frame they would be over 1 frame)
    model = VideoModel(frames_as_batch=True)
    model.to(device).train()
    bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    batches = clip_batches(config, size, clip_len=4, batch=1, training=True)
    start = time.perf_counter()
    for step in range(steps):
        clips, labels = (t.to(device) for t in next(batches))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(clips)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if verbose and (step % 20 == 0 or step == steps - 1):
            print(f"  training the benchmark model: step {step + 1}/{steps}, loss {loss.item():.4f}, "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    save_weights(model, path)
    inference = VideoModel()  # the release's frame loop
    inference.load_state_dict(model.state_dict())
    return inference.to(device).eval()
