"""What a saliency label file means: the one reader that training, inference and evaluation share.

A label is read into a float array in [0, 1] (1: salient), by these rules on the image's mode:

- palette (`P`, `PA`; DAVIS-style masks): every index above 0 is salient, whatever the palette's
  colours (index 0 is the background in DAVIS, SegTrack and the pseudo-label folders);
- 1-bit (`1`): as it is (0 or 1);
- 8-bit grey (`L`, `LA`): a mask with exactly two levels, 0 and one other value (or a single
  level), is binary: 0/255, 0/1 and 0/128 masks all mean background/salient; any other mask is
  soft, each value divided by 255 (as the release's loader did), so a soft map that happens to
  hold only two levels reads as binary;
- colour (`RGB`, `RGBA`): converted to grey (ITU-R 601 luma, as the release did) and read as
  8-bit grey, when that is unambiguous: grey stored as colour (channels within `GREY_TOLERANCE`
  of each other, as lossy compression leaves them) or black and one colour (one object);
- 16-bit grey (`I;16*`, and `I` holding values up to 65535): the same two-level rule, else
  divided by 65535;
- 32-bit float grey (`F`): used as it is when every value lies in [0, 1];
- alpha channels (`LA`, `RGBA`, `PA`) are ignored: masks are stored in the colour values.

Anything else cannot be interpreted without guessing, and is one `DatasetReadError` naming the
file: a colour label of several colours (which of them would be salient?), CMYK/YCbCr/LAB/HSV
images, 16-bit values above 65535 or below 0, and float values outside [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .config import DatasetReadError

GREY_MODES = frozenset({"L", "LA"})
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBX"})
DEEP_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# the most two colour channels of one pixel of a grey label may differ (lossy compression)
GREY_TOLERANCE = 8


def _two_level_or_scaled(values: np.ndarray, maximum: float) -> np.ndarray:
    """Binary when `values` hold one level, or 0 and exactly one other level; else `values / maximum`."""
    levels = np.unique(values)
    if len(levels) == 1 or (len(levels) == 2 and levels[0] == 0):
        return (values > 0).astype(np.float32)
    return (values.astype(np.float64) / maximum).astype(np.float32)


def _colour(image: Image.Image, path: str | Path) -> np.ndarray:
    """A colour label's grey levels (ITU-R 601 luma, as the release converted), when that is
    unambiguous: grey stored as colour (channels within `GREY_TOLERANCE`, as lossy compression
    leaves them), or black and one colour."""
    rgb = np.asarray(image.convert("RGB")).astype(np.int16)
    spread = int((rgb.max(axis=-1) - rgb.min(axis=-1)).max()) if rgb.size else 0
    if spread > GREY_TOLERANCE:
        colours = np.unique(rgb.reshape(-1, 3), axis=0)
        if len(colours) > 2 or (len(colours) == 2 and colours[0].any()):
            raise DatasetReadError(f"label {path}: a colour image ({image.mode}) with {len(colours)} "
                                   "colours, so which pixels are salient is not defined; save it as grey "
                                   "(0/255) or as a palette image (index 0 background)")
    return np.asarray(image.convert("L"))


def interpret_label(image: Image.Image, path: str | Path) -> np.ndarray:
    """The label `image` (read from `path`, named in errors) as float32 HxW in [0, 1], by the
    rules of this module's docstring; a label it cannot interpret is a `DatasetReadError`."""
    mode = image.mode
    if mode in ("P", "PA"):
        indices = np.asarray(image if mode == "P" else image.getchannel(0))
        return (indices > 0).astype(np.float32)
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode in GREY_MODES:
        return _two_level_or_scaled(np.asarray(image.getchannel(0)), 255.0)
    if mode in COLOUR_MODES:
        return _two_level_or_scaled(_colour(image, path), 255.0)
    if mode in DEEP_MODES:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DatasetReadError(f"label {path}: {mode} values from {values.min()} to {values.max()}, "
                                   "outside 16 bits (0..65535)")
        return _two_level_or_scaled(values, 65535.0)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise DatasetReadError(f"label {path}: float values outside [0, 1]")
        return values.copy()
    raise DatasetReadError(f"label {path}: cannot interpret an image of mode {mode} as a saliency mask; "
                           "save it as grey (0/255), 1-bit or palette (index 0 background)")
