"""End-to-end `inference.py` (frame files in, PNG maps out) against the model alone, on a
synthetic video of 448x448 frames, measured in one run.

Rows, timed in alternation over `--rounds` rounds:
- model only, the faithful float32 eager path (the release's way: `torch.no_grad`, a list of
  frames), on frames already decoded, resized and normalised in memory;
- model only, the configuration `inference.py` picks by default on this machine
  (`--precision auto`: on a CPU the factored decoder, chosen by its arithmetic);
- `inference.py --precision fp32` and `inference.py` with its defaults, each a fresh process
  over the folder of frames: reading, resizing, the model, PNG writing. Its own run time
  (what it prints: from building the source to the last PNG) and the process's wall time
  (Python start, imports and checkpoint loading included) are both reported.

The end-to-end share is inference.py's rate over the model-only rate of the same
configuration (target: at least 80%); the speed-up is over the faithful model-only path
(target: at least 4x for inference.py's defaults).

    python -m benchmarks.end_to_end                        # 64 frames, 2 rounds
    python -m benchmarks.end_to_end --frames 8 --size 64 --rounds 1 --train-steps 2 --train-size 64 \\
        --cache /tmp/bench --compile off                    # a quick smoke run
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import (
    ROOT,
    Row,
    add_common_arguments,
    add_trained_model_arguments,
    machine,
    report,
    setup,
    time_interleaved,
    trained_video_model,
)
from libs.inference import Predictor
from libs.networks import VideoModel
from libs.runtime.arguments import ArgumentParser, run_command
from libs.runtime.plan import plan_run


def video_frames(cache: Path, size: int, frames: int) -> Path:
    """A folder of `frames` synthetic video frames of size x size (JPEG), generated once."""
    from libs.datasets.synthetic import generate_synthetic

    config = generate_synthetic(cache / f"synthetic_video_{size}_{frames}", seed=1, height=size, width=size,
                                videos=1, frames=frames, vos_frames=2, images=1)
    folder = config.parent / "DAVIS2016" / "JPEGImages" / "480p"
    return sorted(p for p in folder.iterdir() if p.is_dir())[0]


def load_clips(folder: Path, size: int, clip_len: int) -> torch.Tensor:
    """The folder's frames as inference.py prepares them: clips [N, T, 3, size, size]."""
    from libs.datasets import get_transforms
    from libs.inference import FolderClips

    source = FolderClips(folder, get_transforms(False, size)["test"], clip_len)
    return torch.stack([torch.stack([f["image"] for f in source[i]]) for i in range(len(source))])


def run_inference_py(folder: Path, checkpoint: Path, out: Path, size: int, extra: list[str]) -> dict:
    """Run inference.py in a fresh process; its run time (from its summary) and the process's wall time."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(ROOT / "inference.py"), "--input", str(folder), "--checkpoint",
               str(checkpoint), "--results-folder", str(out), "--size", str(size), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"inference.py failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    match = re.search(r"(\d+) saliency maps written .* in ([0-9.]+) s", done.stdout)
    if not match:
        raise RuntimeError(f"inference.py printed no summary: {done.stdout[-2000:]}")
    return {"maps": int(match.group(1)), "seconds": float(match.group(2)), "wall": wall,
            "log": done.stdout}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=448, help="frame size, input and output (default 448)")
    parser.add_argument("--frames", type=int, default=64, help="frames of the synthetic video (default 64)")
    parser.add_argument("--clip-len", type=int, default=4, help="frames a clip (default 4)")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                        help="inference.py's --compile for the default row (default: its own default)")
    add_trained_model_arguments(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    setup(args)
    print(machine(), file=sys.stderr)
    model = trained_video_model(steps=args.train_steps, size=args.train_size)
    cache = Path(args.cache)
    checkpoint = cache / f"video_synthetic_s{args.train_size}_n{args.train_steps}.pth"
    folder = video_frames(cache, args.size, args.frames)
    clips = load_clips(folder, args.size, args.clip_len)
    frames = clips.shape[0] * clips.shape[1]
    plan = plan_run("inference", torch.device("cpu"), "auto", "on" if args.compile == "on" else "off")
    factored = VideoModel(decoder=plan.decoder, parallel_frames=plan.parallel_frames)
    factored.load_state_dict(model.state_dict())
    fast = Predictor(factored, plan, report=lambda line: print(line, file=sys.stderr))
    fast(clips[:1])
    release = model.eval()  # VideoModel's default: the release's resize-then-convolve decoder

    def faithful() -> None:
        with torch.no_grad():
            for clip in clips.unbind(0):
                release(list(clip[None].unbind(1)))

    def default() -> None:
        for clip in clips.unbind(0):
            fast(clip[None])

    out = Path(tempfile.mkdtemp(prefix="e2e_"))
    runs: dict[str, list[dict]] = {"fp32": [], "default": []}

    def script(name: str, extra: list[str]):
        def run() -> None:
            runs[name].append(run_inference_py(folder, checkpoint, out / name, args.size, extra))
        return run

    default_flags = [] if args.compile == "auto" else ["--compile", args.compile]
    rows = [
        Row("model only, fp32 eager (release way)", faithful, frames, []),
        Row(f"model only, default ({fast.plan.name()})", default, frames, []),
        Row("inference.py --precision fp32", script("fp32", ["--precision", "fp32"]), frames, []),
        Row("inference.py (defaults)", script("default", default_flags), frames, []),
    ]
    time_interleaved(rows, args.rounds, warmup=args.warmup)
    shutil.rmtree(out, ignore_errors=True)
    base = rows[0].rate
    table = []
    for row, key, model_row in ((rows[0], None, None), (rows[1], None, None), (rows[2], "fp32", rows[0]),
                                (rows[3], "default", rows[1])):
        if key is None:
            table.append([row.name, f"{row.rate:.3f}", f"{row.rate / base:.2f}x", "", ""])
            continue
        timed = runs[key][-len(row.times):]
        own = sorted(r["seconds"] for r in timed)[len(timed) // 2]
        rate = timed[0]["maps"] / own
        table.append([row.name, f"{rate:.3f}", f"{rate / base:.2f}x", f"{100 * rate / model_row.rate:.0f}%",
                      f"{row.median:.1f}"])
    report(f"inference.py end to end, {args.frames} frames of {args.size}x{args.size}, clips of "
           f"{args.clip_len}, median of {args.rounds} interleaved rounds",
           ["run", "frames/s", "vs fp32 model only", "of its model-only rate", "process wall (s)"], table)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.end_to_end"))
