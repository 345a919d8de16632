"""Reading frames and labels from disk into tensors, with one-line errors.

Frames are decoded with Pillow as RGB (as the release does) and returned as uint8
tensors [3, H, W]. Labels are read as grey levels, scaled to [0, 1] when their maximum
exceeds 1 (the release's rule: 0/255 masks become 0/1, 0/1 masks stay), and returned as
float tensors [1, H, W].
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import DatasetFileError, DatasetReadError

# Label modes that are single-channel grey already; anything else is converted to grey
# ("L") as the release does, with one warning per dataset.
_GREY_MODES = frozenset({"L", "1"})
_warned: set[str] = set()


def open_image(path: str | Path, what: str = "image") -> Image.Image:
    """The decoded image at `path`, its file closed; a missing file is a DatasetFileError and an
    unreadable one a DatasetReadError, each naming `what` and the path."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"{what} not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetReadError(f"cannot read {what} {path}: {err}") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetReadError(f"cannot read image {path}: {err}") from None
    return height, width


def read_image(path: str | Path) -> torch.Tensor:
    """An RGB frame as a uint8 tensor [3, H, W]."""
    image = open_image(path, "image")
    try:
        array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as err:
        raise DatasetReadError(f"cannot read image {path}: {err}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def read_label(path: str | Path, dataset: str = "") -> torch.Tensor:
    """A saliency label as a float tensor [1, H, W] in [0, 1].

    Labels that are not single-channel grey (RGB, palette, 16-bit...) are converted to
    8-bit grey like the release does; the first such label of each dataset is reported
    with a warning, since a colour or palette mask may not mean what was intended.
    """
    path = Path(path)
    label = open_image(path, "label")
    if label.mode not in _GREY_MODES:
        key = dataset or str(path.parent)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(
                f"label {path} has mode {label.mode!r}, not single-channel grey: converting to grey "
                f"(reported once{' for dataset ' + repr(dataset) if dataset else ''})",
                stacklevel=2,
            )
    try:
        array = np.asarray(label.convert("L"), dtype=np.float32)
    except (OSError, ValueError) as err:
        raise DatasetReadError(f"cannot read label {path}: {err}") from None
    if array.max() > 1:
        array = array / 255.0
    return torch.from_numpy(array.copy()).unsqueeze(0)


def check_same_size(image: torch.Tensor, label: torch.Tensor, image_path: Path, label_path: Path) -> None:
    """Raise if a frame and its label differ in size."""
    if image.shape[-2:] != label.shape[-2:]:
        ih, iw = image.shape[-2:]
        lh, lw = label.shape[-2:]
        raise DatasetReadError(
            f"image {image_path} is {iw}x{ih} but its label {label_path} is {lw}x{lh} (width x height); "
            "they must be the same size"
        )
