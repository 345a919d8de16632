"""Our `inference.py` against the release's own (github.com/Kinpzz/RCRNet-Pytorch), end to end on
real DAVIS 2016 frames (854x480 JPEGs), in one run: speed and the maps pixel by pixel.

Rows, each a fresh process over the same frames (Python start, imports, checkpoint loading,
reading, the model and PNG writing all included), timed in alternation over `--rounds`
rounds:
- the release's `inference.py` (float32, its own code), from `--release-dir`;
- our `inference.py --precision fp32` (the release's computation) and our `inference.py` with its
  defaults (`--precision auto`: on a CPU the factored decoder, chosen by its arithmetic), whose
  first run on a fresh decision cache (a folder of this benchmark's own) is reported on its own
  line;
- in this process, the release-way float32 eager model (VideoModel with the release's
  resize-then-convolve decoder, `torch.no_grad`, a list of frames) on the same clips,
  decoded and normalised in memory: the "model only" baseline.

The frames are the DAVIS sample's (`--davis`, the official layout) laid out as the release's
config expects (symlinks under a temporary `<root>/DAVIS2016/`, a `datasets.yaml` whose
DAVIS2016 `val` split is the chosen videos; `--frames` keeps the first N frames of each).
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

    python -m benchmarks.vs_release --release-dir /tmp/rcrnet-release --frames 8 --rounds 2
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
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
from libs.runtime.arguments import ArgumentParser, run_command

SHARED = ROOT.parent / "shared"
DATASET = "DAVIS2016"
FAITHFUL = "our inference.py --precision fp32"


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


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release-dir", type=Path, default=None,
                        help="a checkout of Kinpzz/RCRNet-Pytorch, patched to run (see above)")
    parser.add_argument("--davis", type=Path, default=SHARED / "data" / "DAVIS2016-sample")
    parser.add_argument("--reference", type=Path, default=SHARED / "reference")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a VideoModel checkpoint to use instead of the reference weights")
    parser.add_argument("--videos", nargs="*", default=None, help="default: every video of --davis")
    parser.add_argument("--frames", type=int, default=None, help="first N frames of each video (default all)")
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--clip-len", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
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
    work = Path(tempfile.mkdtemp(prefix="vs_release_"))
    root, out, config, checkpoint = work / "datasets", work / "results", work / "datasets.yaml", \
        work / "video_best_model.pth"
    link_davis(args.davis, root, videos, args.frames)
    write_config(release, config, videos)
    state = save_reference_weights(args.reference, checkpoint) if args.checkpoint is None else \
        save_checkpoint_weights(args.checkpoint, checkpoint)
    env = {**os.environ, "RCRNET_CACHE_DIR": str(work / "cache")}
    common = ["--data", str(root), "--dataset", DATASET, "--split", "val", "--checkpoint", str(checkpoint),
              "--dataset-config", str(config), "--size", str(args.size)]
    walls: dict[str, list[float]] = {}

    def process(name: str, command: list[str], cwd: Path) -> Row:
        def run() -> None:
            folder = out / name
            start = time.perf_counter()
            done = subprocess.run([*command, "--results-folder", str(folder)], cwd=cwd, env=env,
                                  capture_output=True, text=True)
            walls.setdefault(name, []).append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
            if "auto" in done.stdout:
                for line in done.stdout.splitlines():
                    if line.startswith(("video model", "compile auto")):
                        print(f"  {name}: {line}", file=sys.stderr)
        return Row(name, run, 0, [])

    ours = [sys.executable, str(ROOT / "inference.py"), *common, "--overwrite"]
    rows = []
    if release is not None:
        rows.append(process("release inference.py", [sys.executable, "inference.py", *common], release))
    rows.append(process(FAITHFUL, [*ours, "--precision", "fp32"], ROOT))
    rows.append(process("our inference.py (defaults)", ours, ROOT))
    # the defaults' first run, on a fresh decision cache
    first = time.perf_counter()
    rows[-1].run()
    calibrating = time.perf_counter() - first
    walls.clear()
    clips = video_clips(root, videos, args.size, args.clip_len)
    frames = sum(c.shape[1] for c in clips)
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

        rows.insert(0, Row("release-way fp32 eager model, in process (model only)", eager, frames, []))
    time_interleaved(rows, args.rounds, warmup=0)
    by_name = {row.name: row for row in rows}
    baselines = [name for name in ("release-way fp32 eager model, in process (model only)",
                                   "release inference.py") if name in by_name]
    header = ["run", "s (median)", "frames/s", *(f"vs {name.split(',')[0]}" for name in baselines)]
    table = []
    for row in rows:
        table.append([row.name, f"{row.median:.1f}", f"{row.rate:.3f}",
                      *(f"{row.rate / by_name[b].rate:.2f}x" for b in baselines)])
    table.append(["our inference.py (defaults), first run, fresh cache", f"{calibrating:.1f}",
                  f"{frames / calibrating:.3f}",
                  *(f"{by_name[b].median / calibrating:.2f}x" for b in baselines)])
    print(f"\nvs the release, {frames} DAVIS 2016 frames (854x480 JPEG, {len(videos)} videos) at "
          f"{args.size}x{args.size}, clips of {args.clip_len}, median of {args.rounds} interleaved rounds; "
          f"{machine()}\n")
    print(markdown_table(header, table))
    result = {"benchmark": "vs_release", "machine": machine(), "torch": torch.__version__,
              "frames": frames, "videos": videos, "size": args.size, "clip_len": args.clip_len,
              "rounds": args.rounds, "speed": {"header": header, "rows": table}}
    if skipped:
        print(f"\nrelease inference.py: left out ({skipped}); maps not compared")
    else:
        maps_header = ["maps", "against the release's", "pixels differing", "max levels", "maps"]
        maps_rows = []
        for name in (FAITHFUL, "our inference.py (defaults)"):
            share, largest, maps = compare_maps(out / "release inference.py" / DATASET, out / name / DATASET)
            maps_rows.append([name, "float32", f"{100 * share:.4f}%", largest, maps])
        print("\n" + markdown_table(maps_header, maps_rows))
        result["maps"] = {"header": maps_header, "rows": maps_rows}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m benchmarks.vs_release"))
