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
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from libs.runtime.arguments import ArgumentParser, allowed, positive_int, run_command

from .config import DatasetConfigError

MARKER = "SYNTHETIC.json"
CONFIG_NAME = "datasets.yaml"
_VERSION = 1
_SUBPIXEL = 4  # fixed-point bits for polygon rasterisation


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


# ----------------------------------------------------------------------------- drawing


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (arrays of one shape) -> RGB float [..., 3] in [0, 1]."""
    h = (h % 1.0) * 6.0
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros((*np.shape(h), 3), dtype=np.float32)
    for k, (r, g, b) in enumerate(table):
        sel = i == k
        out[sel] = np.stack([np.broadcast_to(r, h.shape)[sel], np.broadcast_to(g, h.shape)[sel],
                             np.broadcast_to(b, h.shape)[sel]], axis=-1)
    return out


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bicubically."""
    gh, gw = max(2, height // cells), max(2, width // cells)
    grid = rng.random((gh, gw), dtype=np.float32)
    out = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def _background(rng: np.random.Generator, height: int, width: int, hue: float) -> np.ndarray:
    """A muted, textured RGB canvas (float [H, W, 3]) larger than a frame, for panning."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = 0.6 * _smooth_noise(rng, height, width, 12) + 0.4 * _smooth_noise(rng, height, width, 4)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(6.0, 20.0)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    gradient = (xx / width) * rng.uniform(-0.3, 0.3) + (yy / height) * rng.uniform(-0.3, 0.3)
    value = np.clip(0.3 + 0.35 * noise + rng.uniform(0.0, 0.2) * stripes + gradient, 0.05, 0.95)
    hue_field = hue + 0.12 * (_smooth_noise(rng, height, width, 16) - 0.5)
    sat = np.clip(rng.uniform(0.08, 0.3) + 0.1 * (noise - 0.5), 0.0, 0.4)
    return _hsv_to_rgb(hue_field, sat, value)


def _shape_outline(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Unit-size outline (N x 2, around the origin, radius about 1) of a shape kind."""
    t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    if kind == "ellipse":
        ratio = rng.uniform(0.45, 1.0)
        return np.stack([np.cos(t), ratio * np.sin(t)], axis=1)
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.6, 1.0, n)
        if n > 4 and rng.random() < 0.5:
            radii[::2] *= rng.uniform(0.4, 0.7)  # a star-like, concave outline
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    radius = np.ones_like(t)
    for k in range(2, 6):
        radius += rng.uniform(-0.22, 0.22) / (k - 1) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    radius = np.clip(radius, 0.35, 1.5)
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _raster(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Exact boolean mask of a polygon with float vertices (x, y)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    fixed = np.round(points * (1 << _SUBPIXEL)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL)
    return mask.astype(bool)


def _far_hue(rng: np.random.Generator, avoid: list[float], gap: float = 0.22) -> float:
    for _ in range(50):
        hue = float(rng.random())
        if all(min(abs(hue - a) % 1.0, 1 - abs(hue - a) % 1.0) >= gap for a in avoid):
            return hue
    return (avoid[0] + 0.5) % 1.0 if avoid else float(rng.random())


@dataclass
class _Mover:
    """A shape moving in frame coordinates (salient) or scene coordinates (distractor)."""

    outline: np.ndarray
    colour_hsv: tuple[float, float, float]
    size: float
    x: float
    y: float
    vx: float
    vy: float
    angle: float
    spin: float
    pulse: float
    bounce: bool
    stripe_angle: float
    stripe_period: float

    def polygon(self, t: int) -> np.ndarray:
        scale = self.size * (1.0 + self.pulse * math.sin(0.3 * t))
        a = self.angle + self.spin * t
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=np.float64)
        return self.outline @ rot.T * scale + np.array([self.x, self.y])

    def step(self, height: int, width: int) -> None:
        self.x += self.vx
        self.y += self.vy
        if self.bounce:
            if not 0 <= self.x <= width:
                self.vx = -self.vx
                self.x = min(max(self.x, 0.0), float(width))
            if not 0 <= self.y <= height:
                self.vy = -self.vy
                self.y = min(max(self.y, 0.0), float(height))

    def paint(self, canvas: np.ndarray, mask: np.ndarray, t: int, origin: np.ndarray | None = None) -> None:
        """Draw the textured shape into `canvas` where `mask` is set.

        `origin`: where the canvas's top-left corner is in the shape's coordinates.
        """
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return
        ox, oy = (0.0, 0.0) if origin is None else (float(origin[0]), float(origin[1]))
        h, s, v = self.colour_hsv
        dx, dy = xs + ox - self.x, ys + oy - self.y
        u = dx * math.cos(self.stripe_angle) + dy * math.sin(self.stripe_angle)
        shade = 0.12 * np.sin(2 * math.pi * u / self.stripe_period + 0.2 * t)
        shade += 0.18 * (dy / max(self.size, 1.0))
        value = np.clip(v - shade, 0.05, 1.0).astype(np.float32)
        hue = np.full_like(value, h)
        sat = np.full_like(value, s)
        canvas[ys, xs] = _hsv_to_rgb(hue, sat, value)


def _salient(rng: np.random.Generator, height: int, width: int, hue: float, t_len: int) -> _Mover:
    side = min(height, width)
    size = side * rng.uniform(0.12, 0.28)
    speed = side * rng.uniform(0.01, 0.05)
    direction = rng.uniform(0, 2 * math.pi)
    leaves = rng.random() < 0.3
    if leaves:
        # start inside, head for the nearest border fast enough to cross it during the video
        x, y = width * rng.uniform(0.3, 0.7), height * rng.uniform(0.3, 0.7)
        speed = max(speed, 1.2 * side / max(t_len, 1))
    else:
        x, y = width * rng.uniform(0.25, 0.75), height * rng.uniform(0.25, 0.75)
    return _Mover(
        outline=_shape_outline(rng, str(rng.choice(["ellipse", "polygon", "blob"]))),
        colour_hsv=(hue, float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.55, 1.0))),
        size=size, x=x, y=y, vx=speed * math.cos(direction), vy=speed * math.sin(direction),
        angle=rng.uniform(0, 2 * math.pi), spin=rng.uniform(-0.08, 0.08), pulse=rng.uniform(0.0, 0.12),
        bounce=not leaves, stripe_angle=rng.uniform(0, math.pi), stripe_period=rng.uniform(4.0, 12.0),
    )


class _Scene:
    """One video's world: background canvas, camera path, salient objects, distractors."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, length: int, still: bool = False):
        self.height, self.width = height, width
        bg_hue = float(rng.random())
        pan = 0.0 if still else min(height, width) * rng.uniform(0.0, 0.03)
        pan_dir = rng.uniform(0, 2 * math.pi)
        self.cam_v = (pan * math.cos(pan_dir), pan * math.sin(pan_dir))
        margin_x = int(abs(self.cam_v[0]) * length) + 2
        margin_y = int(abs(self.cam_v[1]) * length) + 2
        self.cam0 = (margin_x if self.cam_v[0] < 0 else 0, margin_y if self.cam_v[1] < 0 else 0)
        self.canvas = _background(rng, height + margin_y, width + margin_x, bg_hue)
        hues = [bg_hue]
        self.objects = []
        for _ in range(2 if rng.random() < 0.35 else 1):
            hue = _far_hue(rng, hues)
            hues.append(hue)
            self.objects.append(_salient(rng, height, width, hue, length))
        self.distractors = []
        if rng.random() < 0.5:
            d = _salient(rng, height, width, _far_hue(rng, [bg_hue], 0.1), length)
            d.colour_hsv = (d.colour_hsv[0], float(rng.uniform(0.15, 0.4)), float(rng.uniform(0.3, 0.8)))
            d.vx = d.vy = d.spin = d.pulse = 0.0
            d.x += self.cam0[0]
            d.y += self.cam0[1]
            self.distractors.append(d)
        self.occluder = None
        if rng.random() < 0.4:
            thickness = min(height, width) * rng.uniform(0.06, 0.14)
            # a long band (a pole, a tree trunk) tilted from vertical, fixed in the scene
            centre = np.array([self.cam0[0] + width * rng.uniform(0.2, 0.8), self.cam0[1] + height / 2])
            tilt = rng.uniform(-0.5, 0.5)
            half_len = 1.5 * (height + width)
            corners = np.array([[-thickness / 2, -half_len], [thickness / 2, -half_len],
                                [thickness / 2, half_len], [-thickness / 2, half_len]])
            rot = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
            self.occluder = (corners @ rot.T + centre, float(rng.uniform(0.2, 0.9)))

    def render(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame t: (RGB float [H, W, 3] in [0, 1], boolean salient mask [H, W])."""
        h, w = self.height, self.width
        cx = self.cam0[0] + self.cam_v[0] * t
        cy = self.cam0[1] + self.cam_v[1] * t
        ix, iy = int(round(cx)), int(round(cy))
        frame = self.canvas[iy:iy + h, ix:ix + w].copy()
        offset = np.array([ix, iy], dtype=np.float64)
        for d in self.distractors:
            d.paint(frame, _raster(d.polygon(0) - offset, h, w), 0, origin=offset)
        salient = np.zeros((h, w), dtype=bool)
        for obj in self.objects:
            obj_mask = _raster(obj.polygon(t), h, w)
            obj.paint(frame, obj_mask, t)
            salient |= obj_mask
        if self.occluder is not None:
            points, shade = self.occluder
            occ = _raster(points - offset, h, w)
            frame[occ] = self.canvas[iy:iy + h, ix:ix + w][occ] * 0.5 + 0.5 * shade
            salient &= ~occ
        return frame, salient

    def advance(self) -> None:
        for obj in self.objects:
            obj.step(self.height, self.width)


def _to_uint8(rng: np.random.Generator, frame: np.ndarray) -> np.ndarray:
    noisy = frame * 255.0 + rng.normal(0.0, 3.0, frame.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _save_image(array: np.ndarray, path: Path) -> None:
    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=90)
    else:
        image.save(path, optimize=False, compress_level=6)


def _save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path, compress_level=6)


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
            scene = _Scene(rng, params.height, params.width, length)
            image_folder = out / name / image_dir / video
            label_folder = out / name / label_dir / video
            image_folder.mkdir(parents=True, exist_ok=True)
            label_folder.mkdir(parents=True, exist_ok=True)
            for t in range(length):
                frame, mask = scene.render(t)
                _save_image(_to_uint8(rng, frame), image_folder / f"{t:05d}{image_ext}")
                if t % interval == 0:
                    _save_mask(mask, label_folder / f"{t:05d}{label_ext}")
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
            scene = _Scene(rng, params.height, params.width, 1, still=True)
            for d in scene.distractors:  # no motion cue in a still image: keep distractors dull
                d.colour_hsv = (d.colour_hsv[0], min(d.colour_hsv[1], 0.25), d.colour_hsv[2])
            frame, mask = scene.render(0)
            _save_image(_to_uint8(rng, frame), out / name / image_dir / f"{image_id}{image_ext}")
            _save_mask(mask, out / name / label_dir / f"{image_id}{label_ext}")
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


def _alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_dead_temporaries(out: Path) -> None:
    """Delete the temporary folders (`.<name>.partial-<pid>`, `.<name>.old-<pid>`) of killed runs."""
    for path in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = path.name[len(out.name) + 2:].rpartition("-")
        if kind in ("partial", "old") and pid.isdigit() and not _alive(int(pid)):
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
