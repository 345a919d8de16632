"""Faults and bad input (issue 16): failed writes, frames too small, resumes with other flags,
stale temporary files, unsafe checkpoints and flag spellings, each one clear line and nothing lost.

Disk-full, read-only and permission failures are faked by monkeypatching the calls
`libs.runtime.files.write_atomic` makes (tests run as root, where chmod stops no write).
"""
from __future__ import annotations

import csv
import errno
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_one_line_error
from PIL import Image

import evaluate
import generate_pseudo_labels as pseudo_script
import inference as inference_script
import train as train_script
import train_fgplg as train_fgplg_script
from libs.datasets.synthetic import generate_synthetic
from libs.engine.logs import LOG_COLUMNS, RunLogger
from libs.inference import InferenceOptions, SaliencyWriter
from libs.inference.runner import prepare_results_folder
from libs.networks.sizes import MIN_FRAME_SIZE, FrameSizeError, check_frame_size
from libs.runtime.errors import UserError
from libs.runtime.files import (
    FileWriteError,
    host_tag,
    is_stale_temporary,
    read_torch_file,
    remove_stale_temporaries,
    save_torch,
    temporary_owner,
    write_atomic,
)

FAULTS = [errno.ENOSPC, errno.EROFS, errno.EACCES]


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _raiser(code: int):
    def fail(*_args, **_kwargs):
        raise _oserror(code)
    return fail


# ---------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("code", FAULTS)
@pytest.mark.parametrize("where", ["write", "fsync", "replace", "create"])
def test_failed_write_keeps_the_old_file_and_names_path_and_reason(tmp_path, monkeypatch, code, where):
    target = tmp_path / "model.pth"
    save_torch({"w": torch.ones(3)}, target)
    if where == "write":
        def write(handle):
            handle.write(b"PK\x03\x04 half")
            raise _oserror(code)
        monkeypatch.setattr("libs.runtime.files.torch.save", lambda obj, handle: write(handle))
    elif where == "fsync":
        monkeypatch.setattr("libs.runtime.files.os.fsync", _raiser(code))
    elif where == "replace":
        monkeypatch.setattr("libs.runtime.files.os.replace", _raiser(code))
    else:
        monkeypatch.setattr("libs.runtime.files.tempfile.mkstemp", _raiser(code))
    with pytest.raises(FileWriteError) as info:
        save_torch({"w": torch.zeros(3)}, target)
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {target}: {os.strerror(code)}"
    assert torch.equal(read_torch_file(target)["w"], torch.ones(3))  # the last good file stays loadable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]  # no temporary file left


def test_path_through_a_file_or_onto_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileWriteError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        write_atomic(tmp_path / "file" / "sub" / "a.png", lambda handle: handle.write(b"x"))
    with pytest.raises(FileWriteError, match="Is a directory"):
        write_atomic(tmp_path, lambda handle: handle.write(b"x"))


def test_ctrl_c_while_writing_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def interrupted(handle):
        handle.write(b"new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, interrupted)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def dead_pid() -> int:
    """The id of a process that has ended (started and reaped here)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_a_dead_owners_temporaries_are_removed(tmp_path):
    sub = tmp_path / "video" / "clip"
    sub.mkdir(parents=True)
    host, dead = host_tag(), dead_pid()
    stale = [tmp_path / f".video_resume.pth.{host}.{dead}.k2_x9abc.rcrnet-tmp",
             sub / f".00001.png.{host}.{dead}.abcdefgh.rcrnet-tmp"]
    kept = [tmp_path / "notes.tmp", tmp_path / ".foo.tmp", tmp_path / f".a.png.{host}.{dead}.abcdefgh.tmp",
            tmp_path / f".a.png.{host}.{dead}.abc.rcrnet-tmp",
            tmp_path / f"a.png.{host}.{dead}.abcdefgh.rcrnet-tmp",
            # a live process's (another run writing here now), this process's, another host's, no owner
            tmp_path / f".b.png.{host}.{os.getppid()}.abcdefgh.rcrnet-tmp",
            tmp_path / f".c.png.{host}.{os.getpid()}.abcdefgh.rcrnet-tmp",
            tmp_path / f".d.png.other-host.{dead}.abcdefgh.rcrnet-tmp",
            tmp_path / ".e.png.abcdefgh.rcrnet-tmp", sub / "00001.png"]
    for path in stale + kept:
        path.write_bytes(b"x")
    (tmp_path / f".dir.{host}.{dead}.abcdefgh.rcrnet-tmp").mkdir()
    assert all(is_stale_temporary(p) for p in stale) and not any(is_stale_temporary(p) for p in kept)
    assert temporary_owner(stale[0]) == (host, dead) and temporary_owner(kept[-2]) is None
    assert remove_stale_temporaries(tmp_path) == [stale[0]]
    assert remove_stale_temporaries(tmp_path, recursive=True) == [stale[1]]
    assert all(p.exists() for p in kept) and (tmp_path / f".dir.{host}.{dead}.abcdefgh.rcrnet-tmp").is_dir()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_a_second_run_keeps_the_first_runs_temporary_file(tmp_path):
    """What write_atomic creates names this process; a cleanup by another process while the write
    is under way (a second run starting in the same folder) leaves it, and the write completes."""
    target = tmp_path / "b.png"
    seen = []

    def write(handle):
        (temporary,) = [p for p in tmp_path.iterdir() if p.name.startswith(".b.png.")]
        seen.append(temporary)
        code = ("import sys; from libs.runtime.files import remove_stale_temporaries; "
                f"sys.exit(len(remove_stale_temporaries({str(tmp_path)!r})))")
        assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
        assert temporary.exists()
        handle.write(b"x")

    write_atomic(target, write)
    assert target.read_bytes() == b"x" and temporary_owner(seen[0]) == (host_tag(), os.getpid())
    assert not seen[0].exists()


# ---------------------------------------------------------------------------- CSV log


def _raw_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_log_rows_are_whole_and_never_twice(tmp_path, monkeypatch):
    values = {"loss": 0.5, "MAE": 0.25, "lr": 1e-5, "frames": 4, "seconds": 1.0}
    logger = RunLogger(tmp_path, "video", tensorboard=False)
    logger.write(1, "train", values)
    logger.write(1, "val", {**values, "S": 0.7, "maxF": 0.6})
    good = (tmp_path / "video_log.csv").read_bytes()
    monkeypatch.setattr("libs.runtime.files.os.replace", _raiser(errno.ENOSPC))
    with pytest.raises(FileWriteError, match="No space left on device"):
        logger.write(2, "train", values)
    monkeypatch.undo()
    assert (tmp_path / "video_log.csv").read_bytes() == good  # no broken row
    # a killed run logged epoch 2 (and half a row, as an appending version could leave); resuming after
    # epoch 1 drops them before writing epoch 2 again
    with (tmp_path / "video_log.csv").open("a") as handle:
        handle.write("2025-01-01T00:00:00,2,train,0.4,0.2,,,1e-05,4,1.0\n2025-01-01T00:00:01,2,va")
    logger = RunLogger(tmp_path, "video", tensorboard=False, after=1)
    logger.write(2, "train", values)
    rows = _raw_rows(tmp_path / "video_log.csv")
    assert rows[0] == list(LOG_COLUMNS)
    assert [(r[1], r[2]) for r in rows[1:]] == [("1", "train"), ("1", "val"), ("2", "train")]
    # re-validating the resumed epoch (--eval-first) replaces its val row; a new run starts a new log
    RunLogger(tmp_path, "video", tensorboard=False, after=2, revalidate=True).write(2, "val", values)
    assert [(r[1], r[2]) for r in _raw_rows(tmp_path / "video_log.csv")[1:]][-2:] == [("2", "train"),
                                                                                      ("2", "val")]
    RunLogger(tmp_path, "video", tensorboard=False)
    assert _raw_rows(tmp_path / "video_log.csv") == [list(LOG_COLUMNS)]


# ---------------------------------------------------------------------------- saliency writer


def test_writer_counts_each_path_once():
    with SaliencyWriter(threads=0) as writer:
        pass
    assert writer.written == 0


def test_writer_thread_failure_surfaces_once_and_stops_the_pool(tmp_path, monkeypatch):
    from libs.inference import writer as writer_module

    real = writer_module.write_saliency

    def flaky(saliency, path, *args):
        if path.name == "03.png":
            raise FileWriteError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}")
        real(saliency, path, *args)

    monkeypatch.setattr(writer_module, "write_saliency", flaky)
    writer = SaliencyWriter(threads=2, max_pending=2)
    with pytest.raises(FileWriteError, match="03.png: No space left on device"):
        with writer:
            for k in range(40):
                writer.submit(np.full((8, 8), k, np.uint8), tmp_path / f"{k:02d}.png", 8, 8)
    assert writer._pool._shutdown
    for path in tmp_path.iterdir():  # whatever was written is a whole PNG; no temporary file is left
        assert path.suffix == ".png"
        with Image.open(path) as image:
            image.load()


# ---------------------------------------------------------------------------- frame sizes


def test_frame_size_boundary_in_the_library():
    check_frame_size(MIN_FRAME_SIZE, MIN_FRAME_SIZE)
    for height, width in ((MIN_FRAME_SIZE - 1, 448), (448, MIN_FRAME_SIZE - 1), (1, 1)):
        with pytest.raises(FrameSizeError, match=f"minimum of {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE}"):
            check_frame_size(height, width)
    with pytest.raises(FrameSizeError):
        prepare_results_folder(InferenceOptions(results_folder=Path("unused"), size=17))


@pytest.mark.parametrize("script", [train_script, train_fgplg_script, inference_script, pseudo_script])
def test_frame_size_boundary_in_every_script(script, capsys):
    message = f"--size: must be at least {MIN_FRAME_SIZE}, got {MIN_FRAME_SIZE - 1}: RCRNet's ResNet-50"
    assert_one_line_error(script.main, ["--size", str(MIN_FRAME_SIZE - 1)], capsys, message)
    assert script.build_parser().parse_args(["--size", str(MIN_FRAME_SIZE)]).size == MIN_FRAME_SIZE
    assert f"[an integer >= {MIN_FRAME_SIZE}]" in " ".join(script.build_parser().format_help().split())


# ---------------------------------------------------------------------------- flags


def test_pseudo_labels_take_dataset_split_pairs_like_inference(capsys):
    parse = pseudo_script.build_parser().parse_args
    select = pseudo_script.selected_datasets
    assert select(parse([])) == (("DAVIS2016", "train"), ("FBMS", "train"), ("VOS", "train"))
    assert select(parse(["--datasets", "FBMS:train"])) == (("FBMS", "train"),)
    assert select(parse(["--dataset", "FBMS", "--dataset", "VOS", "--split", "train"])) == (
        ("FBMS", "train"), ("VOS", "train"))
    assert select(parse(["--dataset", "FBMS", "--split", "train", "--dataset", "VOS", "--split", "val"])) == (
        ("FBMS", "train"), ("VOS", "val"))
    for argv, message in ((["--dataset", "FBMS", "--datasets", "VOS:train"], "not both"),
                          (["--dataset", "A", "--dataset", "B", *("--split", "x") * 3],
                           "got 2 --dataset and 3 --split"),
                          (["--split", "train"], "got 0 --dataset")):
        assert_one_line_error(pseudo_script.main, argv, capsys, message)


@pytest.mark.parametrize("script", [train_script, train_fgplg_script, inference_script, pseudo_script,
                                    evaluate])
def test_help_states_choices_and_ranges(script):
    text = " ".join(script.build_parser().format_help().split())
    assert "-j N, --num-workers N, --num_workers N" in text
    assert "[an integer >= 0]" in text or "[an integer >= 1]" in text
    if script is not evaluate:
        assert "--os OS" in text and "8 or 16" in text and "{" in text  # choices shown


# ---------------------------------------------------------------------------- training: resume and files


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    return generate_synthetic(out, seed=4, height=32, width=40, videos=1, frames=6, vos_frames=16, images=4)


class Evil:
    """Runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.slow
def test_resume_flags_logs_temporaries_and_unsafe_files(synthetic, tmp_path, capsys, monkeypatch):
    save = tmp_path / "run"
    save.mkdir()
    stale = save / f".image_log.csv.{host_tag()}.{dead_pid()}.a1b2c3d4.rcrnet-tmp"
    kept = [save / "notes.tmp", save / ".foo.tmp", save / ".image_log.csv.a1b2c3d4.tmp"]
    for path in [stale, *kept]:
        path.write_text("x")

    def train(*extra: str) -> list[str]:
        return ["--stage", "image", "--data", str(synthetic.parent), "--dataset-config", str(synthetic),
                "--save-folder", str(save), "--size", "32", "-j", "0", "--device", "cpu", "--seed", "0",
                "--checkpoint", "none", "--batch-size", "2", *extra]

    assert train_script.main(train("--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert f"removed {stale}" in out and not stale.exists() and all(p.exists() for p in kept)
    state = torch.load(save / "image_resume.pth", weights_only=True)
    assert state["settings"] == {"--lr": 1e-4, "--batch-size": 2, "--size": 32, "--os": 16}

    # flags that change what the model is trained on are refused; so is a resume with nothing to do
    assert_one_line_error(train_script.main, train("--epochs", "2", "--size", "64", "--resume"), capsys,
                          "was trained with --size 32, this run asks for --size 64")
    assert_one_line_error(train_script.main, train("--epochs", "1", "--resume"), capsys,
                          "nothing left to do: ")

    # a checkpoint that would run code when unpickled is refused, in one line, without running it
    marker = tmp_path / "pwned"
    for name, save_evil in (("evil.pth", lambda obj, f: torch.save(obj, f)),
                            ("evil.pkl", lambda obj, f: pickle.dump(obj, f.open("wb"), protocol=2))):
        save_evil({"format": "rcrnet-resume-1", "payload": Evil(marker)}, tmp_path / name)
        assert_one_line_error(train_script.main, train("--epochs", "2", "--resume", str(tmp_path / name)),
                              capsys, "holds pickled objects other than tensors")
        assert_one_line_error(train_script.main, ["--checkpoint", str(tmp_path / name), "--stage", "image",
                                                  "--data", str(synthetic.parent), "--dataset-config",
                                                  str(synthetic), "--size", "32", "--device", "cpu"],
                              capsys, "holds pickled objects other than tensors")
        assert not marker.exists()

    # a killed run logged epoch 2 before dying; the resume drops that row, applies the new lr and
    # batch size and says what it loaded (no "fresh initialisation" line)
    with (save / "image_log.csv").open("a") as handle:
        handle.write("2025-01-01T00:00:00,2,train,0.4,0.2,,,1e-05,4,1.0\n")
    assert_one_line_error(train_script.main, train("--epochs", "2", "--batch-size", "1", "--resume"), capsys,
                          "--batch-size 1: the image stage trains BatchNorm")
    assert train_script.main(train("--epochs", "2", "--lr", "5e-5", "--batch-size", "4", "--resume")) == 0
    out = capsys.readouterr().out
    assert "--lr 5e-05 applied to the optimizer (the resumed run used 0.0001)" in out
    assert "--batch-size 4 applied (the resumed run used 2)" in out
    assert "fresh initialisation" not in out
    assert "resumed from" in out and "ImageModel weights, optimizer, loss scaler and random states after " \
                                    "epoch 1" in out
    rows = _raw_rows(save / "image_log.csv")[1:]
    assert [(r[1], r[2]) for r in rows] == [("1", "train"), ("1", "val"), ("2", "train"), ("2", "val")]
    assert float(rows[2][LOG_COLUMNS.index("lr")]) == 5e-5

    # a full disk while saving: one line, and the last good checkpoint and resume file stay loadable
    before = {name: (save / name).read_bytes() for name in ("image_resume.pth", "image_log.csv")}
    monkeypatch.setattr("libs.runtime.files.os.fsync", _raiser(errno.ENOSPC))
    assert_one_line_error(train_script.main, train("--epochs", "3", "--resume"), capsys,
                          "No space left on device")
    monkeypatch.undo()
    assert {name: (save / name).read_bytes() for name in before} == before
    assert read_torch_file(save / "image_current_best_model.pth")
    assert not [p for p in save.iterdir() if p.name.endswith(".rcrnet-tmp")]


@pytest.mark.slow  # train.py reaches this error only after its start-up work (over a minute of CPU)
def test_save_folder_that_is_a_file(synthetic, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert_one_line_error(train_script.main, [
        "--stage", "image", "--data", str(synthetic.parent), "--dataset-config", str(synthetic),
        "--save-folder", str(tmp_path / "file"), "--size", "32", "-j", "0", "--device", "cpu",
        "--checkpoint", "none", "--epochs", "1"], capsys,
        f"--save-folder {tmp_path / 'file'}: a file, not a folder")


def test_exit_process_flushes_output_and_keeps_the_status(tmp_path):
    """The scripts end through libs.cli.exit_process (no interpreter teardown): what was printed
    to piped stdout and stderr, and what a logger wrote to a file, is all there."""
    log = tmp_path / "run.log"
    code = ("import logging, sys\n"
            "from libs.cli import exit_process\n"
            f"logging.basicConfig(filename={str(log)!r}, level=logging.INFO)\n"
            "logging.info('logged')\n"
            "print('out', end='')\n"
            "print('err', end='', file=sys.stderr)\n"
            "exit_process(3)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out", "err")
    assert "logged" in log.read_text()


# ---------------------------------------------------------------------------- truncated videos


def _video(path: Path, frames: int = 10) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), index * 20, np.uint8))
    writer.release()
    return path


def test_a_truncated_video_is_an_error_naming_both_counts(tmp_path):
    from libs.datasets import get_transforms
    from libs.inference.sources import VideoFileClips

    transform = get_transforms(False, 32)["test"]
    whole = _video(tmp_path / "whole.avi")
    assert sum(len(clip) for clip in VideoFileClips(whole, transform, clip_len=5)) == 10
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.8)])  # the header still declares 10 frames
    clips = []
    with pytest.raises(UserError, match=f"--input {cut}: the video declares 10 frames but only "
                                        "(\\d) could be decoded") as error:
        for clip in VideoFileClips(cut, transform, clip_len=2):
            clips.append(clip)
    decoded = int(error.value.args[0].split("only ")[1].split()[0])
    assert 0 < decoded < 10 and len(clips) == (decoded + 1) // 2  # the decoded frames' clips came first
