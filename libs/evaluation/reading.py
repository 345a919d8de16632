"""Reading saliency maps and labels as the 8-bit grey arrays the metrics score."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from libs.datasets.config import DatasetConfigError
from libs.datasets.labels import interpret_label
from libs.datasets.reading import open_image

from .errors import EvaluationError
from .matlab import imresize as matlab_imresize


def _open(path: Path, what: str) -> Image.Image:
    """The decoded image, its file closed; a missing or unreadable file is an EvaluationError naming it."""
    try:
        return open_image(path, what)
    except DatasetConfigError as err:
        raise EvaluationError(str(err)) from None


def _grey8(image: Image.Image) -> tuple[np.ndarray, bool]:
    """An image as uint8 grey, and whether it had to be converted (colour, alpha, 16-bit...)."""
    if image.mode == "L":
        return np.asarray(image), False
    if image.mode == "1":
        return np.asarray(image.convert("L")), False
    if image.mode.startswith("I"):
        deep = np.asarray(image).astype(np.float64)
        return np.round(np.clip(deep, 0, 65535) / 257.0).astype(np.uint8), True
    return np.asarray(image.convert("L")), True


def read_prediction(
    path: str | Path, size: tuple[int, int] | None = None, resize: str = "bilinear"
) -> tuple[np.ndarray, bool, bool]:
    """A saliency map as uint8 HxW grey, resized to `size` (H, W) if it differs.

    `resize` is "bilinear" (Pillow) or "bicubic-matlab" (MATLAB's imresize, as DAVSOD's
    main.m:101 does). Colour, palette, alpha and 16-bit maps are converted to 8-bit grey
    (luma, ITU-R 601). Returns (map, converted, resized).
    """
    image = _open(Path(path), "prediction")
    pred, converted = _grey8(image)
    resized = size is not None and pred.shape != tuple(size)
    if resized:
        height, width = size
        if resize == "bicubic-matlab":
            pred = matlab_imresize(pred, (height, width))
        else:
            pred = np.asarray(Image.fromarray(pred).resize((width, height), Image.BILINEAR))
    return np.ascontiguousarray(pred), converted, resized


def read_ground_truth(path: str | Path) -> tuple[np.ndarray, bool]:
    """A label as uint8 HxW (salient 255), and whether it was not plain 8-bit grey read as it is.

    The label is interpreted as training reads it (`libs.datasets.labels`: palette index > 0,
    two-level masks such as 0/1 and 0/128 binary, soft grey kept), then scaled to 0..255 for
    PySODMetrics (which binarises at > 128); a label it cannot interpret is an EvaluationError.
    """
    image = _open(Path(path), "ground truth")
    try:
        label = interpret_label(image, path)
    except DatasetConfigError as err:
        raise EvaluationError(str(err)) from None
    gt = np.round(label * 255.0).astype(np.uint8)
    converted = image.mode != "1" and (image.mode != "L" or not np.array_equal(gt, np.asarray(image)))
    return gt, converted
