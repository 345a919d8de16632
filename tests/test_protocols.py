"""Each --protocol preset against max F, mean F and MAE worked out by hand on tiny maps.

The maps take only the values 0 and 255, so every threshold above 0 gives the same binary
map and threshold 0 marks every pixel salient: each F-measure curve has two values, which the
comments below compute. (davsod's MATLAB definitions are also checked against main.m's own
formulas in test_matlab_metrics.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evaluate
from libs.evaluation import pair_folders
from libs.evaluation.protocol import PROTOCOLS, f_from_mean_pr, make_protocol
from libs.evaluation.scoring import evaluate_pairing

ROOT = Path(__file__).resolve().parents[1]


def f_measure(precision: float, recall: float) -> float:
    return 1.3 * precision * recall / (0.3 * precision + recall)


def _frame_1() -> tuple[np.ndarray, np.ndarray]:
    """4x4, label: the top row (4 pixels); map: 2 of them and 1 background pixel.
    t > 0: P = 2/3, R = 1/2; t = 0: P = 4/16, R = 1. 3 pixels wrong: MAE 3/16."""
    gt = np.zeros((4, 4), np.uint8)
    gt[0] = 255
    pred = np.zeros((4, 4), np.uint8)
    pred[0, :2] = 255
    pred[3, 3] = 255
    return pred, gt


def _frame_2() -> tuple[np.ndarray, np.ndarray]:
    """4x4, label: the top two rows (8 pixels); map: the top row.
    t > 0: P = 1, R = 1/2; t = 0: P = 8/16, R = 1. 4 pixels wrong: MAE 4/16."""
    gt = np.zeros((4, 4), np.uint8)
    gt[:2] = 255
    pred = np.zeros((4, 4), np.uint8)
    pred[0] = 255
    return pred, gt


F1, F1_ALL = f_measure(2 / 3, 1 / 2), f_measure(4 / 16, 1)
F2, F2_ALL = f_measure(1, 1 / 2), f_measure(8 / 16, 1)


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def two_frames(tmp_path: Path) -> tuple[Path, Path]:
    """labels/x1.png, labels/x2.png and maps/ beside them (an image dataset of two frames)."""
    for name, (pred, gt) in (("x1", _frame_1()), ("x2", _frame_2())):
        _save(gt, tmp_path / "labels" / f"{name}.png")
        _save(pred, tmp_path / "maps" / f"{name}.png")
    return tmp_path / "maps", tmp_path / "labels"


def _score(maps: Path, labels: Path, protocol: str) -> dict:
    return evaluate_pairing(pair_folders(maps, labels), protocol=PROTOCOLS[protocol])


def test_hand_values_are_right():
    assert F1 == pytest.approx(0.6190476, abs=1e-7) and F2 == pytest.approx(0.8125)
    assert F1_ALL == pytest.approx(0.3023256, abs=1e-7) and F2_ALL == pytest.approx(0.5652174, abs=1e-7)


@pytest.mark.parametrize("protocol", ["frames", "davsod"])
def test_mean_of_per_frame_f_curves(two_frames, protocol):
    # An image dataset: davsod's video conventions do not apply, its MATLAB definitions do.
    result = _score(*two_frames, protocol)
    high, low = (F1 + F2) / 2, (F1_ALL + F2_ALL) / 2  # the mean F curve above 0 and at 0
    assert result["maxF"] == pytest.approx(high, abs=1e-12)
    assert result["meanF"] == pytest.approx((255 * high + low) / 256, abs=1e-12)
    assert result["MAE"] == pytest.approx((3 / 16 + 4 / 16) / 2, abs=1e-12)
    assert result["curves"]["F"][0] == pytest.approx(low) and result["curves"]["F"][255] == pytest.approx(
        high
    )


def test_sal_eval_toolbox_takes_f_of_the_mean_precision_and_recall(two_frames):
    result = _score(*two_frames, "sal-eval-toolbox")
    high = f_measure((2 / 3 + 1) / 2, (1 / 2 + 1 / 2) / 2)  # = 0.7222..., above the mean of F 0.7158
    low = f_measure((4 / 16 + 8 / 16) / 2, 1)
    assert high == pytest.approx(0.7222222, abs=1e-7)
    assert result["maxF"] == pytest.approx(high, abs=1e-12)
    assert result["meanF"] == pytest.approx((255 * high + low) / 256, abs=1e-12)
    assert result["MAE"] == pytest.approx(7 / 32, abs=1e-12)
    curves = result["curves"]
    assert curves["precision"][255] == pytest.approx(5 / 6) and curves["recall"][255] == pytest.approx(1 / 2)
    assert curves["F"].max() == result["maxF"]
    assert result["maxF"] > _score(*two_frames, "frames")["maxF"]


def test_davsod_averages_per_video_after_skipping_first_and_last(tmp_path: Path):
    # Video a: 4 frames, the middle two are frames 1 and 2; video b: 3 frames, the middle is frame 2.
    blank = np.zeros((4, 4), np.uint8)
    videos = {
        "a": [_frame_2(), _frame_1(), _frame_2(), (blank, _frame_1()[1])],
        "b": [(blank, _frame_1()[1]), _frame_2(), (blank, _frame_2()[1])],
    }
    for video, frames in videos.items():
        for i, (pred, gt) in enumerate(frames):
            _save(gt, tmp_path / "labels" / video / f"{i:05d}.png")
            _save(pred, tmp_path / "maps" / video / f"{i:05d}.png")
    result = _score(tmp_path / "maps", tmp_path / "labels", "davsod")
    assert result["frames"] == 3 and result["counts"]["edge_skipped"] == 4
    high = ((F1 + F2) / 2 + F2) / 2  # per video, then over the two videos
    low = ((F1_ALL + F2_ALL) / 2 + F2_ALL) / 2
    assert result["maxF"] == pytest.approx(high, abs=1e-12)
    assert result["meanF"] == pytest.approx((255 * high + low) / 256, abs=1e-12)
    assert result["MAE"] == pytest.approx(((3 / 16 + 4 / 16) / 2 + 4 / 16) / 2, abs=1e-12)
    # Over frames, frame 2 would weigh twice: a different number.
    assert abs(result["maxF"] - (F1 + 2 * F2) / 3) > 1e-3


def test_f_from_mean_pr_is_zero_where_nothing_is_hit():
    f = f_from_mean_pr(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.5]))
    assert f[0] == 0 and f[1] == pytest.approx(f_measure(0.5, 1)) and f[2] == pytest.approx(f_measure(1, 0.5))


def test_protocol_overrides_and_names():
    assert make_protocol("sal-eval-toolbox") is PROTOCOLS["sal-eval-toolbox"]
    custom = make_protocol("frames", fmeasure="f-of-mean-pr")
    assert custom.name == "frames+custom" and custom.fmeasure == "f-of-mean-pr"
    with pytest.raises(ValueError, match="unknown fmeasure 'max'"):
        make_protocol("frames", fmeasure="max")
    assert "F-measure f-of-mean-pr" in PROTOCOLS["sal-eval-toolbox"].caption()


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_plot_under_every_preset(two_frames, tmp_path, capsys, protocol):
    maps, labels = two_frames
    plots = tmp_path / f"plots-{protocol}"
    args = [
        "--labels",
        str(labels),
        "--results-folder",
        str(maps),
        "--protocol",
        protocol,
        "--plot",
        str(plots),
        "-j",
        "1",
    ]
    assert evaluate.main(args) == 0
    assert f"protocol: {protocol} " in capsys.readouterr().out
    (plot,) = plots.iterdir()
    assert plot.name == "labels.png"
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 400


def test_symlink_loops_do_not_hang(two_frames):
    maps, labels = two_frames
    (maps / "up").symlink_to("..", target_is_directory=True)
    (maps / "up2").symlink_to("..", target_is_directory=True)
    (maps / "self").symlink_to(".", target_is_directory=True)
    command = [
        sys.executable,
        "evaluate.py",
        "--labels",
        str(labels),
        "--results-folder",
        str(maps),
        "-j",
        "1",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| labels |  | maps | 2 |" in done.stdout
    pairing = pair_folders(maps, labels)
    assert pairing.extra == 2  # labels/x1.png and labels/x2.png, reached once through up/ (not up2/)
