"""Every value of a dataset config is type-checked: a wrong one is one line naming the file, the
entry and the key, in every script that reads the config."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error

import evaluate
import generate_pseudo_labels as pseudo_script
import inference as inference_script
import train as train_script
import train_fgplg as train_fgplg_script
from libs.datasets.config import DatasetConfigError, load_dataset_config
from libs.networks import VideoModel

VIDEO = """\
Vid:
    image_dir: JPEGImages
    label_dir: Annotations
    image_ext: .jpg
    label_ext: .png
    default_label_interval: 1
    video_split:
        train: ['a', 'b']
        val: ['c']
"""

BAD = [
    ("split not a list", VIDEO.replace("val: ['c']", "val: 42"),
     "Vid.video_split.val must be a list of video names or a folder pattern, got 42 (int)"),
    ("video name a number", VIDEO.replace("['a', 'b']", "['a', 1]"),
     "Vid.video_split.train[1] must be a video name (text; quote names such as '01'), got 1 (int)"),
    ("split names", VIDEO.replace("val: ['c']", "2016: ['c']"), "Vid.video_split: split names must be text"),
    ("video_split a list", VIDEO.replace("video_split:\n        train: ['a', 'b']\n        val: ['c']",
                                         "video_split: [a, b]"),
     "Vid.video_split must be a non-empty mapping"),
    ("interval a boolean", VIDEO.replace("default_label_interval: 1", "default_label_interval: true"),
     "Vid.default_label_interval must be a positive integer, got True (bool)"),
    ("interval text", VIDEO.replace("default_label_interval: 1", "default_label_interval: '5'"),
     "Vid.default_label_interval must be a positive integer, got '5' (str)"),
    ("folder a list", VIDEO.replace("image_dir: JPEGImages", "image_dir: [JPEGImages]"),
     "Vid.image_dir must be text, got ['JPEGImages'] (list)"),
    ("extension a number", VIDEO.replace("label_ext: .png", "label_ext: 5"), "Vid.label_ext must be text"),
    ("subfolder a mapping", VIDEO + "    image_subdir: {a: 1}\n", "Vid.image_subdir must be text"),
    ("entry a list", "Vid: [1, 2]\n", "entry 'Vid' must be a mapping of keys"),
    ("dataset name a number", "2016:\n" + VIDEO.split("\n", 1)[1], "dataset names must be text, got 2016"),
]


@pytest.mark.parametrize("case, text, message", BAD, ids=[case for case, _, _ in BAD])
def test_wrong_values_name_the_file_and_the_key(tmp_path, case, text, message):
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    with pytest.raises(DatasetConfigError) as error:
        load_dataset_config(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), case
    assert "\n" not in str(error.value)


def test_text_that_is_not_utf8(tmp_path):
    path = tmp_path / "datasets.yaml"
    path.write_bytes(VIDEO.replace("'c'", "'caf\xe9'").encode("latin-1"))
    with pytest.raises(DatasetConfigError, match=f"dataset config {path}: not UTF-8 text \\(byte 0xe9 at "
                                                 "offset \\d+\\); save it as UTF-8"):
        load_dataset_config(path)


def test_the_repository_config_passes():
    config = Path(__file__).resolve().parents[1] / "config" / "datasets.yaml"
    assert "DAVIS2016" in load_dataset_config(config)


@pytest.fixture
def bad_config(tmp_path) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(VIDEO.replace("val: ['c']", "val: {val: 42}"))
    (tmp_path / "Vid").mkdir()
    return path


@pytest.mark.parametrize("script, argv", [
    (train_script, ["--checkpoint", "none"]),
    (train_fgplg_script, ["--flow", "dis", "--checkpoint", "none"]),
    (pseudo_script, ["--datasets", "Vid:train", "--warp-only", "--flow", "dis"]),
    (inference_script, ["--dataset", "Vid", "--split", "val"]),
    (evaluate, ["--dataset", "Vid", "--split", "val", "--results-folder", "."]),
], ids=["train", "train_fgplg", "generate_pseudo_labels", "inference", "evaluate"])
def test_every_script_reports_it_in_one_line(bad_config, tmp_path, capsys, script, argv):
    common = ["--data", str(tmp_path), "--dataset-config", str(bad_config)]
    if script is not evaluate:
        common += ["--device", "cpu"]
    if script in (train_script, train_fgplg_script):
        common += ["--save-folder", str(tmp_path / "run")]
    if script is pseudo_script:
        common += ["--pseudo-label-folder", str(tmp_path / "labels")]
    if script is inference_script:
        model = tmp_path / "video.pth"
        torch.save(VideoModel().state_dict(), model)
        common += ["--results-folder", str(tmp_path / "results"), "--checkpoint", str(model)]
    assert_one_line_error(script.main, [*common, *argv], capsys,
                          f"{bad_config}: Vid.video_split.val must be a list of video names")
