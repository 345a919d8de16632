"""train.py end to end on tiny synthetic data: both stages, resume, torchrun DDP, flags and errors."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error

import train as train_script
from libs.datasets.synthetic import generate_synthetic
from libs.engine import read_log

ROOT = Path(__file__).resolve().parents[1]
RELEASE_FLAGS = ("--data", "--checkpoint", "--dataset-config", "--save-folder", "--pseudo-label-folder", "-j",
                 "--batch-size", "--backup-epochs", "--epochs", "--start-epoch", "--eval-first", "--lr",
                 "--size", "--os", "--clip_len")
NEW_FLAGS = ("--stage", "--resume", "--precision", "--device", "--seed", "--clip-augment", "--plot", "--demo")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    return generate_synthetic(out, seed=4, height=32, width=40, videos=1, frames=6, vos_frames=16, images=4)


def run(args: list[str], timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), **env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=environ)


def train(synthetic: Path, save: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = run(["train.py", "--data", str(synthetic.parent), "--dataset-config", str(synthetic),
                "--save-folder", str(save), "--size", "32", "-j", "0", "--device", "cpu", "--seed", "0",
                *extra])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc


def test_help_explains_every_flag():
    proc = run(["train.py", "--help"])
    assert proc.returncode == 0
    for flag in RELEASE_FLAGS + NEW_FLAGS:
        assert flag in proc.stdout, flag


@pytest.mark.slow
def test_bad_flags_and_missing_files_are_one_line_errors(synthetic, tmp_path, capsys):
    data = ["--data", str(synthetic.parent), "--dataset-config", str(synthetic),
            "--save-folder", str(tmp_path)]
    # the script itself, in a process of its own
    missing = str(tmp_path / "image_pretrained_model.pth")
    for argv, message in ((["--stage", "sound"], "invalid choice"),
                          ([*data, "--checkpoint", missing], "no such file")):
        proc = run(["train.py", *argv, "--device", "cpu"])
        assert proc.returncode == 2, (argv, proc.stderr[-2000:])
        assert message in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    # more cases through its main function (same code, without starting Python each time)
    cases = [
        (["--lr", "-1"], "must be a positive number"),
        (["--os", "32"], "must be 8 or 16"),
        (["--data", str(tmp_path / "nowhere"), "--dataset-config", str(synthetic), "--checkpoint", "none"],
         "dataset root not found"),
        ([*data, "--checkpoint", "none", "--pseudo-label-folder", str(tmp_path / "nope")],
         "pseudo-label folder not found"),
        ([*data, "--checkpoint", "none", "--resume"], "no resume file"),
        ([*data, "--checkpoint", "none", "--device", "cuda:7"], "--device"),
    ]
    for argv, message in cases:
        argv = [*argv, "--device", "cpu"] if "--device" not in argv else argv
        assert_one_line_error(train_script.main, argv, capsys, message)


@pytest.mark.slow
def test_image_stage_then_video_stage(synthetic, tmp_path):
    image = tmp_path / "image"
    proc = train(synthetic, image, "--stage", "image", "--checkpoint", "none", "--batch-size", "2",
                 "--epochs", "1", "--eval-first")
    assert "S-measure" in proc.stdout
    best = image / "image_current_best_model.pth"
    assert best.is_file() and (image / "image_epoch-1.pth").is_file()
    # the video stage starts from the image stage's file, as from the release's image_pretrained_model.pth
    video = tmp_path / "video"
    proc = train(synthetic, video, "--checkpoint", str(best), "--batch-size", "2", "--epochs", "1", "--plot",
                 "--precision", "bf16", "--clip-augment")
    assert "backbone from" in proc.stdout
    for name in ("video_current_best_model.pth", "video_epoch-1.pth", "video_resume.pth", "video_log.csv",
                 "video_log.png"):
        assert (video / name).is_file(), name
    rows = read_log(video / "video_log.csv")
    assert [(r["epoch"], r["phase"]) for r in rows] == [(1, "train"), (1, "val")]
    state = torch.load(video / "video_current_best_model.pth", weights_only=True)
    assert any(k.startswith("convgru_forward.") for k in state)


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_weights(synthetic, tmp_path):
    common = ("--checkpoint", "none")
    train(synthetic, tmp_path / "whole", *common, "--epochs", "2")
    train(synthetic, tmp_path / "parts", *common, "--epochs", "1")
    proc = train(synthetic, tmp_path / "parts", *common, "--epochs", "2", "--resume")
    assert "resumed from" in proc.stdout
    whole = torch.load(tmp_path / "whole" / "video_epoch-2.pth", weights_only=True)
    parts = torch.load(tmp_path / "parts" / "video_epoch-2.pth", weights_only=True)
    assert whole.keys() == parts.keys()
    for key in whole:
        assert torch.equal(whole[key], parts[key]), key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes(synthetic, tmp_path):
    save = tmp_path / "ddp"
    proc = run(["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
                "train.py", "--data", str(synthetic.parent), "--dataset-config", str(synthetic),
                "--save-folder", str(save), "--size", "32", "-j", "0", "--device", "cpu", "--seed", "0",
                "--checkpoint", "none", "--epochs", "1"], OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes (gloo)" in proc.stdout
    assert proc.stdout.count("epoch 1/1 train") == 1  # rank 0 logs alone
    rows = read_log(save / "video_log.csv")
    assert [(r["epoch"], r["phase"]) for r in rows] == [(1, "train"), (1, "val")]
    state = torch.load(save / "video_resume.pth", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
