"""Placing the files of a download: links or copies, converted frames, merged masks, id lists."""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DatasetConfigError
from ..reading import open_image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")
JPEG_QUALITY = 95  # frames converted to JPEG (the config's image_ext) keep full chroma at this quality


class PrepareError(DatasetConfigError):
    """A download is not laid out as expected; the message names the path and what was expected."""


def need_dir(path: Path, what: str) -> Path:
    """`path`, which must be a folder holding `what`."""
    if not path.is_dir():
        raise PrepareError(f"{path}: expected {what}")
    return path


def images(folder: Path) -> list[Path]:
    """Image files in `folder`, sorted by name, hidden files skipped."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
    )


def subdirs(folder: Path) -> list[Path]:
    """Sub-folders of `folder`, sorted by name, hidden ones skipped."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_root(source: Path, marker: str, what: str) -> Path:
    """`source`, or its single sub-folder, holding `marker` (zips often unpack into one folder)."""
    if (source / marker).exists():
        return source
    inner = [p for p in subdirs(source) if (p / marker).exists()] if source.is_dir() else []
    if len(inner) == 1:
        return inner[0]
    raise PrepareError(f"{source}: expected {what} (a folder holding {marker})")


def place(src: Path, dst: Path, copy: bool) -> None:
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


def foreground(path: Path) -> np.ndarray:
    """A mask file as a boolean foreground: every non-zero value (any channel) is foreground."""
    array = np.asarray(open_image(path))
    return array.any(axis=2) if array.ndim == 3 else array != 0


def write_image(array_or_image: np.ndarray | Image.Image, dst: Path) -> None:
    """Save an image in the format `dst`'s extension names (JPEG at JPEG_QUALITY, 4:4:4)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink():
        dst.unlink()
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    if dst.suffix.lower() in (".jpg", ".jpeg"):
        image.save(dst, quality=JPEG_QUALITY, subsampling=0)
    else:
        image.save(dst)


def place_frame(src: Path, dst: Path, copy: bool) -> None:
    """A frame placed as `dst`: linked/copied when the extension matches, else converted to RGB."""
    if src.suffix.lower() == dst.suffix.lower():
        place(src, dst, copy)
    else:
        write_image(open_image(src).convert("RGB"), dst)


def place_mask(sources: list[Path], dst: Path, copy: bool) -> None:
    """One 0/255 mask from one or several object masks (their union); a single 0/255 PNG is linked."""
    if len(sources) == 1 and sources[0].suffix.lower() == ".png":
        array = np.asarray(open_image(sources[0]))
        if array.ndim == 2 and set(np.unique(array)) <= {0, 255}:
            place(sources[0], dst, copy)
            return
    union = np.zeros_like(foreground(sources[0]))
    for src in sources:
        mask = foreground(src)
        if mask.shape != union.shape:
            raise PrepareError(
                f"{src}: expected a mask of {union.shape[1]}x{union.shape[0]} like {sources[0]}"
            )
        union |= mask
    write_image(union.astype(np.uint8) * 255, dst)


def write_ids(path: Path, ids: Iterable[str]) -> int:
    """Write one id a line; returns how many."""
    ids = list(ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return len(ids)
