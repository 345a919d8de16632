"""VideoModel inference speed at 448x448 (clips of 4 frames) and each configuration's deviation
from float32, measured in one run.

Rows: the faithful float32 eager path (the release's way: its resize-then-convolve decoder,
`torch.no_grad`, a list of frames), float32 with the factored decoder (`--precision auto` on a CPU), a
clip's frames as one batch (training's `frames_as_batch`), `torch.inference_mode`,
channels-last, BatchNorm folding, bf16 and fp16 autocast, float32 islands, several clips per
batch and `torch.compile`, alone and combined. Times are medians over `--rounds` interleaved
rounds (the machine may be shared); speed is relative to the first row.

Deviation is measured on a VideoModel trained briefly on the synthetic videos (trained once
and cached under data/bench/, a few minutes on a CPU): the share of output pixels whose
8-bit saliency differs from float32's, and the largest difference in levels (the worse of
round(255 p) and floor(255 p), the files' quantisation), over `--deviation-clips` clips of
the synthetic evaluation videos. Tolerance: at most 0.1% of pixels differ, none by more
than 2 levels.

    python -m benchmarks.inference_speed                     # 448x448, 3 rounds
    python -m benchmarks.inference_speed --size 64 --rounds 1 --deviation-clips 1 --no-compile \\
        --train-steps 2 --train-size 64 --cache /tmp/bench     # a quick smoke run
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks._common import (
    Deviation,
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
from libs.inference.optimize import prepare_model
from libs.networks import VideoModel
from libs.runtime.arguments import ArgumentParser, run_command
from libs.runtime.plan import RunPlan


@dataclass
class Config:
    """One way of running the model: `predict(clips [B, T, 3, H, W]) -> probabilities`."""

    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    clips_per_batch: int = 1
    setup_seconds: float = 0.0

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        return self.predict(clips)


def with_decoder(model: torch.nn.Module, decoder: str, frames_as_batch: bool = False,
                 parallel_frames: int = 1) -> VideoModel:
    """A VideoModel built with `decoder` ("release" or "factored"), `frames_as_batch` and
    `parallel_frames`, holding `model`'s weights."""
    built = VideoModel(decoder=decoder, frames_as_batch=frames_as_batch, parallel_frames=parallel_frames)
    built.load_state_dict(model.state_dict())
    return built.eval()


def release_way(model: torch.nn.Module, factored: bool = False, frames_as_batch: bool = False,
                parallel_frames: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """float32, `torch.no_grad`, the clip as a list of T frames [B, 3, H, W] (the release's call);
    the release's resize-then-convolve decoder unless `factored`; the release's frame loop
    unless `frames_as_batch` or `parallel_frames` > 1."""
    model = with_decoder(model, "factored" if factored else "release", frames_as_batch, parallel_frames)

    def predict(clips: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = model(list(clips.unbind(1)))
        return torch.sigmoid(torch.stack(logits, 1))

    return predict


def prepared(model: torch.nn.Module, precision: str, fold_bn: bool = True, channels_last: bool = True,
             compile: bool = False, float32_modules: tuple[str, ...] = ()) -> Callable:
    """`prepare_model` of `model` with the factored decoder under a plan of `precision` and these
    options, sigmoid of its float32 logits."""
    plan = RunPlan(torch.device("cpu"), precision, "factored", channels_last=channels_last, fold_bn=fold_bn,
                   compile="on" if compile else "off")
    fast = prepare_model(with_decoder(model, "factored"), plan, float32_modules)

    def predict(clips: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(fast(clips))

    return predict


def plain(model: torch.nn.Module, precision: str, channels_last: bool = False) -> Callable:
    """Autocast at `precision` under `torch.inference_mode`, nothing else changed (but the layout)."""
    return prepared(model, precision, fold_bn=False, channels_last=channels_last)


def fp16_works() -> str | None:
    """None when fp16 autocast convolves on this CPU, else why not."""
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
            torch.nn.functional.conv2d(torch.randn(1, 8, 8, 8), torch.randn(8, 8, 3, 3))
    except RuntimeError as error:
        return str(error).splitlines()[0]
    return None


def build_configs(model: torch.nn.Module, args: argparse.Namespace) -> list[Config]:
    """The rows, faithful float32 first."""
    configs = [
        Config("fp32 eager, no_grad, list of frames (release)", release_way(model)),
        Config("fp32 eager, factored decoder", release_way(model, factored=True)),
        Config("fp32 eager, factored decoder, 2 frames side by side (--precision auto, 2 threads)",
               release_way(model, factored=True, parallel_frames=2)),
        Config("fp32 eager, a clip's frames as one batch", release_way(model, frames_as_batch=True)),
        Config("fp32 + inference_mode", plain(model, "fp32")),
        Config("fp32 + inference_mode + channels_last", plain(model, "fp32", channels_last=True)),
        Config("fp32 + channels_last + BN folded", prepared(model, "fp32")),
        Config("bf16 autocast", plain(model, "bf16")),
        Config("bf16 + channels_last", plain(model, "bf16", channels_last=True)),
        Config("bf16 + channels_last + BN folded", prepared(model, "bf16")),
        Config("bf16 + channels_last + BN folded, decoder in fp32",
               prepared(model, "bf16", float32_modules=("backbone.decoder",))),
        Config("  same, 2 clips per batch", prepared(model, "fp32"), clips_per_batch=2),
    ]
    why_not = fp16_works()
    if why_not is None:
        configs.insert(9, Config("fp16 + channels_last + BN folded", prepared(model, "fp16")))
    else:
        print(f"fp16 autocast: unsupported here ({why_not})", file=sys.stderr)
    if not args.no_compile:
        configs += [
            Config("torch.compile fp32 (+ channels_last + BN folded)", prepared(model, "fp32", compile=True)),
            Config("torch.compile bf16 (+ channels_last + BN folded)", prepared(model, "bf16", compile=True)),
        ]
    return configs


def batch_of(clips: torch.Tensor, start: int, size: int) -> torch.Tensor:
    """`size` clips from index `start` on, wrapping around."""
    return clips[[(start + k) % len(clips) for k in range(size)]]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=448, help="frame height and width (default 448)")
    parser.add_argument("--clip-len", type=int, default=4, help="frames a clip (default 4)")
    parser.add_argument("--deviation-clips", type=int, default=6,
                        help="clips of the synthetic evaluation videos the deviation is measured on")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    add_trained_model_arguments(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    setup(args)
    print(machine(), file=sys.stderr)
    model = trained_video_model(steps=args.train_steps, size=args.train_size)
    config = synthetic_data()
    batches = clip_batches(config, args.size, args.clip_len, batch=1, training=False)
    samples = [next(batches) for _ in range(max(1, args.deviation_clips))]
    clips = torch.cat([c for c, _ in samples])
    labels = torch.cat([lab for _, lab in samples])

    configs = build_configs(model, args)
    # the first call (compilation, where any), then the deviation from float32 over every clip
    reference: torch.Tensor | None = None
    deviations: dict[str, Deviation] = {}
    for cfg in configs:
        start = time.perf_counter()
        cfg(batch_of(clips, 0, cfg.clips_per_batch))
        cfg.setup_seconds = time.perf_counter() - start
        probs = torch.cat([cfg(batch_of(clips, i, cfg.clips_per_batch))
                           for i in range(0, len(clips), cfg.clips_per_batch)])[: len(clips)]
        if reference is None:
            reference = probs
            soft = ((probs > 0.02) & (probs < 0.98)).float().mean().item()
            print(f"trained model, float32: MAE {(probs - labels).abs().mean().item():.4f} on {len(clips)} "
                  f"evaluation clips; {100 * soft:.2f}% of pixels have 0.02 < p < 0.98", file=sys.stderr)
        deviations[cfg.name] = deviation(reference, probs)
        print(f"  {cfg.name}: first call {cfg.setup_seconds:.1f} s, deviation "
              f"{deviations[cfg.name].describe()}", file=sys.stderr, flush=True)

    rows = [Row(cfg.name, (lambda c=cfg: c.predict(batch_of(clips, 0, c.clips_per_batch))),
                cfg.clips_per_batch * args.clip_len, []) for cfg in configs]
    time_interleaved(rows, args.rounds, warmup=0)
    base = rows[0].rate
    table = []
    for cfg, row in zip(configs, rows):
        dev = deviations[cfg.name]
        table.append([cfg.name, f"{row.rate:.3f}", f"{row.rate / base:.2f}x", dev.describe(),
                      "yes" if dev.within() else "no", f"{cfg.setup_seconds:.1f}"])
    report(f"VideoModel inference, {args.size}x{args.size}, clips of {args.clip_len}, "
           f"median of {args.rounds} interleaved rounds",
           ["configuration", "frames/s", "speed-up", "pixels differing / max levels", "within tolerance",
            "first call (s)"], table)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.inference_speed"))
