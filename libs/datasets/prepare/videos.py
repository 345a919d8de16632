"""Preparers of the video datasets laid out by their authors' downloads (ViSal: `visal`).

Each takes (spec, source, dest, copy) and returns lines saying what it did; `dest` is
`<data>/<name>/`. Download layouts are described in docs/datasets.md, which says which were
checked on real files.
"""
from __future__ import annotations

from pathlib import Path

from ..config import DatasetSpec
from .files import PrepareError, find_root, images, need_dir, place, place_frame, place_mask, subdirs


def _linked_dirs(spec: DatasetSpec, source: Path, dest: Path, copy: bool, dirs: list[str]) -> list[str]:
    root = find_root(source, dirs[0], f"the {spec.name} download")
    for rel in dirs:
        place(need_dir(root / rel, f"the {spec.name} folder {rel}/"), dest / rel, copy)
    return [f"linked {', '.join(d + '/' for d in dirs)} from {root}"]


def prepare_davis(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    """DAVIS-data.zip unpacked: JPEGImages/480p/<video>/*.jpg, Annotations/480p/<video>/*.png."""
    return _linked_dirs(spec, source, dest, copy, [spec.image_dir, spec.label_dir])


def prepare_vos(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    """VOS: JPEGImages/ and Annotations/ as the config names them (layout not checked on real files)."""
    return _linked_dirs(spec, source, dest, copy, [spec.image_dir, spec.label_dir])


def prepare_segtrack(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    """SegTrack v2: JPEGImages/<video>/ (.png or .bmp) and GroundTruth/<video>/[<object>/]*.png.

    The objects of a multi-object video are merged into one foreground per frame; frames not
    in the config's extension are converted.
    """
    root = find_root(source, "GroundTruth", "the SegTrack v2 download")
    frames_root = need_dir(root / "JPEGImages", "SegTrack v2 frames, JPEGImages/<video>/")
    merged = 0
    for video_dir in subdirs(need_dir(root / "GroundTruth", "SegTrack v2 masks, GroundTruth/<video>/")):
        video = video_dir.name
        objects = subdirs(video_dir) or [video_dir]
        merged += len(objects) > 1
        frames = {p.stem: p for p in images(need_dir(frames_root / video, f"the frames of {video}"))}
        masks: dict[str, list[Path]] = {}
        for folder in objects:
            for path in images(folder):
                masks.setdefault(path.stem, []).append(path)
        for stem, paths in masks.items():
            if stem not in frames:
                raise PrepareError(f"{paths[0]}: expected a frame {stem}.* in {frames_root / video}")
            place_mask(paths, dest / spec.label_dir / video / f"{stem}{spec.label_ext}", copy)
        for stem, path in frames.items():
            place_frame(path, dest / spec.image_dir / video / f"{stem}{spec.image_ext}", copy)
    return [f"SegTrack v2 from {root}: {merged} multi-object video(s) merged into one foreground"]


def prepare_fbms(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    """FBMS-59: Trainingset/ and Testset/ with <video>/*.jpg and <video>/GroundTruth/
    <frame>[_gt].{png,pgm,ppm}, background 0 and one grey level per object (layout not checked
    on real files)."""
    found = [source / s for s in ("Trainingset", "Testset") if (source / s).is_dir()]
    if not found:
        raise PrepareError(f"{source}: expected the FBMS-59 folders Trainingset/ and Testset/")
    annotated = 0
    for part in found:
        for video_dir in subdirs(part):
            video = video_dir.name
            frames = {p.stem: p for p in images(video_dir)}
            gt_dir = need_dir(video_dir / "GroundTruth", f"the FBMS masks of {video}, GroundTruth/")
            for path in images(gt_dir):
                stem = path.stem[: -len("_gt")] if path.stem.endswith("_gt") else path.stem
                if stem not in frames:
                    raise PrepareError(f"{path}: expected a frame {stem}.jpg in {video_dir}")
                place_mask([path], dest / spec.label_dir / video / f"{stem}{spec.label_ext}", copy)
                annotated += 1
            for stem, path in frames.items():
                place_frame(path, dest / spec.image_dir / video / f"{stem}{spec.image_ext}", copy)
    return [f"FBMS from {source}: {annotated} annotated frame(s)"]


def prepare_davsod(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    """DAVSOD: the Drive packages side by side, <package>/<video>/Imgs/ and GT_object_level/."""
    packages = [
        p
        for p in subdirs(need_dir(source, "the DAVSOD packages"))
        if any((v / spec.image_subdir).is_dir() for v in subdirs(p))
    ]
    if not packages:
        raise PrepareError(
            f"{source}: expected DAVSOD packages (e.g. Easy-35/<video>/{spec.image_subdir}/) in it"
        )
    for package in packages:
        place(package, dest / package.name, copy)
    return [f"linked package(s) {', '.join(p.name for p in packages)}"]
