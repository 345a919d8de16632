"""Limits checked before memory is allocated: runs that cannot fit are refused in one line with the
estimate and the memory available, and clips far longer than their video are refused at once."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error
from PIL import Image

import inference as inference_script
import train as train_script
from libs.datasets.synthetic import generate_synthetic
from libs.networks import VideoModel
from libs.runtime import limits
from libs.runtime.errors import UserError
from libs.runtime.limits import (
    MemoryLimitError,
    available_memory,
    check_clip_length,
    check_memory,
    check_run_memory,
    estimate_memory,
    human,
)


def test_the_estimate_grows_with_pixels_and_frames():
    small = estimate_memory(size=448, frames=4, training=False, what="")
    assert estimate_memory(size=896, frames=4, training=False, what="").bytes - small.bytes == \
        3 * (small.bytes - limits.INFERENCE_FIXED_BYTES)
    assert estimate_memory(size=448, frames=4, training=True, what="").bytes > 4 * small.bytes
    assert (human(512), human(3 * 1024 ** 3), human(2.5 * 1024 ** 4)) == ("512 B", "3.0 GB", "2.5 TB")


def test_available_memory_is_read_on_the_cpu():
    available = available_memory("cpu")
    assert available is not None and available > 0


def test_a_run_above_the_available_memory_is_refused(monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda device: 4 * 1024 ** 3)
    check_run_memory("cpu", size=448, batch_size=1, clip_len=4, training=False)  # about 1.1 GB: fits
    with pytest.raises(MemoryLimitError) as error:
        check_run_memory("cpu", size=448, batch_size=1, clip_len=5000, training=True)
    assert str(error.value) == ("--size 448, --clip-len 5000, --batch-size 1: this run needs about 3.9 TB of "
                                "memory (estimated), this machine has 4.0 GB available; lower these values")
    with pytest.raises(MemoryLimitError, match="^--size 100000, --batch-size 8: .* TB"):
        check_run_memory("cpu", size=100000, batch_size=8, clip_len=None, training=True)
    # where the amount cannot be read, nothing is refused
    monkeypatch.setattr(limits, "available_memory", lambda device: None)
    check_memory(estimate_memory(size=100000, frames=1, training=True, what="x"))


def test_clips_far_longer_than_the_video():
    check_clip_length(4, 2, "--input v")  # shorter than the usual clip: padded as the release does
    check_clip_length(10, 10, "--input v")
    check_clip_length(100000, 0, "--input v")  # the length is not known
    with pytest.raises(UserError, match=r"^--clip-len 100000 is longer than --input v \(10 frames\): each "
                                        r"clip would repeat its last frame 99990 times; use --clip-len 10 or "
                                        r"less$"):
        check_clip_length(100000, 10, "--input v")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "video.pth"
    torch.save(VideoModel().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def ten_frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ten")
    for index in range(10):
        Image.fromarray(np.full((40, 48, 3), index * 20, np.uint8)).save(folder / f"{index:02d}.jpg")
    return folder


@pytest.mark.parametrize("flags, message", [
    (["--clip-len", "20", "--size", "32"], "--clip-len 20 is longer than --input"),
    (["--clip-len", "100000", "--size", "32"], "--size 32, --clip-len 100000, --batch-size 1: this run "),
    (["--size", "100000"], "--size 100000, --clip-len 4, --batch-size 1: this run needs about "),
])
def test_inference_refuses_at_once(checkpoint, ten_frames, tmp_path, capsys, flags, message):
    argv = ["--input", str(ten_frames), "--checkpoint", str(checkpoint), "--results-folder",
            str(tmp_path / "r"), "--device", "cpu", "-j", "0", *flags]
    start = time.perf_counter()
    assert_one_line_error(inference_script.main, argv, capsys, message)
    assert time.perf_counter() - start < 60 and not list((tmp_path / "r").rglob("*.png"))


def test_training_refuses_before_touching_the_save_folder(tmp_path, capsys):
    config = generate_synthetic(tmp_path / "data", seed=1, height=32, width=40, videos=1, frames=6,
                                vos_frames=16, images=4)
    save = tmp_path / "run"
    assert_one_line_error(train_script.main, [
        "--data", str(config.parent), "--dataset-config", str(config), "--save-folder", str(save),
        "--clip-len", "5000", "--checkpoint", "none", "--device", "cpu"], capsys,
        "--size 448, --clip-len 5000, --batch-size 1: this run needs about ")
    assert not save.exists()
