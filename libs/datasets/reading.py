"""Reading frames and labels from disk into tensors, with one-line errors.

Frames are decoded with Pillow as RGB (as the release does) and returned as uint8
tensors [3, H, W]. Labels are interpreted by `libs.datasets.labels` (palette, 1-bit, two-level
and soft grey, 16-bit; the one rule training, inference and evaluation share) and returned as
float tensors [1, H, W] in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import DatasetFileError, DatasetReadError
from .labels import interpret_label


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


def read_label_array(path: str | Path) -> np.ndarray:
    """A saliency label as float32 HxW in [0, 1] (`libs.datasets.labels.interpret_label`); a
    missing, unreadable or uninterpretable file is a `DatasetConfigError` subclass naming it."""
    return interpret_label(open_image(path, "label"), path)


def read_label(path: str | Path, dataset: str = "") -> torch.Tensor:
    """A saliency label as a float tensor [1, H, W] in [0, 1] (`read_label_array`); `dataset` is
    accepted for the callers that name it and is not needed by the rules."""
    return torch.from_numpy(read_label_array(path)).unsqueeze(0)


def check_same_size(image: torch.Tensor, label: torch.Tensor, image_path: Path, label_path: Path) -> None:
    """Raise if a frame and its label differ in size."""
    if image.shape[-2:] != label.shape[-2:]:
        ih, iw = image.shape[-2:]
        lh, lw = label.shape[-2:]
        raise DatasetReadError(
            f"image {image_path} is {iw}x{ih} but its label {label_path} is {lw}x{lh} (width x height); "
            "they must be the same size"
        )
