"""Pseudo-label generation: plan, layout, byte copies, sizes, resume, sharding, the scripts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error
from PIL import Image

import generate_pseudo_labels as generate_script
from libs.datasets import get_datasets, get_transforms, use_pseudo_labels
from libs.datasets.synthetic import generate_synthetic
from libs.inference.label_jobs import clip_datasets, generate, plan_jobs, shard
from libs.inference.label_predictors import fgplg_predictor, warp_predictor
from libs.networks import FGPLG
from libs.networks.flow import DISFlowEstimator
from libs.networks.weights import save_weights
from libs.runtime.plan import plan_run

FP32 = plan_run("inference", torch.device("cpu"), "fp32")

SIZE = 32
LABEL_INTERVAL = 3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """Tiny synthetic datasets (40x48 frames, every DAVIS2016/FBMS frame annotated); returns the root."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, seed=1, height=40, width=48, videos=2, frames=10, vos_frames=20, images=2)
    return root


def clip_set(root: Path, m: int = 1, names=("DAVIS2016", "FBMS", "VOS")):
    transforms = get_transforms(image_mode=False, input_size=SIZE)
    return get_datasets(list(names), ["train"] * len(names), root / "datasets.yaml", root, True,
                        transforms["test"], read_clip=True, random_reverse_clip=False,
                        label_interval=LABEL_INTERVAL, frame_between_label_num=m, clip_len=m + 2)


def test_plan_writes_every_frame_once(synthetic, tmp_path):
    parts = clip_datasets(clip_set(synthetic, m=2))
    jobs = plan_jobs(parts, tmp_path)
    targets = [t for job in jobs for _, t in job.generate] + [t for job in jobs for _, t in job.copy]
    assert len(targets) == len(set(targets))
    # every frame of every clip is planned, labelled ones copied, the others generated
    for part in parts:
        for c in range(len(part)):
            for frame in part.clip_frames(c):
                assert tmp_path / part.name / f"{frame['image_id']}.png" in targets
    generated = {t for job in jobs for _, t in job.generate}
    assert generated and all(t.parent.parent.name in ("DAVIS2016", "FBMS", "VOS") for t in generated)
    # shards are disjoint and cover everything
    shards = [shard(jobs, r, 3) for r in range(3)]
    assert sum(len(s) for s in shards) == len(jobs)
    assert {id(j) for s in shards for j in s} == {id(j) for j in jobs}


def test_layout_copies_sizes_and_resume(synthetic, tmp_path):
    dataset = clip_set(synthetic)
    out = tmp_path / "1_3"
    summary = generate(warp_predictor(DISFlowEstimator()), dataset, out)
    assert summary.frames == summary.written > 0 and summary.skipped == 0
    assert summary.generated > 0 and summary.copied > 0
    written = sorted(out.rglob("*.png"))
    assert len(written) == summary.written
    spec_dirs = {"DAVIS2016": ("JPEGImages/480p", "Annotations/480p"), "FBMS": ("JPEGImages", "Annotations"),
                 "VOS": ("JPEGImages", "Annotations")}
    copied = generated = 0
    for path in written:
        dataset_name, video, frame = path.relative_to(out).parts
        image_dir, label_dir = spec_dirs[dataset_name]
        image = Image.open(synthetic / dataset_name / image_dir / video / f"{frame[:-4]}.jpg")
        label = Image.open(path)
        assert label.mode == "L" and label.size == image.size == (48, 40)
        truth = synthetic / dataset_name / label_dir / video / frame
        if int(frame[:-4]) % LABEL_INTERVAL == 0:
            assert path.read_bytes() == truth.read_bytes()  # kept ground truth: a byte copy
            copied += 1
        else:
            generated += 1
    assert (copied, generated) == (summary.copied, summary.generated)

    again = generate(warp_predictor(DISFlowEstimator()), dataset, out)
    assert again.written == 0 and again.skipped == summary.frames
    victim = written[len(written) // 2]
    victim.unlink()
    (written[0]).write_bytes(b"")  # an empty file is not a complete label
    third = generate(warp_predictor(DISFlowEstimator()), dataset, out)
    assert third.written == 2 and third.skipped == summary.frames - 2
    assert not list(out.rglob("*.rcrnet-tmp"))


def test_output_feeds_training_on_pseudo_labels(synthetic, tmp_path):
    out = tmp_path / "1_3"
    generate(warp_predictor(DISFlowEstimator()), clip_set(synthetic), out)
    transforms = get_transforms(image_mode=False, input_size=SIZE)
    train = get_datasets(["DAVIS2016", "FBMS", "VOS"], ["train"] * 3, synthetic / "datasets.yaml", synthetic,
                         True, transforms["train"], read_clip=True, clip_len=4)
    use_pseudo_labels(train, out, clip_len=4)
    used = {f"{p.name}/{i}" for p in clip_datasets(train) for clip in p.clip_image_ids() for i in clip}
    assert used == {p.relative_to(out).with_suffix("").as_posix() for p in out.rglob("*.png")}
    clip = train[0]
    assert all(frame["label"].shape == (1, SIZE, SIZE) for frame in clip)


def test_sharded_runs_write_the_same_files(synthetic, tmp_path):
    dataset = clip_set(synthetic)
    whole = tmp_path / "whole"
    generate(warp_predictor(DISFlowEstimator()), dataset, whole)
    split = tmp_path / "split"
    summaries = [generate(warp_predictor(DISFlowEstimator()), dataset, split, rank=r, world_size=2)
                 for r in range(2)]
    assert all(s.written > 0 for s in summaries)
    files = sorted(p.relative_to(whole) for p in whole.rglob("*.png"))
    assert files == sorted(p.relative_to(split) for p in split.rglob("*.png"))
    for rel in files:
        assert (whole / rel).read_bytes() == (split / rel).read_bytes()


def test_fgplg_generation_in_batches_matches_one_by_one(synthetic, tmp_path):
    torch.manual_seed(0)
    model = FGPLG(flow="dis").eval()
    dataset = clip_set(synthetic, names=("DAVIS2016",))
    one = generate(fgplg_predictor(model, FP32), dataset, tmp_path / "one")
    many = generate(fgplg_predictor(model, FP32), dataset, tmp_path / "many", batch_size=3)
    assert one.generated == many.generated > 0
    for path in (tmp_path / "one").rglob("*.png"):
        a = np.asarray(Image.open(path), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "many" / path.relative_to(tmp_path / "one")), dtype=np.int16)
        assert np.abs(a - b).max() <= 1


def test_auto_precision_stays_within_one_level_of_fp32(synthetic, tmp_path, monkeypatch):
    """generate_pseudo_labels.py's default (auto: float32 with the factored decoder on a CPU, chosen
    without timing) against the release's float32 path, file by file."""
    from libs.runtime import calibration

    monkeypatch.setattr(calibration, "time_alternately", lambda *a, **k: pytest.fail("timed"))
    torch.manual_seed(0)
    release = FGPLG(flow="dis").eval()
    factored = FGPLG(flow="dis", decoder="factored").eval()
    factored.load_state_dict(release.state_dict())
    dataset = clip_set(synthetic, names=("DAVIS2016",))
    exact = generate(fgplg_predictor(release, FP32), dataset, tmp_path / "fp32")
    auto_plan = plan_run("inference", torch.device("cpu"), "auto")
    assert auto_plan.decoder == "factored"
    auto = generate(fgplg_predictor(factored, auto_plan), dataset, tmp_path / "auto")
    assert exact.generated == auto.generated > 0
    same = total = 0
    for path in (tmp_path / "fp32").rglob("*.png"):
        a = np.asarray(Image.open(path), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "auto" / path.relative_to(tmp_path / "fp32")), dtype=np.int16)
        assert np.abs(a - b).max() <= 1, path
        same, total = same + int((a == b).sum()), total + a.size
    assert same / total >= 0.999


# ---------------------------------------------------------------------------- the script


@pytest.fixture(scope="module")
def dis_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fgplg") / "fgplg_current_best_model.pth"
    save_weights(FGPLG(flow="dis"), path)
    return path


def _flags(root: Path, out: Path) -> list[str]:
    return ["--data", str(root), "--dataset-config", str(root / "datasets.yaml"),
            "--pseudo-label-folder", str(out), "--label_interval", str(LABEL_INTERVAL), "--size", str(SIZE),
            "-j", "0", "--device", "cpu"]


@pytest.mark.slow
def test_script_layout_and_resume(synthetic, dis_checkpoint, tmp_path, capsys):
    argv = [*_flags(synthetic, tmp_path), "--flow", "dis", "--checkpoint", str(dis_checkpoint)]
    assert generate_script.main(argv) == 0
    first = capsys.readouterr().out
    folder = tmp_path / f"1_{LABEL_INTERVAL}"
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert "DAVIS2016/train00/00000.png" in written and "FBMS/train01/00001.png" in written
    assert {p.split("/")[0] for p in written} == {"DAVIS2016", "FBMS", "VOS"}
    assert f"{len(written)} frames: {len(written)} written" in first
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}
    assert generate_script.main(argv) == 0
    second = capsys.readouterr().out
    assert f"0 written (0 generated, 0 ground truth copied), {len(written)} skipped" in second
    assert stamps == {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}


def test_script_warp_only_and_sparse_ground_truth(synthetic, tmp_path, capsys):
    assert generate_script.main([*_flags(synthetic, tmp_path), "--flow", "dis", "--warp-only"]) == 0
    assert generate_script.main([*_flags(synthetic, tmp_path), "--flow", "dis", "--warp-only",
                                 "--frame_between_label_num", "0", "--datasets", "DAVIS2016:train"]) == 0
    out = capsys.readouterr().out
    assert "0 generated" in out.splitlines()[-1]
    kept = sorted(p.name for p in (tmp_path / f"0_{LABEL_INTERVAL}" / "DAVIS2016" / "train00").iterdir())
    assert kept and all(int(name[:-4]) % LABEL_INTERVAL == 0 for name in kept)


@pytest.mark.parametrize(("flags", "message"), [
    (["--flow", "dis", "--checkpoint", "missing.pth"], "checkpoint missing.pth: no such file"),
    (["--flow", "flownet2"], "trained with the 'dis' flow estimator, but 'flownet2' was asked for"),
    (["--flow", "dis", "--frame_between_label_num", "3"], "must be smaller than label_interval"),
    (["--flow", "dis", "--datasets", "DAVIS2016"], "--datasets 'DAVIS2016': expected NAME:SPLIT"),
    (["--flow", "dis", "--datasets", "DAVIS2016:nosuch"], "has no split 'nosuch'"),
    (["--flow", "dis", "--size", "0"], "argument --size: must be at least 32"),
    (["--flow", "dis", "--data", "nowhere"], "dataset root not found: nowhere"),
])
def test_script_bad_inputs_are_one_line(synthetic, dis_checkpoint, tmp_path, capsys, flags, message):
    argv = [*_flags(synthetic, tmp_path), "--checkpoint", str(dis_checkpoint), *flags]
    assert_one_line_error(generate_script.main, argv, capsys, message)
