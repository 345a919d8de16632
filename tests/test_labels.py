"""One label reader (`libs.datasets.labels`): every kind of mask file, read by training and by
evaluation, means the same thing; a mask that cannot be interpreted is one error naming the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from libs.datasets.config import DatasetReadError
from libs.datasets.reading import read_label, read_label_array
from libs.evaluation.errors import EvaluationError
from libs.evaluation.reading import read_ground_truth

# a 4x6 object mask: the left half salient
OBJECT = np.zeros((4, 6), dtype=bool)
OBJECT[:, :3] = True
SOFT = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10  # 0..230: many levels


def _palette(path: Path) -> None:
    image = Image.fromarray(OBJECT.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # DAVIS style: index 1 is dark red
    image.save(path)


def _grey(path: Path, high: int) -> None:
    Image.fromarray(OBJECT.astype(np.uint8) * np.uint8(high), mode="L").save(path)


def _sixteen(path: Path, values: np.ndarray) -> None:
    Image.fromarray(values.astype(np.uint16)).save(path)


BINARY_KINDS = {
    "palette": _palette,
    "1-bit": lambda path: Image.fromarray(OBJECT).save(path),
    "grey 0/255": lambda path: _grey(path, 255),
    "grey 0/1": lambda path: _grey(path, 1),
    "grey 0/128": lambda path: _grey(path, 128),
    "16-bit 0/65535": lambda path: _sixteen(path, OBJECT * 65535),
    "16-bit 0/1": lambda path: _sixteen(path, OBJECT * 1),
    "grey as RGB": lambda path: Image.fromarray(np.repeat(OBJECT[..., None] * np.uint8(255), 3, axis=2))
    .save(path),
    "grey + alpha": lambda path: Image.fromarray(OBJECT.astype(np.uint8) * np.uint8(255)).convert("LA")
    .save(path),
    "black and one colour": lambda path: Image.fromarray(
        (OBJECT[..., None] * np.array([200, 30, 30])).astype(np.uint8)).save(path),
}


@pytest.mark.parametrize("kind", sorted(BINARY_KINDS))
def test_binary_masks_mean_the_object_in_training_and_evaluation(tmp_path, kind):
    path = tmp_path / "mask.png"
    BINARY_KINDS[kind](path)
    label = read_label(path)
    assert label.shape == (1, 4, 6) and label.dtype.is_floating_point
    assert np.array_equal(label[0].numpy(), OBJECT.astype(np.float32)), kind
    gt, _ = read_ground_truth(path)
    assert gt.dtype == np.uint8 and np.array_equal(gt, OBJECT.astype(np.uint8) * 255), kind


def test_soft_masks_are_scaled_by_their_depth(tmp_path):
    Image.fromarray(SOFT, mode="L").save(tmp_path / "soft8.png")
    _sixteen(tmp_path / "soft16.png", SOFT.astype(np.uint16) * 257)
    for name in ("soft8.png", "soft16.png"):
        label = read_label_array(tmp_path / name)
        np.testing.assert_allclose(label, SOFT / 255.0, rtol=0, atol=1e-6)
        gt, _ = read_ground_truth(tmp_path / name)
        assert np.array_equal(gt, SOFT), name  # evaluation scores the same grey levels
    gt, converted = read_ground_truth(tmp_path / "soft8.png")
    assert not converted  # plain 8-bit grey is used as it is
    # a constant mask: all background, or all object
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(np.full((4, 6), 255, np.uint8)).save(tmp_path / "full.png")
    assert read_label_array(tmp_path / "empty.png").max() == 0
    assert read_label_array(tmp_path / "full.png").min() == 1


def _colours(path: Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :2] = (255, 0, 0)
    rgb[:, 4:] = (0, 255, 0)  # two objects in two colours: which is salient?
    Image.fromarray(rgb).save(path)


@pytest.mark.parametrize("kind, write, message", [
    ("several colours", _colours, "a colour image (RGB) with 3 colours"),
    ("CMYK", lambda path: Image.new("CMYK", (6, 4)).save(path, format="JPEG"),
     "cannot interpret an image of mode CMYK"),
    ("float outside [0, 1]", lambda path: Image.fromarray(np.full((4, 6), 3.0, np.float32)).save(path,
                                                                                                format="TIFF"),
     "float values outside [0, 1]"),
])
def test_masks_that_cannot_be_interpreted_are_one_error_naming_the_file(tmp_path, kind, write, message):
    path = tmp_path / "mask.png"
    write(path)
    with pytest.raises(DatasetReadError) as caught:
        read_label(path)
    text = str(caught.value)
    assert str(path) in text and message in text and "\n" not in text, kind
    with pytest.raises(EvaluationError, match="cannot interpret|colour image|outside"):
        read_ground_truth(path)
