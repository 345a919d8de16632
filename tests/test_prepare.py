"""libs.datasets.prepare on small synthetic trees laid out like each official download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from libs.datasets import prepare
from libs.datasets.config import DEFAULT_CONFIG, DatasetConfigError, load_dataset_config
from tests.conftest import assert_one_line_error

H, W = 12, 16


def _img(path: Path, value: int = 90, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (H, W, 3) if mode == "RGB" else (H, W)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def _mask(path: Path, rows: slice, value: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((H, W), np.uint8)
    array[rows] = value
    Image.fromarray(array).save(path)


def test_segtrack_merges_objects_and_converts_frames(tmp_path: Path):
    src = tmp_path / "SegTrackv2"
    for i in range(3):
        _img(src / "JPEGImages" / "frog" / f"frog_{i:05d}.png")
        _mask(src / "GroundTruth" / "frog" / f"frog_{i:05d}.png", slice(0, 4))
        _img(src / "JPEGImages" / "bmx" / f"bmx_{i:05d}.bmp")
        _mask(src / "GroundTruth" / "bmx" / "1" / f"bmx_{i:05d}.png", slice(0, 3))
        _mask(src / "GroundTruth" / "bmx" / "2" / f"bmx_{i:05d}.png", slice(8, 10), value=1)
    data = tmp_path / "data"
    notes = prepare.prepare("SegTrackv2", tmp_path, data)
    assert notes == [f"SegTrack v2 from {src}: 1 multi-object video(s) merged into one foreground"]
    out = data / "SegTrackv2"
    assert (out / "JPEGImages" / "frog" / "frog_00000.png").is_symlink()
    assert (out / "GroundTruth" / "frog" / "frog_00002.png").is_symlink()
    frame = out / "JPEGImages" / "bmx" / "bmx_00001.png"
    assert not frame.is_symlink() and Image.open(frame).mode == "RGB"
    merged = np.asarray(Image.open(out / "GroundTruth" / "bmx" / "bmx_00001.png"))
    assert (
        set(np.unique(merged)) == {0, 255}
        and merged[:3].all()
        and merged[8:10].all()
        and not merged[4:8].any()
    )
    spec = load_dataset_config(DEFAULT_CONFIG)["SegTrackv2"]
    assert spec.video_label_folder(data, "bmx") == out / "GroundTruth" / "bmx"


def test_hku_is_split_files_from_mat(tmp_path: Path):
    src = tmp_path / "HKU-IS"
    names = [f"{i:04d}" for i in range(6)]
    for name in names:
        _img(src / "imgs" / f"{name}.png")
        _mask(src / "gt" / f"{name}.png", slice(2, 5))
    for stem, members in (("trainImgSet", names[:3]), ("valImgSet", names[3:4]), ("testImgSet", names[4:])):
        savemat(src / f"{stem}.mat", {stem: np.array([[f"{m}.png"] for m in members], dtype=object)})
    data = tmp_path / "data"
    notes = prepare.prepare("HKU-IS", src, data, copy=True)
    assert notes[0] == "6 image(s) with masks; ImageSets/all_id.txt"
    assert notes[1:] == [
        "train_id.txt: 3 id(s) from trainImgSet.mat",
        "val_id.txt: 1 id(s) from valImgSet.mat",
        "test_id.txt: 2 id(s) from testImgSet.mat",
    ]
    spec = load_dataset_config(DEFAULT_CONFIG)["HKU-IS"]
    assert spec.image_ids(data, "train") == names[:3]
    assert not (data / "HKU-IS" / "imgs" / "0000.png").is_symlink()  # --copy
    lines, ok = prepare.check("HKU-IS", data)
    assert not ok and "| train | 3 | 3 | 3 | 3 | 2500 | - | - | NO |" in lines


def test_msra_b_side_by_side_with_txt_splits(tmp_path: Path):
    src = tmp_path / "MSRA-B"
    for name in ("a", "b", "c"):
        _img(src / f"{name}.jpg")
        _mask(src / f"{name}.png", slice(1, 3))
    _img(src / "lonely.jpg")  # no mask: not an image of the dataset
    (src / "trainImgSet.txt").write_text("a.jpg\nb.jpg\n")
    data = tmp_path / "data"
    notes = prepare.prepare("MSRA-B", src, data)
    assert notes[0] == "3 image(s) with masks; ImageSets/all_id.txt"
    assert "train_id.txt: 2 id(s) from trainImgSet.txt" in notes
    assert f"no split list valImgSet.mat/.txt in {src}: val_id.txt not written" in notes
    assert (data / "MSRA-B" / "imgs" / "a.jpg").resolve() == (src / "a.jpg").resolve()
    assert (data / "MSRA-B" / "gt" / "c.png").is_symlink() and not (
        data / "MSRA-B" / "imgs" / "lonely.jpg"
    ).exists()


def test_davsod_packages_and_check(tmp_path: Path, capsys):
    src = tmp_path / "download"
    for package, videos in (
        ("Easy-35", ["select_0001", "select_0002"]),
        ("DAVSOD-ValidationSet", ["select_0100"]),
    ):
        for video in videos:
            for i in range(3):
                _img(src / package / video / "Imgs" / f"{i:04d}.png")
                _mask(src / package / video / "GT_object_level" / f"{i:04d}.png", slice(0, 2))
    (src / "notes").mkdir()
    data = tmp_path / "data"
    assert prepare.main(["DAVSOD", "--source", str(src), "--data", str(data)]) == 0
    assert "linked package(s) DAVSOD-ValidationSet, Easy-35" in capsys.readouterr().out
    assert (data / "DAVSOD" / "Easy-35").is_symlink()
    assert prepare.main(["DAVSOD", "--data", str(data), "--check"]) == 1
    out = capsys.readouterr().out
    assert "| easy | 2 | 2 | 6 | 6 | 35 | - | - | NO |" in out
    assert "| val | 1 | 1 | 3 | 3 | 46 | - | - | NO |" in out
    assert "normal: missing 1: (split 'normal': no video folder found)" in out


def test_visal_and_fbms(tmp_path: Path):
    visal = tmp_path / "ViSal"
    for video in ("bird", "car"):
        _img(visal / video / "Imgs" / "001.jpg")
        _mask(visal / video / "ground-truth" / "001.png", slice(0, 2))
    data = tmp_path / "data"
    assert prepare.prepare("ViSal", visal, data) == ["linked 2 ViSal video(s) (DAVSOD benchmark layout)"]
    lines, ok = prepare.check("ViSal", data)
    assert not ok and "| test | 2 | 2 | 2 | 2 | 17 | - | - | NO |" in lines

    fbms = tmp_path / "FBMS"
    for part, video in (("Trainingset", "bear01"), ("Testset", "cars1")):
        for i in range(1, 4):
            _img(fbms / part / video / f"{video}_{i:02d}.jpg")
        gt = np.zeros((H, W), np.uint8)
        gt[0:2], gt[5:7] = 100, 200  # two objects, two grey levels
        (fbms / part / video / "GroundTruth").mkdir(parents=True)
        Image.fromarray(gt).save(fbms / part / video / "GroundTruth" / f"{video}_01_gt.pgm")
    assert prepare.prepare("FBMS", fbms, data) == [f"FBMS from {fbms}: 2 annotated frame(s)"]
    mask = np.asarray(Image.open(data / "FBMS" / "Annotations" / "cars1" / "cars1_01.png"))
    assert mask[0:2].all() and mask[5:7].all() and set(np.unique(mask)) == {0, 255}
    assert sorted(p.name for p in (data / "FBMS" / "JPEGImages" / "bear01").iterdir()) == [
        "bear01_01.jpg",
        "bear01_02.jpg",
        "bear01_03.jpg",
    ]


def test_visal_in_its_authors_layout(tmp_path: Path):
    """Frames named unlike their folders, .bmp and .png mixed, masks in one flat GroundTruth/."""
    visal = tmp_path / "ViSal"
    frames = {
        "cow": [f"cow4_frame{i:04d}.bmp" for i in (1, 2, 3)],
        "gokart": ["gokart56.png", "gokart57.bmp"],
    }
    for video, names in frames.items():
        for name in names:
            _img(visal / video / name)
    _mask(visal / "GroundTruth" / "cow4_frame0001.bmp", slice(0, 3))
    _mask(visal / "GroundTruth" / "cow4_frame0003.png", slice(2, 5))
    _mask(visal / "GroundTruth" / "gokart57.bmp", slice(4, 6), value=1)
    data = tmp_path / "data"
    assert prepare.prepare("ViSal", visal, data) == [
        "ViSal from its authors' layout: 2 video(s), 5 frame(s), 3 labelled frame(s)"
    ]
    out = data / "ViSal"
    assert sorted(p.name for p in (out / "cow" / "Imgs").iterdir()) == [
        "cow4_frame0001.jpg",
        "cow4_frame0002.jpg",
        "cow4_frame0003.jpg",
    ]
    assert sorted(p.name for p in (out / "gokart" / "ground-truth").iterdir()) == ["gokart57.png"]
    mask = np.asarray(Image.open(out / "gokart" / "ground-truth" / "gokart57.png"))
    assert set(np.unique(mask)) == {0, 255} and mask[4:6].all() and not mask[:4].any()
    with Image.open(out / "gokart" / "Imgs" / "gokart56.jpg") as frame:
        assert frame.format == "JPEG" and frame.size == (W, H)
    lines, ok = prepare.check("ViSal", data)
    assert not ok
    assert (
        "| test | 2 | 2 | 5 | 3 | 17 | - | - | NO |" in lines
        and "| * | 2 | 2 | 5 | 3 | 17 | - | 193 | NO |" in lines
    )
    spec = load_dataset_config(DEFAULT_CONFIG)["ViSal"]
    assert spec.videos("test", data) == ["cow", "gokart"]

    # A mask for no frame, and a frame name in two videos, are errors naming the file.
    _mask(visal / "GroundTruth" / "horse01.png", slice(0, 2))
    with pytest.raises(prepare.PrepareError, match=r"horse01\.png: expected a frame named horse01"):
        prepare.prepare("ViSal", visal, tmp_path / "d2")
    (visal / "GroundTruth" / "horse01.png").unlink()
    _img(visal / "gokart" / "cow4_frame0002.png")
    with pytest.raises(prepare.PrepareError, match="also in .*cow; expected frame names unique"):
        prepare.prepare("ViSal", visal, tmp_path / "d3")


def test_published_counts_are_data(tmp_path: Path):
    counts = prepare.load_counts()
    assert counts["ViSal"].videos == {"test": 17, "*": 17} and counts["ViSal"].annotated == {"*": 193}
    assert counts["DAVIS2016"].annotated["val"] == 1376 and "Perazzi" in counts["DAVIS2016"].source
    assert set(counts) == set(prepare.PREPARERS)
    bad = tmp_path / "counts.yaml"
    bad.write_text("ViSal:\n  source: x\n  videos: {test: many}\n")
    with pytest.raises(DatasetConfigError, match=r"ViSal.videos: expected \{split: count\}"):
        prepare.load_counts(bad)


def test_errors_are_one_line_with_status_2(tmp_path: Path, capsys):
    main = prepare.main
    assert_one_line_error(
        main,
        ["DAVIS2016", "--source", str(tmp_path / "nope"), "--data", str(tmp_path)],
        capsys,
        f"{tmp_path / 'nope'}: expected the DAVIS2016 download (--source)",
    )
    (tmp_path / "empty").mkdir()
    assert_one_line_error(
        main,
        ["DAVIS2016", "--source", str(tmp_path / "empty"), "--data", str(tmp_path)],
        capsys,
        "expected the DAVIS2016 download (a folder holding JPEGImages/480p)",
    )
    assert_one_line_error(
        main, ["VOS", "--data", str(tmp_path), "--check"], capsys, "expected the prepared VOS folder"
    )
    assert_one_line_error(main, ["VOS", "--data", str(tmp_path)], capsys, "--source DOWNLOAD is required")
