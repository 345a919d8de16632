"""evaluate.py and libs.evaluation on tiny generated dataset and results trees.

Every number is checked against PySODMetrics called directly on the same files, read
independently here; every bad-input case is checked for its message, count or exit code.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import py_sod_metrics as sod
import pytest
from PIL import Image

import evaluate
from libs.evaluation import EvaluationError, dataset_keys, evaluate_results, method_names
from libs.evaluation.metrics import METRIC_NAMES
from libs.evaluation.reports import JSON_KEYS

CONFIG = """\
Vid:
  image_dir: JPEGImages
  label_dir: Annotations
  image_ext: .jpg
  label_ext: .png
  default_label_interval: 1
  video_split:
    val: [a, b]
    train: [c]
Img:
  image_dir: imgs
  label_dir: gt
  split_dir: ImageSets
  image_ext: .jpg
  label_ext: .png
"""
H, W = 24, 32
VIDEOS = {"a": 3, "b": 2, "c": 2}
IMAGE_IDS = ["x1", "x2", "x3"]
METHODS = {"good": 25.0, "noisy": 70.0}


def _blob(i: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (((yy - 8 - i) ** 2 + (xx - 10 - 2 * i) ** 2) < 40).astype(np.uint8) * 255


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def tree(tmp_path: Path) -> dict:
    """data/{Vid,Img}, results/{good,noisy}/{Vid,Img} and the config describing them."""
    rng = np.random.default_rng(7)
    data, results = tmp_path / "data", tmp_path / "results"
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    frames = [(v, f"{i:05d}") for v, n in VIDEOS.items() for i in range(n)] + [("", i) for i in IMAGE_IDS]
    for k, (video, frame) in enumerate(frames):
        gt = _blob(k % 5)
        if video:
            _save(gt, data / "Vid" / "Annotations" / video / f"{frame}.png")
        else:
            _save(gt, data / "Img" / "gt" / f"{frame}.png")
        for method, noise in METHODS.items():
            pred = np.clip(gt * 0.75 + rng.normal(30, noise, gt.shape), 0, 255).astype(np.uint8)
            where = results / method / ("Vid/" + video if video else "Img")
            _save(pred, where / f"{frame}.png")
    (data / "Img" / "ImageSets").mkdir(parents=True)
    (data / "Img" / "ImageSets" / "test_id.txt").write_text("\n".join(IMAGE_IDS) + "\n")
    return {"root": tmp_path, "data": data, "results": results, "config": tmp_path / "datasets.yaml"}


def _pairs(tree: dict, method: str, dataset: str = "Vid", videos=("a", "b")) -> list[tuple[Path, Path]]:
    """(label, map) files of a split, found here independently of the code under test."""
    if dataset == "Img":
        return [(tree["data"] / "Img/gt" / f"{i}.png", tree["results"] / method / "Img" / f"{i}.png")
                for i in IMAGE_IDS]
    pairs = []
    for video in videos:
        for gt in sorted((tree["data"] / "Vid/Annotations" / video).glob("*.png")):
            pairs.append((gt, tree["results"] / method / "Vid" / video / gt.name))
    return pairs


def _grey(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(path) as image:
        grey = image.convert("L")
    if size is not None and grey.size != size:
        grey = grey.resize(size, Image.BILINEAR)
    return np.asarray(grey)


def _direct(pairs: list[tuple[Path, Path]]) -> dict:
    """PySODMetrics' classic evaluators on the files, maps converted/resized as documented."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = sod.Fmeasure()
    em, sm, mae, wfm = sod.Emeasure(), sod.Smeasure(), sod.MAE(), sod.WeightedFmeasure()
    frames = 0
    for gt_path, pred_path in pairs:
        gt = _grey(gt_path)
        pred = _grey(pred_path, (gt.shape[1], gt.shape[0]))
        for metric in (fm, em, sm, mae, wfm):
            metric.step(pred, gt)
        frames += 1
    f, e = fm.get_results(), em.get_results()["em"]
    return {
        "MAE": mae.get_results()["mae"], "maxF": f["fm"]["curve"].max(), "meanF": f["fm"]["curve"].mean(),
        "adpF": f["fm"]["adp"], "S": sm.get_results()["sm"], "maxE": e["curve"].max(),
        "meanE": e["curve"].mean(), "adpE": e["adp"], "wF": wfm.get_results()["wfm"], "frames": frames,
    }


def _evaluate(tree: dict, method: str = "good", dataset: str = "Vid", split: str = "val", **kw) -> dict:
    results = tree["results"] / method
    return evaluate_results(results, tree["data"], dataset, split, config_path=tree["config"], **kw)


def _assert_equal(got: dict, want: dict) -> None:
    assert {k: got[k] for k in JSON_KEYS} == {k: want[k] for k in JSON_KEYS}


def _cli(tree: dict, *args: str) -> list[str]:
    return ["--data", str(tree["data"]), "--dataset-config", str(tree["config"]), "-j", "1", *args]


# --------------------------------------------------------------------------- numbers


def test_numbers_equal_direct_pysodmetrics(tree):
    for method in METHODS:
        result = _evaluate(tree, method)
        _assert_equal(result, _direct(_pairs(tree, method)))
        assert result["counts"] == {
            "labelled": 5, "missing": 0, "extra": 2, "resized": 0, "converted": 0, "gt_converted": 0,
            "empty_gt": 0, "edge_skipped": 0, "empty_videos": 0,
        }
    _assert_equal(_evaluate(tree, "noisy", "Img", "test"), _direct(_pairs(tree, "noisy", "Img")))


def test_per_video_numbers(tree):
    result = _evaluate(tree, per_video=True)
    assert list(result["videos"]) == ["a", "b"]
    for video in ("a", "b"):
        _assert_equal(result["videos"][video], _direct(_pairs(tree, "good", videos=(video,))))


def test_parallel_equals_sequential_exactly(tree):
    one = _evaluate(tree, "noisy", workers=1, per_video=True)
    two = _evaluate(tree, "noisy", workers=2, per_video=True)
    curves_one, curves_two = one.pop("curves"), two.pop("curves")
    assert one == two
    assert curves_one.keys() == curves_two.keys()
    for name in curves_one:
        np.testing.assert_array_equal(curves_one[name], curves_two[name])


# --------------------------------------------------------------------------- edge cases


def test_missing_prediction_is_an_error_unless_allowed(tree, capsys):
    (tree["results"] / "good/Vid/b/00000.png").unlink()
    with pytest.raises(EvaluationError, match=r"1 of 5 predictions missing .*b/00000\.png"):
        _evaluate(tree)
    assert evaluate.main(_cli(tree, "--dataset", "Vid", "--split", "val", "--results",
                              str(tree["results"] / "good"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "b/00000.png" in err and "Traceback" not in err
    result = _evaluate(tree, allow_missing=True)
    assert result["counts"]["missing"] == 1 and result["examples"]["missing"] == ["b/00000"]
    _assert_equal(result, _direct([p for p in _pairs(tree, "good") if p[1].exists()]))


def test_missing_dataset_folder_with_allow_missing_scores_nothing(tree):
    shutil.rmtree(tree["results"] / "good" / "Vid")
    with pytest.raises(EvaluationError, match="folder not found"):
        _evaluate(tree)
    result = _evaluate(tree, allow_missing=True)
    assert result["frames"] == 0 and result["maxF"] is None and result["counts"]["missing"] == 5


def test_extra_files_are_ignored(tree):
    good = tree["results"] / "good" / "Vid"
    _save(np.zeros((H, W), np.uint8), good / "a" / "00099.png")
    (good / "notes.txt").write_text("not a map")
    _save(np.zeros((H, W), np.uint8), good / "a" / "00001.jpg")  # a .png of this frame exists
    result = _evaluate(tree)
    _assert_equal(result, _direct(_pairs(tree, "good")))
    assert result["counts"]["extra"] == 2 + 3  # video c of the train split, and the three above


def test_size_mismatch_is_resized_and_counted(tree):
    path = tree["results"] / "good/Vid/a/00001.png"
    Image.fromarray(_grey(path)).resize((W * 2 + 3, H * 2), Image.NEAREST).save(path)
    result = _evaluate(tree)
    assert result["counts"]["resized"] == 1 and result["examples"]["resized"] == ["a/00001"]
    _assert_equal(result, _direct(_pairs(tree, "good")))


def test_colour_maps_are_converted_to_grey(tree):
    path = tree["results"] / "good/Vid/b/00001.png"
    grey = _grey(path)
    colour = np.stack([grey, np.clip(grey.astype(int) + 20, 0, 255), grey // 2], axis=-1).astype(np.uint8)
    Image.fromarray(colour).save(path)
    result = _evaluate(tree)
    assert result["counts"]["converted"] == 1
    _assert_equal(result, _direct(_pairs(tree, "good")))


def test_all_black_ground_truth_is_scored_and_counted(tree):
    _save(np.zeros((H, W), np.uint8), tree["data"] / "Vid/Annotations/a/00002.png")
    kept = _evaluate(tree)
    assert kept["counts"]["empty_gt"] == 1 and kept["frames"] == 5
    _assert_equal(kept, _direct(_pairs(tree, "good")))
    skipped = _evaluate(tree, skip_empty_gt=True)
    assert skipped["counts"]["empty_gt"] == 1 and skipped["frames"] == 4
    _assert_equal(skipped, _direct([p for p in _pairs(tree, "good") if p[0].parent.name != "a"
                                    or p[0].name != "00002.png"]))
    assert skipped["maxF"] > kept["maxF"]


def test_palette_and_01_labels_are_read_as_masks(tree):
    baseline = _evaluate(tree)
    labels = [tree["data"] / f"Vid/Annotations/{v}/00000.png" for v in ("a", "b")]
    masks = [(_grey(label) > 128).astype(np.uint8) for label in labels]
    palette = Image.fromarray(masks[0])
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # DAVIS style: index 1 is dark red
    palette.save(labels[0])
    _save(masks[1], labels[1])  # a 0/1 mask
    with Image.open(labels[0]) as image:
        assert image.mode == "P"
    result = _evaluate(tree)
    assert result["counts"]["gt_converted"] == 2 and result["counts"]["empty_gt"] == 0
    _assert_equal(result, baseline)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "Nope", "--split", "val"], "unknown dataset 'Nope'"),
        (["--dataset", "Vid", "--split", "test"], "has no split 'test'"),
        (["--dataset", "Img", "--split", "val"], "split file not found"),
    ],
)
def test_bad_dataset_or_split(tree, capsys, args, message):
    assert evaluate.main(_cli(tree, *args, "--results", str(tree["results"] / "good"))) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_paths_and_flags(tree, capsys):
    missing = tree["root"] / "no-such-results"
    assert evaluate.main(_cli(tree, "--dataset", "Vid", "--split", "val", "--results", str(missing))) == 2
    assert f"results folder not found: {missing}" in capsys.readouterr().err
    args = ["--data", str(tree["root"] / "nodata"), "--dataset-config", str(tree["config"]),
            "--dataset", "Vid", "--split", "val", "--results", str(tree["results"] / "good")]
    assert evaluate.main(args) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    args = ["--dataset-config", str(tree["root"] / "none.yaml"), "--dataset", "Vid", "--split", "val",
            "--results", str(tree["results"] / "good")]
    assert evaluate.main(args) == 2
    assert "dataset config not found" in capsys.readouterr().err
    for bad in (["--dataset", "Vid", "--dataset", "Img", "--split", "val", "--split", "test", "--split", "x"],
                ["--dataset", "Vid", "--split", "val", "-j", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(_cli(tree, *bad, "--results", str(tree["results"] / "good")))
        assert exit_info.value.code == 2


# --------------------------------------------------------------------------- command line outputs


def test_cli_outputs(tree, capsys):
    out = tree["root"] / "out"
    methods = [str(tree["results"] / m) for m in METHODS]
    code = evaluate.main(_cli(
        tree, "--dataset", "Vid", "--split", "val", "--dataset", "Img", "--split", "test",
        "--results", *methods, "--json", str(out / "s.json"), "--csv", str(out / "s.csv"),
        "--plot", str(out / "plots"), "--per-video",
    ))
    assert code == 0
    captured = capsys.readouterr()
    table = captured.out.strip().splitlines()
    assert table[0].startswith("| dataset | split | method | video | frames | max F | S | MAE | mean F")
    assert len(table) == 2 + 2 * (1 + 2) + 2 + 2  # header, Vid x 2 methods with 2 videos, Img x 2, caption
    assert table[-2:] == ["", "protocol: frames (average over frames; all frames; resize bilinear; "
                          "definitions pysodmetrics; F-measure mean-of-f)"]
    assert "good on Vid/val: 5 of 5 labelled frame(s) scored" in captured.err

    scores = json.loads((out / "s.json").read_text())
    assert list(scores) == list(METHODS)
    for method in METHODS:
        assert list(scores[method]) == ["Vid", "Img"]
        entry = scores[method]["Vid"]
        assert set(entry) == set(JSON_KEYS) | {"dataset", "split", "videos", "protocol"}
        assert entry["protocol"]["name"] == "frames" and entry["protocol"]["average"] == "frames"
        assert set(entry["videos"]) == {"a", "b"}
        assert {k: entry[k] for k in JSON_KEYS} == _direct(_pairs(tree, method))
        assert set(scores[method]["Img"]) == set(JSON_KEYS) | {"dataset", "split", "videos", "protocol"}

    with (out / "s.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["dataset", "split", "method", "video", "frames", "maxF", "S", "MAE", "meanF",
                             "adpF", "maxE", "meanE", "adpE", "wF"]
    assert len(rows) == 2 * 3 + 2
    overall = [r for r in rows if r["dataset"] == "Vid" and r["method"] == "noisy" and r["video"] == ""][0]
    for name in METRIC_NAMES:
        assert float(overall[name]) == scores["noisy"]["Vid"][name]

    plots = sorted((out / "plots").iterdir())
    assert [p.name for p in plots] == ["Img_test.png", "Vid_val.png"]
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(plot) as image:
            image.verify()
        with Image.open(plot) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 200


def test_json_keys_name_the_split_when_a_dataset_has_several(tree):
    out = tree["root"] / "s.json"
    pairs = ["--dataset", "Vid", "--split", "val", "--dataset", "Vid", "--split", "train"]
    args = _cli(tree, *pairs, "--results", str(tree["results"] / "good"), "--json", str(out))
    assert evaluate.main(args) == 0
    assert list(json.loads(out.read_text())["good"]) == ["Vid/val", "Vid/train"]
    assert dataset_keys([("A", "val"), ("B", "test")]) == ["A", "B"]


def test_method_names_are_folder_names_made_unique():
    assert method_names(["runs/x/results", "runs/y/results", "maps/RCRNet"]) == [
        "x/results", "y/results", "maps/RCRNet"
    ]
    assert method_names(["a/results", "b/RCRNet"]) == ["results", "RCRNet"]
    with pytest.raises(EvaluationError, match="given twice"):
        method_names(["a/results", "a/results/"])


@pytest.mark.parametrize("flag", ["--json", "--csv", "--plot"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_output_write_failures_are_one_line_and_keep_the_old_file(tree, capsys, monkeypatch, flag, code):
    out = tree["root"] / "out"
    target = out / ("plots" if flag == "--plot" else f"s.{flag[2:]}")
    args = _cli(tree, "--dataset", "Vid", "--split", "val", "--results-folder", str(tree["results"] / "good"),
                flag, str(target))
    assert evaluate.main(args) == 0
    written = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in written}
    capsys.readouterr()

    def fail(*_):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("libs.runtime.files.os.replace", fail)
    assert evaluate.main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("evaluate.py: error: "), errors
    assert os.strerror(code) in errors[0] and f"{flag}: cannot write {written[0]}" in errors[0], errors
    assert {p: p.read_bytes() for p in sorted(p for p in out.rglob("*") if p.is_file())} == before


def test_results_folder_and_workers_spellings(tree, capsys):
    good = str(tree["results"] / "good")
    for spelling in (["--results-folder", good], ["--results", good]):
        for workers in (["-j", "1"], ["--num-workers", "1"], ["--num_workers", "1"], ["--workers", "1"]):
            assert evaluate.main(_cli(tree, "--dataset", "Vid", "--split", "val", *spelling, *workers)) == 0
    help_text = evaluate.build_parser().format_help()
    assert "--results-folder DIR [DIR ...], --results DIR [DIR ...]" in help_text
    assert "[an integer >= 1]" in help_text


def test_results_folder_with_symlinks_to_its_parents_is_walked_once(tree):
    import signal

    def hung(*_):
        raise TimeoutError("the walk did not end: a symlink loop was followed")

    vid = tree["results"] / "good" / "Vid"
    (vid / "up").symlink_to("..", target_is_directory=True)
    (vid / "up2").symlink_to("..", target_is_directory=True)
    (vid / "a" / "back").symlink_to("../..", target_is_directory=True)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        result = _evaluate(tree)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    _assert_equal(result, _direct(_pairs(tree, "good")))
    # Through up/: good/Img's 3 maps once; video c's 2 maps of Vid as before; nothing twice.
    assert result["counts"]["extra"] == 2 + 3
