"""Lay out official dataset downloads as config/datasets.yaml expects, and check them.

    python -m libs.datasets.prepare NAME --source DOWNLOAD --data data/datasets [--copy]
    python -m libs.datasets.prepare NAME --data data/datasets --check

Files are symlinked (default) or copied (`--copy`); files that must change are written: masks
of several objects merged into one foreground (SegTrack v2, FBMS), frames not in the
extension the config names converted (SegTrack v2 .bmp -> .png), split files listed one id
a line (MSRA-B, HKU-IS). `--check` counts videos, frames and annotated frames per split
and compares them with the figures the datasets' authors publish (`PUBLISHED`).

Download layouts assumed (the folder given as --source):

* DAVIS2016: DAVIS-data.zip unpacked, `JPEGImages/480p/<video>/*.jpg`,
  `Annotations/480p/<video>/*.png` (the layout of ../shared/data/DAVIS2016-sample).
* SegTrackv2: SegTrackv2.zip unpacked, `JPEGImages/<video>/*.{png,bmp}` and
  `GroundTruth/<video>/*.png`, or `GroundTruth/<video>/<object>/*.png` for videos with
  several objects; a mask has its frame's file name.
* DAVSOD: the Drive packages unpacked side by side, `<package>/<video>/Imgs/` and
  `<package>/<video>/GT_object_level/` (packages DAVSOD-TrainingSet, DAVSOD-ValidationSet,
  Easy-35, Normal-25, Difficult-20; those present are linked).
* ViSal: the DAVSOD benchmark's `ViSal/<video>/Imgs/*.jpg`, `ViSal/<video>/ground-truth/*.png`.
* HKU-IS: `imgs/*.png`, `gt/*.png` and the split files `trainImgSet.mat`, `valImgSet.mat`,
  `testImgSet.mat` (image names), or the same names with `.txt`.
Not verified against a download (said so where they are read; please check):
* FBMS: `Trainingset/<video>/*.jpg` and `Testset/<video>/*.jpg`, masks of the annotated
  frames in `<video>/GroundTruth/` as `<frame>_gt.{png,pgm,ppm}` or `<frame>.{png,pgm}`,
  background 0 and one grey level per object.
* VOS: `JPEGImages/<video>/*.jpg` and `Annotations/<video>/*.png`, as the config names them.
* MSRA-B: images and masks side by side, `<id>.jpg` and `<id>.png`, in the folder given or
  its `imgs/`+`gt/`; split lists as for HKU-IS (`trainImgSet`, `valImgSet`, `testImgSet`,
  .mat or .txt) when the download has them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image

from .config import (
    DEFAULT_CONFIG,
    DEFAULT_DATA,
    DatasetConfigError,
    DatasetSpec,
    get_spec,
    load_dataset_config,
)
from .reading import open_image

PROG = "python -m libs.datasets.prepare"


class PrepareError(DatasetConfigError):
    """A download is not laid out as expected; the message names the path and what was expected."""


@dataclass(frozen=True)
class Published:
    """Figures published by a dataset's authors: videos (or images) per split, frames, labels."""

    videos: dict[str, int]
    annotated: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    source: str = ""


# Keys are config split names; "*" is the whole dataset.
PUBLISHED: dict[str, Published] = {
    "DAVIS2016": Published(
        {"train": 30, "val": 20, "*": 50},
        {"train": 2079, "val": 1376, "*": 3455},
        {"*": 3455},
        "Perazzi et al., CVPR 2016, Table 1 and davischallenge.org: 50 videos, 3,455 annotated frames, "
        "30 train / 20 val",
    ),
    "FBMS": Published(
        {"train": 29, "test": 30, "*": 59},
        {"*": 720},
        {"*": 13860},
        "Ochs, Malik & Brox, TPAMI 2014: 59 videos (29 training, 30 test), 13,860 frames, 720 annotated",
    ),
    "SegTrackv2": Published(
        {"trainval": 13, "release7": 7, "*": 14},
        {"*": 976},
        {"*": 976},
        "Li et al., ICCV 2013 and the dataset page: 14 videos, 976 frames, all annotated; DAVSOD's "
        "benchmark (README, note under its table) leaves out penguin: 13 videos",
    ),
    "VOS": Published(
        {"train": 120, "val": 40, "test": 40, "*": 200},
        {"*": 7467},
        {"*": 116103},
        "Li, Xia & Chen, TIP 2018: 200 videos, 116,103 frames, 7,467 annotated keyframes; "
        "DAVSOD's benchmark split 6:2:2 (README)",
    ),
    "DAVSOD": Published(
        {"easy": 35, "normal": 25, "difficult": 20, "train": 61, "val": 46},
        {},
        {},
        "Fan et al., CVPR 2019: 226 videos, 23,938 frames; DengPingFan/DAVSOD README.md:61-66: "
        "Training Set 61 sequences (merged from the paper's 90), Validation Set 46, test Easy-35, "
        "Normal-25, Difficult-20 (35, 25, 20 sequences)",
    ),
    "ViSal": Published(
        {"test": 17, "*": 17},
        {"*": 193},
        {},
        "Wang, Shen & Shao, TIP 2015: 17 videos, 193 annotated frames",
    ),
    "MSRA-B": Published(
        {"train": 2500, "val": 500, "test": 2000, "*": 5000},
        {},
        {},
        "Liu et al., TPAMI 2011: 5,000 images; split of Jiang et al. (DRFI), CVPR 2013: "
        "2,500 train / 500 val / 2,000 test",
    ),
    "HKU-IS": Published(
        {"train": 2500, "val": 500, "test": 1447, "*": 4447},
        {},
        {},
        "Li & Yu, CVPR 2015: 4,447 images, 2,500 train / 500 val / 1,447 test",
    ),
}

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")
_SPLIT_FILES = {"train": "trainImgSet", "val": "valImgSet", "test": "testImgSet"}


# --------------------------------------------------------------------------- file helpers


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise PrepareError(f"{path}: expected {what}")
    return path


def _images(folder: Path) -> list[Path]:
    """Image files in `folder`, sorted by name, hidden files skipped."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in _IMAGE_EXTS and not p.name.startswith(".")
    )


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _place(src: Path, dst: Path, copy: bool) -> None:
    """Symlink (or copy) a file or folder to `dst`, replacing an earlier link there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        raise PrepareError(f"{dst}: expected nothing or a link there, found a folder (remove it first)")
    if not copy:
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=False)
    else:
        shutil.copy2(src, dst)


def _foreground(path: Path) -> np.ndarray:
    """A mask file as a boolean foreground: every non-zero value (any channel) is foreground."""
    array = np.asarray(open_image(path))
    return array.any(axis=2) if array.ndim == 3 else array != 0


def _write_png(array_or_image: np.ndarray | Image.Image, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink():
        dst.unlink()
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    image.save(dst)


def _frame(src: Path, dst: Path, copy: bool) -> None:
    """A frame placed as `dst`: linked/copied when the extension matches, else converted to RGB."""
    if src.suffix.lower() == dst.suffix.lower():
        _place(src, dst, copy)
    else:
        _write_png(open_image(src).convert("RGB"), dst)


def _mask(sources: list[Path], dst: Path, copy: bool) -> None:
    """One 0/255 mask from one or several object masks (their union); a single 0/255 PNG is linked."""
    if len(sources) == 1 and sources[0].suffix.lower() == ".png":
        array = np.asarray(open_image(sources[0]))
        if array.ndim == 2 and set(np.unique(array)) <= {0, 255}:
            _place(sources[0], dst, copy)
            return
    union = np.zeros_like(_foreground(sources[0]))
    for src in sources:
        mask = _foreground(src)
        if mask.shape != union.shape:
            raise PrepareError(
                f"{src}: expected a mask of {union.shape[1]}x{union.shape[0]} like {sources[0]}"
            )
        union |= mask
    _write_png(union.astype(np.uint8) * 255, dst)


def _write_ids(path: Path, ids: Iterable[str]) -> int:
    ids = list(ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return len(ids)


# --------------------------------------------------------------------------- preparers


def _root(source: Path, marker: str, what: str) -> Path:
    """`source`, or its single sub-folder, holding `marker` (zips often unpack into one folder)."""
    if (source / marker).exists():
        return source
    inner = [p for p in _subdirs(source) if (p / marker).exists()] if source.is_dir() else []
    if len(inner) == 1:
        return inner[0]
    raise PrepareError(f"{source}: expected {what} (a folder holding {marker})")


def _prepare_linked_dirs(
    spec: DatasetSpec, source: Path, dest: Path, copy: bool, dirs: list[str]
) -> list[str]:
    root = _root(source, dirs[0], f"the {spec.name} download")
    for rel in dirs:
        _place(_need_dir(root / rel, f"the {spec.name} folder {rel}/"), dest / rel, copy)
    return [f"linked {', '.join(d + '/' for d in dirs)} from {root}"]


def _prepare_davis(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    return _prepare_linked_dirs(spec, source, dest, copy, [spec.image_dir, spec.label_dir])


def _prepare_vos(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    # Unverified layout: the download is assumed to hold JPEGImages/ and Annotations/ already.
    return _prepare_linked_dirs(spec, source, dest, copy, [spec.image_dir, spec.label_dir])


def _prepare_segtrack(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    root = _root(source, "GroundTruth", "the SegTrack v2 download")
    frames_root = _need_dir(root / "JPEGImages", "SegTrack v2 frames, JPEGImages/<video>/")
    merged = 0
    for video_dir in _subdirs(_need_dir(root / "GroundTruth", "SegTrack v2 masks, GroundTruth/<video>/")):
        video = video_dir.name
        objects = _subdirs(video_dir) or [video_dir]
        merged += len(objects) > 1
        frames = {p.stem: p for p in _images(_need_dir(frames_root / video, f"the frames of {video}"))}
        masks: dict[str, list[Path]] = {}
        for folder in objects:
            for path in _images(folder):
                masks.setdefault(path.stem, []).append(path)
        for stem, paths in masks.items():
            if stem not in frames:
                raise PrepareError(f"{paths[0]}: expected a frame {stem}.* in {frames_root / video}")
            _mask(paths, dest / spec.label_dir / video / f"{stem}{spec.label_ext}", copy)
        for stem, path in frames.items():
            _frame(path, dest / spec.image_dir / video / f"{stem}{spec.image_ext}", copy)
    return [f"SegTrack v2 from {root}: {merged} multi-object video(s) merged into one foreground"]


def _prepare_fbms(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    # Unverified layout (see the module docstring): Trainingset/ and Testset/ with
    # <video>/*.jpg and <video>/GroundTruth/<frame>[_gt].{png,pgm,ppm}, background 0.
    found = [source / s for s in ("Trainingset", "Testset") if (source / s).is_dir()]
    if not found:
        raise PrepareError(f"{source}: expected the FBMS-59 folders Trainingset/ and Testset/")
    annotated = 0
    for part in found:
        for video_dir in _subdirs(part):
            video = video_dir.name
            frames = {p.stem: p for p in _images(video_dir)}
            gt_dir = _need_dir(video_dir / "GroundTruth", f"the FBMS masks of {video}, GroundTruth/")
            for path in _images(gt_dir):
                stem = path.stem[: -len("_gt")] if path.stem.endswith("_gt") else path.stem
                if stem not in frames:
                    raise PrepareError(f"{path}: expected a frame {stem}.jpg in {video_dir}")
                _mask([path], dest / spec.label_dir / video / f"{stem}{spec.label_ext}", copy)
                annotated += 1
            for stem, path in frames.items():
                _frame(path, dest / spec.image_dir / video / f"{stem}{spec.image_ext}", copy)
    return [f"FBMS from {source}: {annotated} annotated frame(s)"]


def _prepare_davsod(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    packages = [
        p
        for p in _subdirs(_need_dir(source, "the DAVSOD packages"))
        if any((v / spec.image_subdir).is_dir() for v in _subdirs(p))
    ]
    if not packages:
        raise PrepareError(
            f"{source}: expected DAVSOD packages (e.g. Easy-35/<video>/{spec.image_subdir}/) in it"
        )
    for package in packages:
        _place(package, dest / package.name, copy)
    return [f"linked package(s) {', '.join(p.name for p in packages)}"]


def _prepare_visal(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    videos = [v for v in _subdirs(_need_dir(source, "the ViSal folder")) if (v / spec.image_subdir).is_dir()]
    if not videos:
        raise PrepareError(
            f"{source}: expected ViSal videos, <video>/{spec.image_subdir}/ and <video>/{spec.label_subdir}/"
        )
    for video in videos:
        _place(video, dest / video.name, copy)
    return [f"linked {len(videos)} ViSal video(s)"]


def _read_split(path: Path) -> list[str]:
    """Image ids (file names without extension) from a split list (.mat cell array or .txt)."""
    if path.suffix == ".mat":
        from scipy.io import loadmat

        data = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
        if len(data) != 1:
            raise PrepareError(f"{path}: expected one variable listing image names, found {sorted(data)}")
        names = [str(np.ravel(item)[0]) for item in np.ravel(next(iter(data.values())))]
    else:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [os.path.splitext(n)[0] for n in names]


def _prepare_images(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    if (source / "imgs").is_dir() and (source / "gt").is_dir():
        image_dir, label_dir = source / "imgs", source / "gt"
    else:  # MSRA-B style: images and masks side by side (unverified layout)
        image_dir = label_dir = _need_dir(source, f"the {spec.name} download")
    images = {p.stem: p for p in _images(image_dir) if p.suffix.lower() == spec.image_ext}
    labels = {p.stem: p for p in _images(label_dir) if p.suffix.lower() == spec.label_ext}
    if image_dir == label_dir:
        images = {k: v for k, v in images.items() if k in labels or spec.image_ext != spec.label_ext}
    ids = sorted(set(images) & set(labels))
    if not ids:
        raise PrepareError(f"{image_dir}: expected images *{spec.image_ext} with masks *{spec.label_ext}")
    for i in ids:
        _place(images[i], dest / spec.image_dir / f"{i}{spec.image_ext}", copy)
        _place(labels[i], dest / spec.label_dir / f"{i}{spec.label_ext}", copy)
    notes = [f"{len(ids)} image(s) with masks; ImageSets/all_id.txt"]
    _write_ids(dest / spec.split_dir / "all_id.txt", ids)
    for split, stem in _SPLIT_FILES.items():
        lists = [source / f"{stem}{ext}" for ext in (".mat", ".txt") if (source / f"{stem}{ext}").is_file()]
        if not lists:
            notes.append(f"no split list {stem}.mat/.txt in {source}: {split}_id.txt not written")
            continue
        members = _read_split(lists[0])
        unknown = [m for m in members if m not in images]
        if unknown:
            raise PrepareError(f"{lists[0]}: expected names of images in {image_dir}, e.g. {unknown[0]!r}")
        count = _write_ids(dest / spec.split_dir / f"{split}_id.txt", members)
        notes.append(f"{split}_id.txt: {count} id(s) from {lists[0].name}")
    return notes


PREPARERS = {
    "DAVIS2016": _prepare_davis,
    "FBMS": _prepare_fbms,
    "SegTrackv2": _prepare_segtrack,
    "VOS": _prepare_vos,
    "DAVSOD": _prepare_davsod,
    "ViSal": _prepare_visal,
    "MSRA-B": _prepare_images,
    "HKU-IS": _prepare_images,
}


def prepare(
    name: str,
    source: str | Path,
    data: str | Path,
    *,
    copy: bool = False,
    config_path: str | Path = DEFAULT_CONFIG,
) -> list[str]:
    """Lay out the download at `source` as `<data>/<name>/`; returns lines saying what was done."""
    spec = get_spec(load_dataset_config(config_path), name)
    if name not in PREPARERS:
        raise PrepareError(f"{name}: no preparer; expected one of {', '.join(PREPARERS)}")
    source = Path(source)
    _need_dir(source, f"the {name} download (--source)")
    return PREPARERS[name](spec, source, Path(data) / name, copy)


# --------------------------------------------------------------------------- check


@dataclass
class SplitCount:
    """What `check` found for one split: listed and present videos, frames and labels."""

    split: str
    listed: int
    present: int
    frames: int
    annotated: int
    missing: list[str]


def _count_video_split(spec: DatasetSpec, root: Path, split: str) -> SplitCount:
    try:
        videos = spec.videos(split, root)
    except DatasetConfigError:
        return SplitCount(split, 0, 0, 0, 0, [f"(split {split!r}: no video folder found)"])
    frames = annotated = present = 0
    missing = []
    for video in videos:
        image_folder = spec.video_image_folder(root, video)
        if not image_folder.is_dir():
            missing.append(video)
            continue
        present += 1
        frames += sum(1 for p in image_folder.iterdir() if p.name.endswith(spec.image_ext))
        label_folder = spec.video_label_folder(root, video)
        if label_folder.is_dir():
            annotated += sum(1 for p in label_folder.iterdir() if p.name.endswith(spec.label_ext))
    return SplitCount(split, len(videos), present, frames, annotated, missing)


def _count_image_split(spec: DatasetSpec, root: Path, split: str) -> SplitCount:
    path = root / spec.name / spec.split_dir / f"{split}_id.txt"
    if not path.is_file():
        return SplitCount(split, 0, 0, 0, 0, [f"({path.name} not found)"])
    ids = spec.image_ids(root, split)
    missing = [
        i
        for i in ids
        if not (spec.label_folder(root) / f"{i}{spec.label_ext}").is_file()
        or not (spec.image_folder(root) / f"{i}{spec.image_ext}").is_file()
    ]
    present = len(ids) - len(missing)
    return SplitCount(split, len(ids), present, present, present, missing)


def check(name: str, data: str | Path, *, config_path: str | Path = DEFAULT_CONFIG) -> tuple[list[str], bool]:
    """(report lines, whether every published figure matched) for `<data>/<name>/`.

    Video datasets: every split of the config, plus "*" (the videos on disk) against the
    published totals, naming listed videos that are missing and video folders on disk that
    no split lists. Image datasets: the splits with a published size.
    """
    spec = get_spec(load_dataset_config(config_path), name)
    root = Path(data)
    _need_dir(root / name, f"the prepared {name} folder (run without --check first)")
    published = PUBLISHED.get(name, Published({}))
    if spec.is_video:
        counts = [_count_video_split(spec, root, s) for s in spec.splits]
        base = spec.image_folder(root)
        depth = max((v.count("/") for s in spec.splits for v in spec.video_split[s]), default=0)
        on_disk = (
            sorted(
                p.relative_to(base).as_posix() for p in base.glob("/".join(["*"] * (depth + 1))) if p.is_dir()
            )
            if base.is_dir()
            else []
        )
        listed = {v for c in counts for v in (spec.videos(c.split, root) if c.listed else [])}
        extra = [v for v in on_disk if v not in listed]
        total = SplitCount("*", len(on_disk), len(on_disk), 0, 0, [])
        for video in on_disk:
            one = SplitCount("*", 1, 1, 0, 0, [])
            folder, labels = spec.video_image_folder(root, video), spec.video_label_folder(root, video)
            one.frames = (
                sum(1 for p in folder.iterdir() if p.name.endswith(spec.image_ext)) if folder.is_dir() else 0
            )
            one.annotated = (
                sum(1 for p in labels.iterdir() if p.name.endswith(spec.label_ext)) if labels.is_dir() else 0
            )
            total.frames += one.frames
            total.annotated += one.annotated
        counts.append(total)
    else:
        splits = [s for s in published.videos if s != "*"]
        counts = [_count_image_split(spec, root, s) for s in splits]
        extra = []
    unit = "videos" if spec.is_video else "images"
    lines = [
        f"| split | {unit} listed | {unit} present | frames | annotated | published {unit} | "
        "published frames | published annotated | ok |",
        "|" + " --- |" * 9,
    ]
    ok = True
    for c in counts:
        want_v = published.videos.get(c.split)
        want_f = published.frames.get(c.split)
        want_a = published.annotated.get(c.split)
        row_ok = (
            not c.missing
            and (want_v is None or c.present == want_v)
            and (want_f is None or c.frames == want_f)
            and (want_a is None or c.annotated == want_a)
        )
        ok &= row_ok
        cells = [c.split, c.listed, c.present, c.frames, c.annotated, want_v, want_f, want_a]
        cells = ["-" if v is None else str(v) for v in cells] + ["yes" if row_ok else "NO"]
        lines.append("| " + " | ".join(cells) + " |")
    for c in counts:
        if c.missing:
            lines.append(f"{c.split}: missing {len(c.missing)}: {', '.join(c.missing[:10])}")
    if extra:
        lines.append(f"on disk but in no split: {len(extra)}: {', '.join(extra[:10])}")
    lines.append(f"published figures: {published.source or '(none recorded)'}")
    return lines, ok


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Lay out an official dataset download as config/datasets.yaml expects (symlinks by "
        "default), or --check a prepared dataset against the figures its authors publish.",
    )
    parser.add_argument("name", choices=list(PREPARERS), help="dataset, as named in the config")
    parser.add_argument("--source", metavar="DOWNLOAD", help="the unpacked official download")
    parser.add_argument(
        "--data", default=DEFAULT_DATA, metavar="DIR", help="dataset root (default: %(default)s)"
    )
    parser.add_argument("--copy", action="store_true", help="copy files instead of symlinking them")
    parser.add_argument("--check", action="store_true", help="count videos, frames and labels per split")
    parser.add_argument(
        "--dataset-config", default=str(DEFAULT_CONFIG), metavar="PATH", help=argparse.SUPPRESS
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done (or check matched), 1 check found differences, 2 bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.check and not args.source:
        parser.error("--source DOWNLOAD is required unless --check")
    try:
        if args.source:
            for line in prepare(
                args.name, args.source, args.data, copy=args.copy, config_path=args.dataset_config
            ):
                print(line)
        if args.check:
            lines, ok = check(args.name, args.data, config_path=args.dataset_config)
            print("\n".join(lines))
            return 0 if ok else 1
    except DatasetConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{PROG}: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
