"""inference.py and libs.inference: release checkpoints, output layout and sizes, resume, --input."""
from __future__ import annotations

import io
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_pil_image

import inference
from libs.datasets.synthetic import generate_synthetic
from libs.inference import Predictor, SaliencyWriter, resize_to_original, saliency_to_uint8, save_atomic
from libs.networks import VideoModel
from libs.runtime.files import host_tag
from libs.runtime.plan import plan_run

ROOT = Path(__file__).resolve().parents[1]
SIZE = "32"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A tiny synthetic dataset set; returns its config path (data root = its folder)."""
    out = tmp_path_factory.mktemp("synthetic") / "data"
    return generate_synthetic(out, seed=3, height=36, width=44, videos=1, frames=6, vos_frames=31, images=3)


@pytest.fixture(scope="module")
def release_checkpoint(tmp_path_factory) -> Path:
    """A VideoModel file as the release saved them: a plain state dict with the unused classifier."""
    torch.manual_seed(0)
    state = VideoModel().state_dict()
    state["backbone.resnet.fc.weight"] = torch.randn(1000, 2048) * 0.01
    state["backbone.resnet.fc.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("models") / "video_best_model.pth"
    torch.save(dict(state), path)
    return path


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    status = inference.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def split_args(synthetic: Path, checkpoint: Path, results: Path, dataset: str, split: str) -> list[str]:
    return ["--data", str(synthetic.parent), "--dataset-config", str(synthetic), "--dataset", dataset,
            "--split", split, "--checkpoint", str(checkpoint), "--results-folder", str(results),
            "--size", SIZE, "-j", "0", "--device", "cpu"]


def labelled_frames(synthetic: Path, dataset: str, video_folder: str) -> dict[str, tuple[int, int]]:
    """{"<video>/<frame>": (width, height)} of the annotated frames of the split's videos."""
    root = synthetic.parent / dataset
    label_dir = root / ("Annotations/480p" if dataset == "DAVIS2016" else "Annotations")
    image_dir = root / ("JPEGImages/480p" if dataset == "DAVIS2016" else "JPEGImages")
    frames = {}
    for label in sorted((label_dir / video_folder).glob("*.png")):
        with Image.open(image_dir / video_folder / f"{label.stem}.jpg") as image:
            frames[f"{video_folder}/{label.stem}"] = image.size
    return frames


def written(results: Path, name: str) -> dict[str, tuple[int, int]]:
    out = {}
    for path in sorted((results / name).rglob("*.png")):
        with Image.open(path) as image:
            assert image.mode == "L"
            out[path.relative_to(results / name).with_suffix("").as_posix()] = image.size
    return out


def test_release_checkpoint_loads_and_predicts(release_checkpoint):
    plan = plan_run("inference", torch.device("cpu"), "fp32")
    predictor = Predictor.from_checkpoint(release_checkpoint, plan)
    assert predictor.kind == "video"
    probs = predictor(torch.randn(1, 3, 3, 32, 32))
    assert probs.shape == (1, 3, 1, 32, 32) and 0 <= probs.min() and probs.max() <= 1


def test_png_conversion_is_the_releases():
    """8 bits by truncation (to_pil_image) and Pillow's default resize to (width, height)."""
    probs = torch.rand(1, 24, 30)
    ours = resize_to_original(saliency_to_uint8(probs[0]), height=37, width=53)
    theirs = to_pil_image(probs).resize((53, 37))
    assert ours.size == (53, 37)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_pngs_hold_the_maps_pixels_with_run_length_encoding(tmp_path):
    """Same pixels as Pillow's default PNG; the bytes are zlib's Z_RLE strategy's (faster, no larger)."""
    probs = torch.rand(1, 24, 30)
    ours = resize_to_original(saliency_to_uint8(probs[0]), height=48, width=60)
    path = tmp_path / "map.png"
    save_atomic(ours, path)
    default, rle = io.BytesIO(), io.BytesIO()
    ours.save(default, format="PNG")
    ours.save(rle, format="PNG", compress_type=zlib.Z_RLE)
    assert path.read_bytes() == rle.getvalue() != default.getvalue()
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(default)))


def test_writer_keeps_the_last_write_of_a_path(tmp_path):
    path = tmp_path / "a" / "b.png"
    with SaliencyWriter(threads=2) as writer:
        for value in range(20):
            writer.submit(np.full((8, 8), value, np.uint8), path, 8, 8)
    assert writer.written == 1  # one file, however many times it was written
    assert np.asarray(Image.open(path)).max() == 19
    assert [p.name for p in path.parent.iterdir()] == ["b.png"]  # no temporary files left


@pytest.mark.slow
def test_benchmark_split_every_frame_at_original_size(synthetic, release_checkpoint, tmp_path, capsys):
    results = tmp_path / "results"
    status, out, err = run_main(split_args(synthetic, release_checkpoint, results, "DAVIS", "val")
                                + ["--evaluate"], capsys)
    assert status == 0, err
    expected = labelled_frames(synthetic, "DAVIS2016", "val00")
    assert written(results, "DAVIS2016") == expected
    assert "| DAVIS2016 |" in out and "S" in out  # the evaluation table

    # VOS: only the annotated frames (every 15th), as the release's clip sampling gives
    status, _, err = run_main(split_args(synthetic, release_checkpoint, results, "VOS", "test"), capsys)
    assert status == 0, err
    expected = labelled_frames(synthetic, "VOS", "test00")
    assert len(expected) == 3 and written(results, "VOS") == expected

    # resume: a missing map is redone, complete clips are skipped; --overwrite redoes everything
    files = sorted((results / "DAVIS2016").rglob("*.png"))
    files[-1].unlink()
    stamps = {p: p.stat().st_mtime_ns for p in files[:-1]}
    status, out, _ = run_main(split_args(synthetic, release_checkpoint, results, "DAVIS2016", "val"), capsys)
    assert status == 0 and files[-1].is_file() and "skipped" in out
    assert stamps[files[0]] == files[0].stat().st_mtime_ns
    status, out, _ = run_main(split_args(synthetic, release_checkpoint, results, "DAVIS2016", "val")
                              + ["--overwrite"], capsys)
    assert status == 0 and "skipped" not in out
    assert stamps[files[0]] != files[0].stat().st_mtime_ns


@pytest.mark.slow
def test_input_folder_with_overlay(synthetic, release_checkpoint, tmp_path, capsys):
    folder = tmp_path / "my_clip"
    folder.mkdir()
    frames = sorted((synthetic.parent / "FBMS" / "JPEGImages" / "test00").glob("*.jpg"))[:5]
    for frame in frames:
        (folder / frame.name).write_bytes(frame.read_bytes())
    Image.open(frames[0]).resize((50, 30)).save(folder / "zz_other_size.png")
    results = tmp_path / "results"
    status, out, err = run_main(["--input", str(folder), "--checkpoint", str(release_checkpoint),
                                 "--results-folder", str(results), "--size", SIZE, "-j", "1", "--overlay",
                                 "--clip_len", "4"], capsys)
    assert status == 0, err
    maps = written(results, "my_clip")
    assert set(maps) == {f.stem for f in frames} | {"zz_other_size"}
    assert maps["zz_other_size"] == (50, 30) and maps[frames[0].stem] == Image.open(frames[0]).size
    panel = Image.open(results / "my_clip_overlay" / "zz_other_size.jpg")
    assert panel.size == (150, 30)


@pytest.mark.slow
def test_input_video_file(release_checkpoint, tmp_path, capsys):
    path = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 24))
    for k in range(6):
        frame = np.zeros((24, 40, 3), np.uint8)
        frame[:, 5 * k:5 * k + 10] = 255
        writer.write(frame)
    writer.release()
    results = tmp_path / "results"
    status, out, err = run_main(["--input", str(path), "--checkpoint", str(release_checkpoint),
                                 "--results-folder", str(results), "--size", SIZE], capsys)
    assert status == 0, err
    assert written(results, "walk") == {f"{k:05d}": (40, 24) for k in range(6)}
    status, out, _ = run_main(["--input", str(path), "--checkpoint", str(release_checkpoint),
                               "--results-folder", str(results), "--size", SIZE], capsys)
    assert status == 0 and "0 saliency maps written" in out


def test_errors_are_one_line(synthetic, release_checkpoint, tmp_path, capsys):
    cases = [
        (["--checkpoint", str(tmp_path / "missing.pth")], "no such file"),
        (["--checkpoint", str(release_checkpoint), "--input", str(tmp_path / "nothing")],
         "no such file or folder"),
        (["--checkpoint", str(release_checkpoint), "--input", str(tmp_path), "--evaluate"], "--evaluate"),
        (split_args(synthetic, release_checkpoint, tmp_path, "NOPE", "val"), "unknown dataset"),
        (split_args(synthetic, release_checkpoint, tmp_path, "DAVIS2016", "nosplit"), "no split"),
    ]
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    cases.append((["--checkpoint", str(bad)], f"checkpoint {bad}"))
    for argv, message in cases:
        status, _, err = run_main(argv, capsys)
        assert status == 2, argv
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.slow
def test_script_bad_flag_and_missing_checkpoint():
    for argv, message in ((["--size", "zero"], "invalid frame_size value"),
                          (["--checkpoint", "/nonexistent/video_best_model.pth"], "no such file")):
        proc = subprocess.run([sys.executable, "inference.py", *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2
        assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_folder_counts_each_frame_once_and_disk_full_keeps_the_maps(synthetic, release_checkpoint, tmp_path,
                                                                     capsys, monkeypatch):
    import errno
    import os

    folder = tmp_path / "ten"
    folder.mkdir()
    frame = sorted((synthetic.parent / "FBMS" / "JPEGImages" / "test00").glob("*.jpg"))[0]
    for k in range(10):
        (folder / f"{k:02d}.jpg").write_bytes(frame.read_bytes())
    results = tmp_path / "results"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # a run that was killed: its temporary file is removed
    stale = results / "ten" / f".03.png.{host_tag()}.{ended.pid}.abcd_123.rcrnet-tmp"
    notes = results / "ten" / "notes.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    notes.write_bytes(b"x")
    argv = ["--input", str(folder), "--checkpoint", str(release_checkpoint), "--results-folder", str(results),
            "--size", SIZE, "-j", "0", "--device", "cpu"]
    status, out, err = run_main(argv, capsys)
    assert status == 0, err
    assert "ten: 10 saliency maps written" in out  # the last clip overlaps the one before it
    assert not stale.exists() and notes.exists()
    before = {p: p.read_bytes() for p in (results / "ten").glob("*.png")}
    assert len(before) == 10

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("libs.runtime.files.os.replace", full)
    status, _, err = run_main([*argv, "--overwrite"], capsys)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("inference.py: error: cannot write ") and "No space left on device" in err, err
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in (results / "ten").glob("*.png")} == before
    assert not list(results.rglob("*.rcrnet-tmp"))
    (tmp_path / "file").write_text("x")
    status, _, err = run_main([*argv[:-6], "--results-folder", str(tmp_path / "file"), *argv[-4:]], capsys)
    assert status == 2 and "a file, not a folder" in err, err
