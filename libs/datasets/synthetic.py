"""Synthetic video salient object detection data in the real datasets' layouts.

    python -m libs.datasets.synthetic --out data/synthetic [--seed N]

writes DAVIS2016-, FBMS- and VOS-like video datasets (JPEG frames, PNG masks; VOS
annotated every 15th frame only, like the real one) and MSRA-B- and HKU-IS-like image
datasets (with ImageSets/<split>_id.txt), under the real names, plus `datasets.yaml`
describing them with the split names the scripts use (DAVIS2016 train/val, FBMS
train/test, VOS train/val/test, MSRA-B and HKU-IS train/val/test). So
`--data DIR --dataset-config DIR/datasets.yaml` makes the scripts' default dataset
lists work.

Each video: a textured background (smooth colour noise, stripes and a gradient, in
muted colours) seen by a panning camera; one or two salient objects (ellipse, polygon
or blob; saturated colour with shading and stripes; their own motion, rotation and
size change; some bounce at the borders, some leave the frame); sometimes a static
muted distractor and an occluding band that both move with the background. The label
is the exact, visible part of the salient objects. Salient = the moving,
distinct-coloured foreground: learnable, yet not a flat disc on a flat background.

Deterministic for a seed (each video has its own random stream, so changing the counts
does not change the other videos). The data are written to a temporary folder beside
`--out` and moved into place when complete, with a `SYNTHETIC.json` marker; asking again
for the same parameters reuses a complete folder.

The generator replaces only what it wrote itself: the five dataset folders, `datasets.yaml`
and the marker (`OUTPUTS`). Anything else in `--out` (a training run, results) is the
user's and stays; a non-empty folder without the marker is refused. Temporary folders are
named after their owner process; those of processes that no longer run are removed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from libs.runtime.arguments import ArgumentParser, allowed, positive_int, run_command
from libs.runtime.files import process_alive

from .config import DatasetConfigError
from .synthetic_scenes import Scene, save_image, save_mask, to_uint8

MARKER = "SYNTHETIC.json"
CONFIG_NAME = "datasets.yaml"
_VERSION = 1


@dataclass(frozen=True)
class SyntheticParams:
    """Everything that determines the generated data."""

    seed: int = 0
    height: int = 72
    width: int = 96
    videos: int = 3          # videos per training split; evaluation splits get (videos + 1) // 2
    frames: int = 12         # frames per DAVIS2016/FBMS video (each varies by about +-25%)
    vos_frames: int = 46     # frames per VOS video (each varies by about +-25%); labels every 15th
    images: int = 24         # images in each image dataset's train split; val/test get images // 3

    def check(self) -> None:
        if not (16 <= self.height <= 2048 and 16 <= self.width <= 2048):
            raise ValueError(f"frame size must be 16..2048 pixels per side, got {self.height}x{self.width}")
        for key in ("videos", "frames", "vos_frames", "images"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")


# name -> (image_dir, label_dir, image_ext, label_ext, default_label_interval, splits)
_VIDEO_LAYOUTS = {
    "DAVIS2016": ("JPEGImages/480p", "Annotations/480p", ".jpg", ".png", 1, ("train", "val")),
    "FBMS": ("JPEGImages", "Annotations", ".jpg", ".png", 1, ("train", "test")),
    "VOS": ("JPEGImages", "Annotations", ".jpg", ".png", 15, ("train", "val", "test")),
}
_IMAGE_LAYOUTS = {
    "MSRA-B": ("imgs", "gt", ".jpg", ".png", ("train", "val", "test")),
    "HKU-IS": ("imgs", "gt", ".png", ".png", ("train", "val", "test")),
}
# What the generator writes into --out, the marker last: all it may ever replace there.
OUTPUTS = (*_VIDEO_LAYOUTS, *_IMAGE_LAYOUTS, CONFIG_NAME, MARKER)


# ----------------------------------------------------------------------------- writing


def _video_counts(params: SyntheticParams, split: str) -> int:
    return params.videos if split == "train" else max(1, (params.videos + 1) // 2)


def _lengths(rng: np.random.Generator, base: int) -> int:
    spread = max(0, base // 4)
    return int(max(1, base + rng.integers(-spread, spread + 1)))


def _write_video_dataset(out: Path, index: int, name: str, params: SyntheticParams) -> dict:
    image_dir, label_dir, image_ext, label_ext, interval, splits = _VIDEO_LAYOUTS[name]
    base_len = params.vos_frames if name == "VOS" else params.frames
    video_split: dict[str, list[str]] = {}
    for s_index, split in enumerate(splits):
        videos = [f"{split}{k:02d}" for k in range(_video_counts(params, split))]
        video_split[split] = videos
        for k, video in enumerate(videos):
            rng = np.random.default_rng([params.seed, index, s_index, k])
            length = _lengths(rng, base_len)
            scene = Scene(rng, params.height, params.width, length)
            image_folder = out / name / image_dir / video
            label_folder = out / name / label_dir / video
            image_folder.mkdir(parents=True, exist_ok=True)
            label_folder.mkdir(parents=True, exist_ok=True)
            for t in range(length):
                frame, mask = scene.render(t)
                save_image(to_uint8(rng, frame), image_folder / f"{t:05d}{image_ext}")
                if t % interval == 0:
                    save_mask(mask, label_folder / f"{t:05d}{label_ext}")
                scene.advance()
    return {"image_dir": image_dir, "label_dir": label_dir, "image_ext": image_ext, "label_ext": label_ext,
            "default_label_interval": interval, "video_split": video_split}


def _write_image_dataset(out: Path, index: int, name: str, params: SyntheticParams) -> dict:
    image_dir, label_dir, image_ext, label_ext, splits = _IMAGE_LAYOUTS[name]
    (out / name / image_dir).mkdir(parents=True, exist_ok=True)
    (out / name / label_dir).mkdir(parents=True, exist_ok=True)
    (out / name / "ImageSets").mkdir(parents=True, exist_ok=True)
    for s_index, split in enumerate(splits):
        count = params.images if split == "train" else max(1, params.images // 3)
        ids = [f"{split}_{k:04d}" for k in range(count)]
        for k, image_id in enumerate(ids):
            rng = np.random.default_rng([params.seed, index, s_index, k])
            scene = Scene(rng, params.height, params.width, 1, still=True)
            for d in scene.distractors:  # no motion cue in a still image: keep distractors dull
                d.colour_hsv = (d.colour_hsv[0], min(d.colour_hsv[1], 0.25), d.colour_hsv[2])
            frame, mask = scene.render(0)
            save_image(to_uint8(rng, frame), out / name / image_dir / f"{image_id}{image_ext}")
            save_mask(mask, out / name / label_dir / f"{image_id}{label_ext}")
        (out / name / "ImageSets" / f"{split}_id.txt").write_text("".join(f"{i}\n" for i in ids))
    return {"image_dir": image_dir, "label_dir": label_dir, "split_dir": "ImageSets",
            "image_ext": image_ext, "label_ext": label_ext}


def _complete(out: Path, params: SyntheticParams) -> bool:
    marker = out / MARKER
    if not marker.is_file() or not (out / CONFIG_NAME).is_file():
        return False
    try:
        found = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return found == {"version": _VERSION, **asdict(params)}


def _remove_dead_temporaries(out: Path) -> None:
    """Delete the temporary folders (`.<name>.partial-<pid>`, `.<name>.old-<pid>`) of killed runs."""
    for path in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = path.name[len(out.name) + 2:].rpartition("-")
        if kind in ("partial", "old") and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _write(tmp: Path, params: SyntheticParams) -> None:
    """Every output (`OUTPUTS`) into the new folder `tmp`, the marker last."""
    tmp.mkdir()
    config: dict[str, dict] = {}
    for index, name in enumerate(_VIDEO_LAYOUTS):
        config[name] = _write_video_dataset(tmp, index, name, params)
    for index, name in enumerate(_IMAGE_LAYOUTS, start=len(_VIDEO_LAYOUTS)):
        config[name] = _write_image_dataset(tmp, index, name, params)
    header = (f"# Synthetic VSOD datasets written by libs.datasets.synthetic "
              f"(seed {params.seed}, {params.height}x{params.width}).\n"
              "# Same layouts and split names as config/datasets.yaml; use with --data set to this "
              "folder.\n")
    (tmp / CONFIG_NAME).write_text(header + yaml.safe_dump(config, sort_keys=False, width=100))
    (tmp / MARKER).write_text(json.dumps({"version": _VERSION, **asdict(params)}, indent=1) + "\n")


def _move_in(tmp: Path, out: Path) -> None:
    """Replace the outputs in the existing folder `out` by those in `tmp`, leaving all else.

    The marker is first rewritten to name no parameters, so that a run killed while the
    outputs are swapped leaves a folder that is generated again, never reused as complete.
    """
    (out / MARKER).write_text(json.dumps({"version": _VERSION, "incomplete": True}) + "\n")
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    old.mkdir()
    for name in OUTPUTS[:-1]:
        if (out / name).exists() or (out / name).is_symlink():
            (out / name).rename(old / name)
        (tmp / name).rename(out / name)
    (tmp / MARKER).replace(out / MARKER)
    shutil.rmtree(old)
    tmp.rmdir()


def generate_synthetic(out: str | Path, seed: int = 0, height: int = 72, width: int = 96, videos: int = 3,
                       frames: int = 12, vos_frames: int = 46, images: int = 24) -> Path:
    """Write the synthetic datasets into `out`; returns the path of their config file.

    A folder already holding a complete set for the same parameters is reused as is. In a
    folder holding the marker (`MARKER`) only the generator's own outputs (`OUTPUTS`) are
    replaced; any other non-empty folder is refused with a `DatasetConfigError`.
    """
    params = SyntheticParams(seed, height, width, videos, frames, vos_frames, images)
    params.check()
    out = Path(out)
    if _complete(out, params):
        return out / CONFIG_NAME
    if out.exists() and not out.is_dir():
        raise DatasetConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise DatasetConfigError(
            f"--out {out} is a non-empty folder without the {MARKER} marker this generator writes; "
            "refusing to overwrite it (give a new or empty folder)"
        )
    blocking = next((p for p in out.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise DatasetConfigError(f"--out {out}: {blocking} is a file, not a folder")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_temporaries(out)
        shutil.rmtree(tmp, ignore_errors=True)
        _write(tmp, params)
        if _complete(out, params):  # written meanwhile by another process
            shutil.rmtree(tmp)
        elif out.is_dir():
            _move_in(tmp, out)
        else:
            tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # a read-only or full disk, no permission
            reason = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
            raise DatasetConfigError(f"--out {out}: cannot write the synthetic data ({reason})") from exc
        raise
    return out / CONFIG_NAME


# ----------------------------------------------------------------------------- command line


@allowed("an integer from 16 to 2048")
def frame_side(text: str) -> int:
    """argparse type: a frame side in pixels, 16..2048."""
    value = int(text)
    if not 16 <= value <= 2048:
        raise argparse.ArgumentTypeError(f"must be from 16 to 2048 pixels, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    defaults = SyntheticParams()
    parser = ArgumentParser(prog="python -m libs.datasets.synthetic",
                            description="Write synthetic VSOD datasets (DAVIS2016/FBMS/VOS/MSRA-B/HKU-IS "
                                        "layouts) and their datasets.yaml.")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder to write: new, empty, or one this command wrote (then only its "
                             "datasets, datasets.yaml and marker are replaced; other files stay)")
    parser.add_argument("--seed", type=int, default=defaults.seed, metavar="N", help="random seed")
    for side in ("height", "width"):
        parser.add_argument(f"--{side}", type=frame_side, default=getattr(defaults, side), metavar="PIXELS",
                            help=f"frame {side} in pixels")
    parser.add_argument("--videos", type=positive_int, default=defaults.videos, metavar="N",
                        help="videos per training split; evaluation splits get half")
    parser.add_argument("--frames", type=positive_int, default=defaults.frames, metavar="N",
                        help="frames per DAVIS2016/FBMS video, +-25%%")
    parser.add_argument("--vos-frames", type=positive_int, default=defaults.vos_frames, metavar="N",
                        help="frames per VOS video, +-25%%, labelled every 15th")
    parser.add_argument("--images", type=positive_int, default=defaults.images, metavar="N",
                        help="images per image-dataset train split; val/test get a third")
    args = parser.parse_args(argv)

    def run() -> None:
        start = time.perf_counter()
        config = generate_synthetic(args.out, seed=args.seed, height=args.height, width=args.width,
                                    videos=args.videos, frames=args.frames, vos_frames=args.vos_frames,
                                    images=args.images)
        outputs = [config.parent / name for name in OUTPUTS]
        files = [f for p in outputs for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file()]
        size = sum(p.stat().st_size for p in files)
        print(f"synthetic datasets in {config.parent}: {len(files)} files, {size / 1e6:.1f} MB, "
              f"{time.perf_counter() - start:.1f} s; config {config}")

    return run_command(run, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
