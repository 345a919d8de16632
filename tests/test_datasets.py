"""Dataset lists (every mode of the release), items, pseudo-labels, loaders and bad input.

The expected frame and clip lists below are worked out by hand from the release's rules
(libs/datasets/sampling.py states them) on small folder trees built here.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader

from libs.datasets import (
    DEFAULT_CONFIG,
    DatasetConfigError,
    DatasetFileError,
    DatasetReadError,
    VideoClipDataset,
    get_datasets,
    get_transforms,
    load_dataset_config,
    use_pseudo_labels,
)
from libs.datasets.sampling import clip_windows, frame_list

H, W = 6, 8  # tiny, non-square frames: height and width must not be swapped


def _write_frame(path: Path, value: int = 100, size: tuple[int, int] = (H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def _write_label(path: Path, size: tuple[int, int] = (H, W), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros(size, np.uint8)
    mask[: size[0] // 2] = 255
    image = Image.fromarray(mask)
    image.convert(mode).save(path)


def make_video_dataset(root: Path, name: str, videos: dict[str, tuple[int, list[int]]], interval: int,
                       splits: dict[str, list[str]] | None = None) -> dict:
    """Write `<root>/<name>/JPEGImages/<video>/%05d.jpg` and labels at the given indices."""
    for video, (count, labelled) in videos.items():
        for i in range(count):
            _write_frame(root / name / "JPEGImages" / video / f"{i:05d}.jpg", value=i % 250)
        for i in labelled:
            _write_label(root / name / "Annotations" / video / f"{i:05d}.png")
    return {"image_dir": "JPEGImages", "label_dir": "Annotations", "image_ext": ".jpg", "label_ext": ".png",
            "default_label_interval": interval, "video_split": splits or {"train": list(videos)}}


def write_config(root: Path, entries: dict) -> Path:
    path = root / "datasets.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, Path]:
    """VOSX (labels every 15 frames) and DAVX (every frame) with a few short videos."""
    root = tmp_path_factory.mktemp("tree")
    entries = {
        "VOSX": make_video_dataset(root, "VOSX", {
            "a": (50, [0, 15, 30, 45]),
            "b": (20, [0, 15]),
            "c": (75, [0, 15, 30, 45, 60]),
        }, 15, {"train": ["a", "b", "c"], "test": ["c", "b"]}),
        "DAVX": make_video_dataset(root, "DAVX", {"d": (7, list(range(7))), "e": (2, [0, 1])}, 1),
        "IMGX": {"image_dir": "imgs", "label_dir": "gt", "split_dir": "ImageSets", "image_ext": ".jpg",
                 "label_ext": ".png"},
    }
    for i in range(3):
        _write_frame(root / "IMGX" / "imgs" / f"im{i}.jpg")
        _write_label(root / "IMGX" / "gt" / f"im{i}.png")
    (root / "IMGX" / "ImageSets").mkdir(parents=True)
    (root / "IMGX" / "ImageSets" / "train_id.txt").write_text("im2\nim0\n")
    return root, write_config(root, entries)


def clip_ids(dataset) -> list[list[str]]:
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    return [ids for part in parts for ids in part.clip_image_ids()]


def ids(video: str, *frames: int) -> list[str]:
    return [f"{video}/{i:05d}" for i in frames]


# ----------------------------------------------------------------------------- lists


def test_sampling_rules_by_hand():
    assert frame_list([0, 15, 30], 1, 7) == [0, 7, 15, 22, 30]
    assert frame_list([0, 30], 2, 10) == [0, 10, 20, 30]
    # padding of a short list, then a duplicated last window (release behaviour)
    assert clip_windows([0, 15], 4, training=True) == [[0, 15, 15, 15], [0, 15, 15, 15]]
    # training windows overlap by one frame; the last is aligned to the end
    assert clip_windows(list(range(5)), 4, training=True) == [[0, 1, 2, 3], [1, 2, 3, 4]]
    # when the windows end exactly at the last frame, the last window is repeated (release behaviour)
    assert clip_windows(list(range(7)), 4, training=True) == [[0, 1, 2, 3], [3, 4, 5, 6], [3, 4, 5, 6]]
    assert clip_windows(list(range(8)), 4, training=True) == [[0, 1, 2, 3], [3, 4, 5, 6], [4, 5, 6, 7]]
    # inference windows do not overlap, except the end-aligned last one
    assert clip_windows(list(range(8)), 4, training=False) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert clip_windows(list(range(7)), 5, training=False) == [[0, 1, 2, 3, 4], [2, 3, 4, 5, 6]]
    # clip_len 1 while training: the release would loop forever; here the step is 1
    assert clip_windows([3, 4], 1, training=True) == [[3], [4]]


def test_training_clips(tree):
    root, config = tree
    ds = get_datasets("VOSX", "train", config, root, True, None, read_clip=True, clip_len=4)
    assert clip_ids(ds) == [
        ids("a", 0, 15, 30, 45), ids("a", 0, 15, 30, 45),
        ids("b", 0, 15, 15, 15), ids("b", 0, 15, 15, 15),
        ids("c", 0, 15, 30, 45), ids("c", 15, 30, 45, 60),
    ]
    assert all("label_path" in f for i in range(len(ds)) for f in ds.clip_frames(i))


def test_inference_clips(tree):
    root, config = tree
    ds = get_datasets("VOSX", "test", config, root, False, None, read_clip=True, clip_len=4)
    assert clip_ids(ds) == [ids("c", 0, 15, 30, 45), ids("c", 15, 30, 45, 60), ids("b", 0, 15, 15, 15)]


def test_label_interval_applies_only_when_training(tree):
    root, config = tree
    frames = get_datasets("VOSX", "train", config, root, True, None, label_interval=2)
    assert frames.image_ids() == ids("a", 0, 30) + ids("b", 0) + ids("c", 0, 30, 60)
    frames = get_datasets("VOSX", "test", config, root, False, None, label_interval=2)
    assert frames.image_ids() == ids("c", 0, 15, 30, 45, 60) + ids("b", 0, 15)
    clips = get_datasets("VOSX", "train", config, root, True, None, read_clip=True, label_interval=2)
    assert clip_ids(clips) == [ids("a", 0, 30, 30, 30)] * 2 + [ids("b", 0, 0, 0, 0)] * 2 + [
        ids("c", 0, 30, 60, 60)] * 2


def test_frame_between_label_num(tree):
    root, config = tree
    # l=1, m=1: spacing 15 // 2 = 7, clips of m + 2 = 3 frames whatever clip_len says
    ds = get_datasets("VOSX", "train", config, root, True, None, read_clip=True,
                      frame_between_label_num=1, clip_len=4)
    assert ds.clip_len == 3
    assert clip_ids(ds)[:4] == [ids("a", 0, 7, 15), ids("a", 15, 22, 30), ids("a", 30, 37, 45),
                                ids("a", 30, 37, 45)]
    assert clip_ids(ds)[4:6] == [ids("b", 0, 7, 15)] * 2
    assert clip_ids(ds)[6:] == [ids("c", 0, 7, 15), ids("c", 15, 22, 30), ids("c", 30, 37, 45),
                                ids("c", 45, 52, 60), ids("c", 45, 52, 60)]
    labelled = [["label_path" in f for f in ds.clip_frames(i)] for i in range(len(ds))]
    assert all(flags == [True, False, True] for flags in labelled)
    # l=2, m=2: spacing 30 // 3 = 10 between the kept labels 0 and 30
    ds = get_datasets("VOSX", "train", config, root, True, None, read_clip=True, label_interval=2,
                      frame_between_label_num=2)
    assert clip_ids(ds)[0] == ids("a", 0, 10, 20, 30)
    with pytest.raises(ValueError, match="frame_between_label_num"):
        get_datasets("DAVX", "train", config, root, True, None, read_clip=True, frame_between_label_num=1)


def test_pseudo_label_generation_items_have_labels_only_at_the_ends(tree):
    root, config = tree
    ds = get_datasets("VOSX", "train", config, root, True, get_transforms(False, 4)["test"], read_clip=True,
                      frame_between_label_num=1)
    clip = ds[0]
    assert [("label" in f) for f in clip] == [True, False, True]
    assert clip[1]["image_id"] == "a/00007"


def test_random_reverse_clip_uses_python_random(tree):
    root, config = tree
    ds = get_datasets("VOSX", "train", config, root, True, get_transforms(False, 4)["train"], read_clip=True,
                      random_reverse_clip=True)
    random.seed(3)
    expected = [random.randint(0, 1) for _ in range(len(ds))]
    random.seed(3)
    got = [[f["image_id"] for f in ds[i]] for i in range(len(ds))]
    forward = clip_ids(ds)
    assert got == [f[::-1] if flip else f for f, flip in zip(forward, expected)]
    assert any(expected) and not all(expected)
    plain = get_datasets("VOSX", "train", config, root, True, None, read_clip=True)
    assert [[f["image_id"] for f in plain[i]] for i in range(len(plain))] == forward


def test_frame_dataset_every_label_at_inference_and_all_frames(tree):
    root, config = tree
    ds = get_datasets("DAVX", "train", config, root, False, None)
    assert ds.image_ids() == ids("d", *range(7)) + ids("e", 0, 1)
    every = get_datasets("VOSX", "test", config, root, False, None, all_frames=True)
    assert len(every) == 75 + 20
    with pytest.raises(ValueError, match="all_frames"):
        get_datasets("VOSX", "test", config, root, True, None, all_frames=True)


def test_concat_of_several_datasets(tree):
    root, config = tree
    ds = get_datasets(["DAVX", "VOSX"], ["train", "train"], config, root, True, None, read_clip=True,
                      clip_len=3)
    assert isinstance(ds, ConcatDataset)
    assert clip_ids(ds) == [
        ids("d", 0, 1, 2), ids("d", 2, 3, 4), ids("d", 4, 5, 6), ids("d", 4, 5, 6),
        ids("e", 0, 1, 1), ids("e", 0, 1, 1),
        ids("a", 0, 15, 30), ids("a", 15, 30, 45),
        ids("b", 0, 15, 15), ids("b", 0, 15, 15),
        ids("c", 0, 15, 30), ids("c", 30, 45, 60), ids("c", 30, 45, 60),
    ]
    assert len(ds) == 13


# ----------------------------------------------------------------------------- items


def test_items_keys_sizes_and_collate(tree):
    root, config = tree
    t = get_transforms(False, (12, 10))
    ds = get_datasets("DAVX", "train", config, root, True, t["train"], read_clip=True, clip_len=2)
    clip = ds[0]
    assert len(clip) == 2
    frame = clip[0]
    assert set(frame) == {"dataset", "image_id", "height", "width", "image", "label"}
    assert (frame["height"], frame["width"]) == (H, W)
    assert frame["image"].shape == (3, 12, 10) and frame["image"].dtype == torch.float32
    assert type(frame["image"]) is torch.Tensor and type(frame["label"]) is torch.Tensor
    assert frame["label"].shape == (1, 12, 10)
    assert 0.0 <= frame["label"].min() and frame["label"].max() <= 1.0
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch[0]["image"].shape == (2, 3, 12, 10)
    assert batch[0]["height"].tolist() == [H, H] and batch[0]["dataset"] == ["DAVX", "DAVX"]


def test_image_dataset(tree):
    root, config = tree
    ds = get_datasets("IMGX", "train", config, root, True, get_transforms(True, 8)["train"])
    assert ds.image_ids() == ["im2", "im0"]
    item = ds[0]
    assert item["image_id"] == "im2" and item["label"].shape == (1, 8, 8)
    assert "label" not in get_datasets("IMGX", "train", config, root, False, None)[0]


def test_dataloader_two_workers(tree):
    root, config = tree
    ds = get_datasets(["DAVX", "VOSX"], ["train", "train"], config, root, True,
                      get_transforms(False, 8)["train"], read_clip=True, random_reverse_clip=True)
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=True)
    seen = 0
    for clip in loader:
        assert len(clip) == 4
        assert clip[0]["image"].shape[1:] == (3, 8, 8)
        assert clip[0]["label"].shape[1:] == (1, 8, 8)
        seen += clip[0]["image"].shape[0]
    assert seen == len(ds)


# ----------------------------------------------------------------------------- pseudo-labels


def test_use_pseudo_labels(tree, tmp_path):
    root, config = tree
    ds = get_datasets(["DAVX", "VOSX"], ["train", "train"], config, root, True, None, read_clip=True,
                      label_interval=2, frame_between_label_num=1)
    folder = tmp_path / "1_2"
    for i in range(0, 7, 2):
        _write_label(folder / "DAVX" / "d" / f"{i:05d}.png")
    for i in (0, 1):
        _write_label(folder / "DAVX" / "e" / f"{i:05d}.png")
    for video, count in (("a", 50), ("b", 20), ("c", 75)):
        for i in range(0, count, 5):
            _write_label(folder / "VOSX" / video / f"{i:05d}.png")
    out = use_pseudo_labels(ds, folder, clip_len=4)
    assert out is ds
    parts = ds.datasets
    assert all(p.label_interval == 1 and p.frame_between_label_num == 0 and p.clip_len == 4 for p in parts)
    assert clip_ids(parts[0]) == [ids("d", 0, 2, 4, 6), ids("d", 0, 2, 4, 6), ids("e", 0, 1, 1, 1),
                                  ids("e", 0, 1, 1, 1)]
    assert clip_ids(parts[1])[:2] == [ids("a", 0, 5, 10, 15), ids("a", 15, 20, 25, 30)]
    assert len(ds) == sum(len(p) for p in parts) and ds.cumulative_sizes[-1] == len(ds)
    frame = parts[0].clip_frames(0)[1]
    assert frame["label_path"] == str(folder / "DAVX" / "d" / "00002.png")
    assert len(ds[len(ds) - 1]) == 4  # the last index resolves after the size change
    with pytest.raises(DatasetFileError, match="pseudo-label folder not found"):
        use_pseudo_labels(ds, tmp_path / "missing", 4)


def test_use_pseudo_labels_on_frame_dataset(tree, tmp_path):
    root, config = tree
    ds = get_datasets("DAVX", "train", config, root, True, None, label_interval=3)
    for i in (1, 5):
        _write_label(tmp_path / "DAVX" / "d" / f"{i:05d}.png")
    _write_label(tmp_path / "DAVX" / "e" / "00000.png")
    use_pseudo_labels(ds, tmp_path, 4)
    assert ds.image_ids() == ids("d", 1, 5) + ids("e", 0)


# ----------------------------------------------------------------------------- config


def test_repository_config():
    config = load_dataset_config(DEFAULT_CONFIG)
    expected = {"MSRA-B", "HKU-IS", "DAVIS2016", "FBMS", "SegTrackv2", "VOS", "DAVSOD", "ViSal"}
    assert expected <= set(config)
    assert [len(config["DAVIS2016"].videos(s)) for s in ("train", "val")] == [29, 20]
    assert [len(config["FBMS"].videos(s)) for s in ("train", "test")] == [29, 30]
    vos = config["VOS"]
    assert vos.default_label_interval == 15
    assert {s: len(vos.videos(s)) for s in vos.splits} == {
        "train": 119, "val": 40, "test": 40, "easy": 96, "normal": 103, "easy-train": 56, "easy-val": 20,
        "easy-test": 20, "normal-train": 63, "normal-val": 20, "normal-test": 20}
    assert sorted(vos.videos("train") + vos.videos("val") + vos.videos("test")) == sorted(
        vos.videos("easy") + vos.videos("normal"))
    seg = config["SegTrackv2"]
    assert (seg.image_ext, seg.label_ext) == (".png", ".png") and len(seg.videos("trainval")) == 13
    assert "penguin" not in seg.videos("trainval") and len(seg.videos("release7")) == 7
    assert set(seg.videos("release7")) < set(seg.videos("trainval"))


def test_davsod_and_visal_layouts(tmp_path):
    for video in ("select_0002", "select_0001"):
        for i in (3, 4):
            _write_frame(tmp_path / "DAVSOD" / "Easy-35" / video / "Imgs" / f"{i:04d}.png")
            _write_label(tmp_path / "DAVSOD" / "Easy-35" / video / "GT_object_level" / f"{i:04d}.png")
    _write_frame(tmp_path / "ViSal" / "bird" / "Imgs" / "0001.jpg")
    _write_frame(tmp_path / "ViSal" / "bird" / "Imgs" / "0002.jpg")
    _write_label(tmp_path / "ViSal" / "bird" / "ground-truth" / "0002.png")
    t = get_transforms(False, 8)["test"]
    ds = get_datasets("DAVSOD", "easy", None, tmp_path, False, t)
    assert ds.image_ids() == ["Easy-35/select_0001/0003", "Easy-35/select_0001/0004",
                              "Easy-35/select_0002/0003", "Easy-35/select_0002/0004"]
    assert ds[0]["label"].shape == (1, 8, 8)
    visal = get_datasets("ViSal", "test", DEFAULT_CONFIG, tmp_path, False, t, read_clip=True, clip_len=2)
    assert clip_ids(visal) == [["bird/0002", "bird/0002"]]
    with pytest.raises(DatasetConfigError, match="matches no video folder"):
        get_datasets("DAVSOD", "normal", None, tmp_path, False, t)


# ----------------------------------------------------------------------------- bad input


def test_bad_names_and_splits(tree):
    root, config = tree
    with pytest.raises(DatasetConfigError, match="unknown dataset 'NOPE'"):
        get_datasets("NOPE", "train", config, root, True, None)
    with pytest.raises(DatasetConfigError, match="has no split 'val'"):
        get_datasets("VOSX", "val", config, root, True, None)
    with pytest.raises(DatasetFileError, match="split file not found"):
        get_datasets("IMGX", "val", config, root, True, None)
    with pytest.raises(DatasetConfigError, match="one split per dataset"):
        get_datasets(["VOSX", "DAVX"], ["train"], config, root, True, None)


def test_missing_folders(tree, tmp_path):
    root, config = tree
    with pytest.raises(DatasetFileError, match="dataset root not found"):
        get_datasets("VOSX", "train", config, tmp_path / "nowhere", True, None)
    with pytest.raises(DatasetFileError, match="dataset folder not found"):
        get_datasets("VOSX", "train", config, tmp_path, True, None)
    entries = yaml.safe_load(config.read_text())
    entries["VOSX"]["video_split"]["gone"] = ["a", "zz"]
    entries["VOSX"]["video_split"]["empty"] = []
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(entries))
    with pytest.raises(DatasetFileError, match=r"video folder not found: .*zz"):
        get_datasets("VOSX", "gone", other, root, True, None)
    with pytest.raises(DatasetConfigError, match="lists no videos"):
        get_datasets("VOSX", "empty", other, root, False, None)
    with pytest.raises(FileNotFoundError):  # DatasetFileError is a FileNotFoundError too
        get_datasets("VOSX", "gone", other, root, True, None)


def test_missing_labels(tmp_path):
    entries = {"V": make_video_dataset(tmp_path, "V", {"x": (3, [])}, 1),
               "I": {"image_dir": "imgs", "label_dir": "gt", "split_dir": "sets", "image_ext": ".jpg",
                     "label_ext": ".png"}}
    _write_frame(tmp_path / "I" / "imgs" / "k.jpg")
    (tmp_path / "I" / "sets").mkdir(parents=True)
    (tmp_path / "I" / "sets" / "train_id.txt").write_text("k\n")
    config = write_config(tmp_path, entries)
    with pytest.raises(DatasetFileError, match=r"no labels \(\*\.png\) for video 'x'"):
        get_datasets("V", "train", config, tmp_path, True, None, read_clip=True)
    with pytest.raises(DatasetFileError, match=r"label not found: .*k\.png"):
        get_datasets("I", "train", config, tmp_path, True, None)
    # at inference an unannotated video uses all of its frames
    assert get_datasets("V", "train", config, tmp_path, False, None).image_ids() == ["x/00000", "x/00001",
                                                                                      "x/00002"]
    _write_label(tmp_path / "V" / "Annotations" / "x" / "00009.png")
    with pytest.raises(DatasetConfigError, match=r"00009\.png has no frame 00009\.jpg"):
        get_datasets("V", "train", config, tmp_path, True, None)


def test_bad_files(tmp_path):
    entries = {"B": make_video_dataset(tmp_path, "B", {"x": (3, [0, 1, 2])}, 1)}
    config = write_config(tmp_path, entries)
    ds = get_datasets("B", "train", config, tmp_path, True, None)
    (tmp_path / "B" / "JPEGImages" / "x" / "00000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetReadError, match=r"cannot read image .*00000\.jpg"):
        ds[0]
    _write_label(tmp_path / "B" / "Annotations" / "x" / "00001.png", size=(W, H))
    with pytest.raises(DatasetReadError, match=r"is 8x6 but its label .*00001\.png is 6x8"):
        ds[1]
    data = (tmp_path / "B" / "JPEGImages" / "x" / "00002.jpg").read_bytes()
    (tmp_path / "B" / "JPEGImages" / "x" / "00002.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetReadError, match="cannot read image"):
        ds[2]


def test_grey_labels_stored_as_colour_are_read_as_grey(tmp_path):
    entries = {"COLOURED": make_video_dataset(tmp_path, "COLOURED", {"x": (3, [])}, 1)}
    for i in range(3):
        _write_label(tmp_path / "COLOURED" / "Annotations" / "x" / f"{i:05d}.png", mode="RGB")
    config = write_config(tmp_path, entries)
    ds = get_datasets("COLOURED", "train", config, tmp_path, True, None)
    labels = [ds[i]["label"] for i in range(3)]
    assert labels[0].shape == (1, H, W) and set(labels[0].unique().tolist()) == {0.0, 1.0}


def test_clip_dataset_direct_construction(tree):
    root, config = tree
    spec = load_dataset_config(config)["VOSX"]
    ds = VideoClipDataset(spec, root, "test", training=False, clip_len=5)
    assert [c["clip_frame_index"] for c in ds.clips] == [[0, 15, 30, 45, 60], [0, 15, 15, 15, 15]]
    assert ds.files[0][15]["image_id"] == "c/00015" and "label_path" in ds.files[0][15]
    assert "label_path" not in ds.files[0][14]
