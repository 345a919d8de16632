"""Preparer of the image datasets (MSRA-B, HKU-IS) and their split lists."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import DatasetSpec
from .files import PrepareError, images, need_dir, place, write_ids

# config split -> the stem of the split list image datasets ship (.mat or .txt)
SPLIT_FILES = {"train": "trainImgSet", "val": "valImgSet", "test": "testImgSet"}


def read_split(path: Path) -> list[str]:
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


def prepare_images(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    """HKU-IS (imgs/, gt/) or MSRA-B (images and masks side by side); split lists written as
    ImageSets/<split>_id.txt, all_id.txt listing every image with a mask."""
    if (source / "imgs").is_dir() and (source / "gt").is_dir():
        image_dir, label_dir = source / "imgs", source / "gt"
    else:  # MSRA-B style: images and masks side by side (layout not checked on real files)
        image_dir = label_dir = need_dir(source, f"the {spec.name} download")
    found = {p.stem: p for p in images(image_dir) if p.suffix.lower() == spec.image_ext}
    labels = {p.stem: p for p in images(label_dir) if p.suffix.lower() == spec.label_ext}
    if image_dir == label_dir:
        found = {k: v for k, v in found.items() if k in labels or spec.image_ext != spec.label_ext}
    ids = sorted(set(found) & set(labels))
    if not ids:
        raise PrepareError(f"{image_dir}: expected images *{spec.image_ext} with masks *{spec.label_ext}")
    for i in ids:
        place(found[i], dest / spec.image_dir / f"{i}{spec.image_ext}", copy)
        place(labels[i], dest / spec.label_dir / f"{i}{spec.label_ext}", copy)
    notes = [f"{len(ids)} image(s) with masks; ImageSets/all_id.txt"]
    write_ids(dest / spec.split_dir / "all_id.txt", ids)
    for split, stem in SPLIT_FILES.items():
        lists = [source / f"{stem}{ext}" for ext in (".mat", ".txt") if (source / f"{stem}{ext}").is_file()]
        if not lists:
            notes.append(f"no split list {stem}.mat/.txt in {source}: {split}_id.txt not written")
            continue
        members = read_split(lists[0])
        unknown = [m for m in members if m not in found]
        if unknown:
            raise PrepareError(f"{lists[0]}: expected names of images in {image_dir}, e.g. {unknown[0]!r}")
        count = write_ids(dest / spec.split_dir / f"{split}_id.txt", members)
        notes.append(f"{split}_id.txt: {count} id(s) from {lists[0].name}")
    return notes
