"""Our `inference.py` against the release's own (github.com/Kinpzz/RCRNet-Pytorch), end to end on
real DAVIS 2016 frames (854x480 JPEGs), in one run: speed and the maps pixel by pixel.

Rows, each a fresh process over the same frames (Python start, imports, checkpoint loading,
reading, the model and PNG writing all included), timed in alternation over `--rounds`
rounds, each reported as its median and, against the release, also as the median (and range)
of its per-round ratios, which a shared machine's slow spells disturb less:
- the release's `inference.py` (float32, its own code), from `--release-dir`;
- our `inference.py --precision fp32` (the release's computation);
- our `inference.py` with its defaults (`--precision auto`: on a CPU the factored decoder, chosen
  by its arithmetic) on a fresh decision cache: a new, empty `RCRNET_CACHE_DIR` for every run, as
  on a machine it has never run on;
- the same on a warm decision cache (the one a fresh run left);
- in this process, the release-way float32 eager model (VideoModel with the release's
  resize-then-convolve decoder, `torch.no_grad`, a list of frames) on the same clips,
  decoded and normalised in memory: the "model only" baseline.

The frames are the DAVIS sample's (`--davis`, the official layout) laid out as the release's
config expects (symlinks under a temporary `<root>/DAVIS2016/`, a `datasets.yaml` whose
DAVIS2016 `val` split is the chosen videos; `--frames` keeps the first N frames of each: 16 of
the sample's three videos make 48 frames). A second table, the small job, runs the four
end-to-end rows over the first `--small-frames` frames of the first video (8 by default;
`--no-small-job` leaves it out).
Both programs load the same weights, saved as a release-style `video_best_model.pth` (a plain
state dict): the deterministic reference weights (`--reference`/refweights.py,
keys/video_model.tsv), or with `--checkpoint` a VideoModel checkpoint of this project (e.g. the
one `python train.py --demo` trains on synthetic data, data/synthetic/run/video/). Maps are
compared with the release's: the share of pixels whose 8-bit value differs and the largest
difference in levels (target: at least 99.99% equal, never more than 1 level apart).

The release checkout must run on today's Python and PyTorch: in a copy outside this
repository, `libs/datasets/video_datasets.py`'s `yaml.load(open(config_path))` needs
`Loader=yaml.SafeLoader` (PyYAML 6). Without `--release-dir` (or where it has no
inference.py) the release row is left out, with the reason.

    python -m benchmarks.vs_release --release-dir /tmp/rcrnet-release --rounds 3
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from benchmarks._common import ROOT, Row, machine, markdown_table, time_interleaved
from libs.datasets import get_transforms
from libs.inference import FolderClips
from libs.networks import VideoModel
from libs.networks.weights import checkpoint_kind, read_state_dict
from libs.runtime.arguments import ArgumentParser, positive_int, run_command
from libs.runtime.calibration import CACHE_ENV

SHARED = ROOT.parent / "shared"
DATASET = "DAVIS2016"
RELEASE = "release inference.py"
FAITHFUL = "our inference.py --precision fp32"
FRESH = "our inference.py (defaults), fresh cache"
WARM = "our inference.py (defaults), warm cache"
MODEL_ONLY = "release-way fp32 eager model, in process (model only)"


def link_davis(davis: Path, root: Path, videos: list[str], frames: int | None) -> None:
    """`root/DAVIS2016/{JPEGImages,Annotations}/480p/<video>/`: symlinks to the first `frames` files."""
    for kind in ("JPEGImages", "Annotations"):
        for video in videos:
            source = davis / kind / "480p" / video
            target = root / DATASET / kind / "480p" / video
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(source.iterdir())[:frames]:
                (target / path.name).symlink_to(path.resolve())


def write_config(release_dir: Path | None, path: Path, videos: list[str]) -> None:
    """The release's DAVIS2016 entry (ours where the release is absent) alone, its val split `videos`."""
    source = release_dir / "config" / "datasets.yaml" if release_dir else ROOT / "config" / "datasets.yaml"
    entry = yaml.safe_load(source.read_text())[DATASET]
    entry["video_split"] = {"val": list(videos)}
    path.write_text(yaml.safe_dump({DATASET: entry}))


def save_reference_weights(reference: Path, path: Path) -> dict[str, torch.Tensor]:
    """refweights' VideoModel state dict saved as a plain state dict (the release's checkpoint form)."""
    spec = importlib.util.spec_from_file_location("refweights", reference / "refweights.py")
    refweights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refweights)
    state = refweights.reference_state_dict(refweights.read_keys(reference / "keys" / "video_model.tsv"))
    torch.save(state, path)
    return state


def save_checkpoint_weights(source: Path, path: Path) -> dict[str, torch.Tensor]:
    """A VideoModel checkpoint in any form this project reads, saved as a plain state dict."""
    state = dict(read_state_dict(source))
    if checkpoint_kind(state) != "video":
        raise SystemExit(f"--checkpoint {source}: not a VideoModel checkpoint")
    torch.save(state, path)
    return state


def video_clips(root: Path, videos: list[str], size: int, clip_len: int) -> list[torch.Tensor]:
    """Each video's frames as inference.py prepares them: clips [1, T, 3, size, size]."""
    transform = get_transforms(False, size)["test"]
    clips = []
    for video in videos:
        source = FolderClips(root / DATASET / "JPEGImages" / "480p" / video, transform, clip_len)
        clips += [torch.stack([f["image"] for f in source[i]])[None].as_subclass(torch.Tensor)
                  for i in range(len(source))]
    return clips


def compare_maps(reference: Path, other: Path) -> tuple[float, int, int]:
    """(share of pixels differing, largest difference in levels, maps compared) of `other`'s PNGs
    against `reference`'s (same relative paths)."""
    differing = total = largest = maps = 0
    for path in sorted(reference.rglob("*.png")):
        a = np.asarray(Image.open(path), dtype=np.int16)
        b = np.asarray(Image.open(other / path.relative_to(reference)), dtype=np.int16)
        if a.shape != b.shape:
            raise RuntimeError(f"{path.relative_to(reference)}: sizes {a.shape} and {b.shape} differ")
        diff = np.abs(a - b)
        differing += int((diff > 0).sum())
        total += diff.size
        largest = max(largest, int(diff.max()))
        maps += 1
    if maps == 0:
        raise RuntimeError(f"no maps under {reference}")
    return differing / total, largest, maps


@dataclass
class Job:
    """One set of frames, laid out for both programs: the dataset root, its config, where maps go."""

    name: str
    videos: list[str]
    root: Path
    config: Path
    out: Path


def lay_out(work: Path, name: str, davis: Path, videos: list[str], frames: int | None,
            release: Path | None) -> Job:
    """Link `frames` frames of each of `videos` under `work/name/` and write the config for them."""
    folder = work / name
    job = Job(name, videos, folder / "datasets", folder / "datasets.yaml", folder / "results")
    link_davis(davis, job.root, videos, frames)
    write_config(release, job.config, videos)
    return job


def process_rows(job: Job, checkpoint: Path, size: int, release: Path | None, work: Path) -> list[Row]:
    """The end-to-end rows over `job`'s frames, each a fresh process: the release's inference.py
    (when `release`), ours with `--precision fp32`, and ours with its defaults on a fresh decision
    cache (a new, empty RCRNET_CACHE_DIR before every run) and on a warm one (the cache a fresh run
    left; filled by an untimed run if no fresh run came first); the other rows share a cache of
    their own."""
    common = ["--data", str(job.root), "--dataset", DATASET, "--split", "val",
              "--checkpoint", str(checkpoint), "--dataset-config", str(job.config), "--size", str(size)]
    ours = [sys.executable, str(ROOT / "inference.py"), *common, "--overwrite"]
    caches = work / f"{job.name}-caches"
    warm = caches / "warm"
    other = caches / "other"
    state = {"cache": caches / "fresh-0", "fresh": 0}

    def process(name: str, command: list[str], cwd: Path, cache: Callable[[], Path] = lambda: other) -> Row:
        def run() -> None:
            env = {**os.environ, CACHE_ENV: str(cache())}
            done = subprocess.run([*command, "--results-folder", str(job.out / name)], cwd=cwd, env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
            for line in done.stdout.splitlines():
                if line.startswith(("video model", "compile auto")) and "auto" in line:
                    print(f"  {name}: {line}", file=sys.stderr)
            # the warm row's cache is what a fresh run left
            if cache().name.startswith("fresh") and not warm.exists():
                if cache().exists():
                    shutil.copytree(cache(), warm)
                else:
                    warm.mkdir(parents=True)
        return Row(name, run, 0, [])

    def new_fresh_cache() -> None:
        state["fresh"] += 1
        state["cache"] = caches / f"fresh-{state['fresh']}"

    rows = []
    if release is not None:
        rows.append(process(RELEASE, [sys.executable, "inference.py", *common], release))
    rows.append(process(FAITHFUL, [*ours, "--precision", "fp32"], ROOT))
    fresh = process(FRESH, ours, ROOT, cache=lambda: state["cache"])
    fresh.before = new_fresh_cache
    rows.append(fresh)
    warm_row = process(WARM, ours, ROOT, cache=lambda: warm)

    def fill_warm_cache() -> None:
        if not warm.exists():
            warm_row.run()
            warm.mkdir(parents=True, exist_ok=True)

    warm_row.before = fill_warm_cache
    rows.append(warm_row)
    return rows


def speed_table(rows: list[Row], baselines: list[str], paired: str | None = None
                ) -> tuple[list[str], list[list[str]]]:
    """Median seconds, frames/s and the ratio of medians to each baseline row, per row; with
    `paired` (a row's name) also the median of the per-round ratios to that row, with their range."""
    by_name = {row.name: row for row in rows}
    baselines = [name for name in baselines if name in by_name]
    header = ["run", "s (median)", "frames/s", *(f"vs {name.split(',')[0]}" for name in baselines)]
    if paired in by_name:
        header.append(f"vs {paired.split(',')[0]}, per round: median (range)")
    table = []
    for row in rows:
        line = [row.name, f"{row.median:.1f}", f"{row.rate:.3f}",
                *(f"{row.rate / by_name[b].rate:.2f}x" for b in baselines)]
        if paired in by_name:
            ratios = row.paired(by_name[paired])
            line.append(f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        table.append(line)
    return header, table


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release-dir", type=Path, default=None,
                        help="a checkout of Kinpzz/RCRNet-Pytorch, patched to run (see above)")
    parser.add_argument("--davis", type=Path, default=SHARED / "data" / "DAVIS2016-sample",
                        help="a DAVIS 2016 folder in the official layout (default: the sample in ../shared)")
    parser.add_argument("--reference", type=Path, default=SHARED / "reference",
                        help="the folder with refweights.py and keys/, whose weights are used without "
                             "--checkpoint (default: ../shared/reference)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a VideoModel checkpoint to use instead of the reference weights")
    parser.add_argument("--videos", nargs="*", default=None, help="default: every video of --davis")
    parser.add_argument("--frames", type=positive_int, default=16,
                        help="first N frames of each video (16 of the sample's 3 videos: 48 frames)")
    parser.add_argument("--small-frames", type=positive_int, default=8,
                        help="frames of the small job (the first video's first N)")
    parser.add_argument("--no-small-job", action="store_true", help="leave out the small job's table")
    parser.add_argument("--size", type=positive_int, default=448, help="input height and width (default 448)")
    parser.add_argument("--clip-len", type=positive_int, default=4, help="frames a clip (default 4)")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="interleaved rounds; every row runs once a round (default 3)")
    parser.add_argument("--no-model-only", action="store_true", help="leave out the in-process model row")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the tables and the machine to this JSON file "
                             "(e.g. under benchmarks/results/)")
    args = parser.parse_args(argv)
    print(machine(), file=sys.stderr)
    videos = args.videos or sorted(p.name for p in (args.davis / "JPEGImages" / "480p").iterdir())
    release = args.release_dir
    skipped = None
    if release is None:
        skipped = "no --release-dir given"
    elif not (release / "inference.py").is_file():
        skipped, release = f"{release} has no inference.py", None
    with tempfile.TemporaryDirectory(prefix="vs_release_") as folder:
        return compare(args, videos, release, skipped, Path(folder))


def compare(args: argparse.Namespace, videos: list[str], release: Path | None, skipped: str | None,
            work: Path) -> int:
    """Lay the frames out in `work`, run and time every row, compare the maps, print the tables."""
    checkpoint = work / "video_best_model.pth"
    state = save_reference_weights(args.reference, checkpoint) if args.checkpoint is None else \
        save_checkpoint_weights(args.checkpoint, checkpoint)
    job = lay_out(work, "main", args.davis, videos, args.frames, release)
    clips = video_clips(job.root, videos, args.size, args.clip_len)
    frames = sum(c.shape[1] for c in clips)
    rows = process_rows(job, checkpoint, args.size, release, work)
    for row in rows:
        row.items = frames
    if not args.no_model_only:
        model = VideoModel()  # the release's resize-then-convolve decoder
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("backbone.resnet.fc")})
        model.eval()

        def eager() -> None:
            with torch.no_grad():
                for clip in clips:
                    model(list(clip.unbind(1)))

        rows.insert(0, Row(MODEL_ONLY, eager, frames, []))
    time_interleaved(rows, args.rounds, warmup=0)
    header, table = speed_table(rows, [MODEL_ONLY, RELEASE], paired=RELEASE)
    shape = (f"at {args.size}x{args.size}, clips of {args.clip_len}, median of {args.rounds} interleaved "
             f"rounds (defaults fresh: a new, empty decision cache every run)")
    print(f"\nvs the release, {frames} DAVIS 2016 frames (854x480 JPEG, {len(videos)} videos) {shape}; "
          f"{machine()}\n")
    print(markdown_table(header, table))
    result = {"benchmark": "vs_release", "machine": machine(), "torch": torch.__version__,
              "frames": frames, "videos": videos, "size": args.size, "clip_len": args.clip_len,
              "rounds": args.rounds, "speed": {"header": header, "rows": table}}
    if not args.no_small_job:
        small = lay_out(work, "small", args.davis, videos[:1], args.small_frames, release)
        small_frames = sum(c.shape[1] for c in video_clips(small.root, videos[:1], args.size, args.clip_len))
        small_rows = process_rows(small, checkpoint, args.size, release, work)
        for row in small_rows:
            row.items = small_frames
        time_interleaved(small_rows, args.rounds, warmup=0)
        small_header, small_table = speed_table(small_rows, [FAITHFUL, RELEASE], paired=RELEASE)
        print(f"\nsmall job, {small_frames} frames of {videos[0]} {shape}; {machine()}\n")
        print(markdown_table(small_header, small_table))
        result["small_job"] = {"frames": small_frames, "video": videos[0],
                               "speed": {"header": small_header, "rows": small_table}}
    if skipped:
        print(f"\nrelease inference.py: left out ({skipped}); maps not compared")
    else:
        maps_header = ["maps", "against the release's", "pixels differing", "max levels", "maps"]
        maps_rows = []
        for name in (FAITHFUL, FRESH, WARM):
            share, largest, maps = compare_maps(job.out / RELEASE / DATASET,
                                                job.out / name / DATASET)
            maps_rows.append([name, "float32", f"{100 * share:.4f}%", largest, maps])
        print("\n" + markdown_table(maps_header, maps_rows))
        result["maps"] = {"header": maps_header, "rows": maps_rows}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.vs_release"))
