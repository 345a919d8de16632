"""The synthetic VSOD generator: layout, config, determinism, reuse, CLI errors."""
from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from libs.datasets import DatasetConfigError, get_datasets, get_transforms, load_dataset_config, synthetic
from libs.datasets.synthetic import MARKER, OUTPUTS, generate_synthetic

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"height": 24, "width": 32, "videos": 2, "frames": 6, "vos_frames": 31, "images": 3}


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "data", seed=5, **SMALL)


def test_layout_and_config(small):
    root = small.parent
    config = load_dataset_config(small)
    assert set(config) == {"DAVIS2016", "FBMS", "VOS", "MSRA-B", "HKU-IS"}
    assert config["DAVIS2016"].splits == ["train", "val"]
    assert config["FBMS"].splits == ["train", "test"]
    assert config["VOS"].splits == ["train", "val", "test"]
    assert config["VOS"].default_label_interval == 15
    for name in ("DAVIS2016", "FBMS", "VOS"):
        spec = config[name]
        for split in spec.splits:
            for video in spec.videos(split):
                frames = sorted((spec.video_image_folder(root, video)).glob("*.jpg"))
                labels = sorted((spec.video_label_folder(root, video)).glob("*.png"))
                step = 15 if name == "VOS" else 1
                assert [p.stem for p in labels] == [p.stem for p in frames][::step]
    for name in ("MSRA-B", "HKU-IS"):
        for split in ("train", "val", "test"):
            assert config[name].image_ids(root, split)
    assert (root / MARKER).is_file()


def test_contents_are_exact_masks_and_textured(small):
    root = small.parent
    frame = np.asarray(Image.open(root / "DAVIS2016/JPEGImages/480p/train00/00000.jpg"))
    label = np.asarray(Image.open(root / "DAVIS2016/Annotations/480p/train00/00000.png"))
    assert frame.shape == (24, 32, 3) and label.shape == (24, 32)
    assert set(np.unique(label).tolist()) <= {0, 255}
    assert frame.std() > 10  # a textured scene, not a flat image
    fractions = [np.mean(np.asarray(Image.open(p)) > 0) for p in root.rglob("Annotations/**/*.png")]
    assert 0.02 < float(np.mean(fractions)) < 0.5


def test_scripts_default_lists_load(small):
    root = small.parent
    t = get_transforms(False, 16)
    train = get_datasets(["DAVIS2016", "FBMS", "VOS"], ["train"] * 3, small, root, True, t["train"],
                         read_clip=True, random_reverse_clip=True, clip_len=4)
    val = get_datasets("VOS", "val", small, root, True, t["val"], read_clip=True, clip_len=4)
    assert len(train) > 0 and len(val) > 0
    clip = train[len(train) - 1]
    assert len(clip) == 4 and all("label" in f for f in clip)
    fgplg = get_datasets(["DAVIS2016", "FBMS", "VOS"], ["train"] * 3, small, root, True, t["test"],
                         read_clip=True, label_interval=5, frame_between_label_num=1, clip_len=3)
    assert len(fgplg) > 0
    image = get_datasets(["MSRA-B", "HKU-IS"], ["train", "train"], small, root, True,
                         get_transforms(True, 16)["train"])
    assert image[0]["label"].shape == (1, 16, 16)


def test_deterministic_and_seed_dependent(small, tmp_path):
    again = generate_synthetic(tmp_path / "again", seed=5, **SMALL)
    assert digest(again.parent) == digest(small.parent)
    other = generate_synthetic(tmp_path / "other", seed=6, **SMALL)
    assert digest(other.parent) != digest(small.parent)


def test_reuse_replace_and_refuse(tmp_path):
    out = tmp_path / "d"
    config = generate_synthetic(out, seed=1, **SMALL)
    stamp = config.stat().st_mtime_ns
    assert generate_synthetic(out, seed=1, **SMALL) == config and config.stat().st_mtime_ns == stamp
    generate_synthetic(out, seed=2, **SMALL)  # another synthetic set: replaced
    assert '"seed": 2' in (out / MARKER).read_text()
    assert not list(tmp_path.glob(".d.*"))  # no temporary folders left behind
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DatasetConfigError, match="refusing to overwrite"):
        generate_synthetic(foreign, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    with pytest.raises(ValueError, match="frame size"):
        generate_synthetic(tmp_path / "tiny", height=4, width=4)


def test_regenerating_keeps_the_users_files(tmp_path):
    """Only the generator's own outputs are replaced: a run and results saved under the
    synthetic folder (as the README lays them out) survive a regeneration."""
    out = tmp_path / "synthetic"
    generate_synthetic(out, seed=1, **SMALL)
    (out / "run").mkdir()
    (out / "run" / "video_current_best_model.pth").write_bytes(b"weights")
    (out / "notes.txt").write_text("mine")
    generate_synthetic(out, seed=2, **SMALL)
    assert '"seed": 2' in (out / MARKER).read_text()
    assert (out / "run" / "video_current_best_model.pth").read_bytes() == b"weights"
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUTS, "run", "notes.txt"])
    assert digest(out / "DAVIS2016") == digest(generate_synthetic(tmp_path / "fresh", seed=2, **SMALL).parent
                                               / "DAVIS2016")
    assert not list(tmp_path.glob(".synthetic.*"))  # no temporary folders left behind


def test_killed_replacement_is_redone_and_its_leftovers_removed(tmp_path, monkeypatch):
    out = tmp_path / "synthetic"
    generate_synthetic(out, seed=1, **SMALL)
    (out / "notes.txt").write_text("mine")

    def killed(tmp, out):  # the marker is invalidated, then the run dies mid-swap
        (out / MARKER).write_text('{"incomplete": true}')
        (out / "FBMS").rename(tmp_path / ".synthetic.old-999999999")
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_move_in", killed)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(out, seed=2, **SMALL)
    monkeypatch.undo()
    # asking for the old parameters again does not reuse the half-replaced folder
    generate_synthetic(out, seed=1, **SMALL)
    assert (out / "FBMS").is_dir() and '"seed": 1' in (out / MARKER).read_text()
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".synthetic.*"))  # the dead process's folder is gone


@pytest.mark.slow
def test_cli(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "libs.datasets.synthetic", "--out", str(tmp_path / "x"),
                          "--height", "abc"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "--height: invalid frame_side value" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "libs.datasets.synthetic", "--out", str(tmp_path / "x"),
                          "--videos", "0"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "python -m libs.datasets.synthetic: error: argument --videos: must be at least 1, got 0 (see --help)"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    bad = subprocess.run([sys.executable, "-m", "libs.datasets.synthetic", "--out", str(tmp_path / "mine")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "refusing to overwrite" in bad.stderr and (tmp_path / "mine" / "keep.txt").read_text() == "mine"


def test_a_full_disk_leaves_the_previous_set_and_no_temporary_folder(tmp_path, monkeypatch):
    out = tmp_path / "synthetic"
    generate_synthetic(out, seed=1, **SMALL)
    before = digest(out)
    calls = []

    def full_disk(array, path):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(synthetic, "save_image", full_disk)
    with pytest.raises(DatasetConfigError, match=f"--out {out}: cannot write the synthetic data "
                                                 f"\\({os.strerror(errno.ENOSPC)}: "):
        generate_synthetic(out, seed=2, **SMALL)
    assert digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]
