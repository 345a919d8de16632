"""SaliencyMetrics gives PySODMetrics' numbers exactly, for all metrics or a subset, merged or not."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import py_sod_metrics as sod
import pytest

from libs.evaluation.metrics import METRIC_NAMES, VALIDATION_METRICS, SaliencyMetrics


def _frames(count: int = 6, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Blob labels with noisy maps; frame 2 has an all-black label, frame 4 a constant map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:24, :32]
    frames = []
    for i in range(count):
        gt = (((yy - 8 - i) ** 2 + (xx - 12 - i) ** 2) < 36).astype(np.uint8) * 255
        if i == 2:
            gt[:] = 0
        pred = np.clip(gt * 0.7 + rng.normal(40, 35, gt.shape), 0, 255).astype(np.uint8)
        if i == 4:
            pred[:] = 90
        frames.append((pred, gt))
    return frames


def _direct(frames: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The numbers straight from PySODMetrics' classic evaluators."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = sod.Fmeasure()
    em, sm, mae, wfm = sod.Emeasure(), sod.Smeasure(), sod.MAE(), sod.WeightedFmeasure()
    for pred, gt in frames:
        for metric in (fm, em, sm, mae, wfm):
            metric.step(pred, gt)
    f, e = fm.get_results(), em.get_results()["em"]
    return {
        "MAE": mae.get_results()["mae"],
        "maxF": f["fm"]["curve"].max(),
        "meanF": f["fm"]["curve"].mean(),
        "adpF": f["fm"]["adp"],
        "S": sm.get_results()["sm"],
        "maxE": e["curve"].max(),
        "meanE": e["curve"].mean(),
        "adpE": e["adp"],
        "wF": wfm.get_results()["wfm"],
        "curves": {
            "precision": f["pr"]["p"][::-1],
            "recall": f["pr"]["r"][::-1],
            "F": f["fm"]["curve"][::-1],
            "E": e["curve"][::-1],
        },
    }


def _run(frames, metrics=METRIC_NAMES) -> SaliencyMetrics:
    acc = SaliencyMetrics(metrics)
    for pred, gt in frames:
        acc.step(pred, gt)
    return acc


def test_equals_pysodmetrics_exactly():
    frames = _frames()
    got, want = _run(frames).get_results(), _direct(frames)
    assert list(got) == [*METRIC_NAMES, "frames", "curves"]
    assert got["frames"] == len(frames)
    for name in METRIC_NAMES:
        assert isinstance(got[name], float)
        assert got[name] == want[name], name
    np.testing.assert_array_equal(got["curves"]["threshold"], np.arange(256))
    for name, curve in want["curves"].items():
        np.testing.assert_array_equal(got["curves"][name], curve, err_msg=name)


def test_subset_computes_only_what_is_asked():
    frames = _frames()
    acc = _run(frames, VALIDATION_METRICS)
    got = acc.get_results()
    assert set(got) == {"S", "MAE", "maxF", "frames", "curves"}
    assert acc._em is None and acc._wfm is None
    assert "E" not in got["curves"]
    want = _direct(frames)
    assert [got[m] for m in ("S", "MAE", "maxF")] == [want[m] for m in ("S", "MAE", "maxF")]
    only_adaptive = _run(frames, ["adpF"]).get_results()
    assert only_adaptive["adpF"] == want["adpF"] and "precision" not in only_adaptive["curves"]


def test_merge_equals_one_sequential_pass():
    frames = _frames(count=7, seed=3)
    sequential = _run(frames).get_results()
    merged = SaliencyMetrics()
    for chunk in (frames[:2], frames[2:3], [], frames[3:]):
        # A round trip through pickle is what a worker process's result goes through.
        merged.merge(pickle.loads(pickle.dumps(_run(chunk))))
    got = merged.get_results()
    assert len(merged) == got["frames"] == 7
    for name in METRIC_NAMES:
        assert got[name] == sequential[name], name
    for name, curve in sequential["curves"].items():
        np.testing.assert_array_equal(got["curves"][name], curve)


def test_all_black_label_is_scored_as_pysodmetrics_does():
    pred = np.zeros((10, 12), np.uint8)
    pred[2:5, 3:7] = 200
    gt = np.zeros_like(pred)
    got = _run([(pred, gt)]).get_results()
    assert got["maxF"] == 0.0 and got["adpF"] == 0.0 and got["wF"] == 0.0
    normalised = pred / 255 / (pred.max() / 255)
    assert got["S"] == pytest.approx(1 - normalised.mean())
    assert got["MAE"] == pytest.approx(normalised.mean())


def test_object_on_the_right_border_has_a_finite_s_measure():
    """PySODMetrics gives NaN when the label's centroid is in the last column (an empty quadrant);
    ours scores the three other quadrants, and is PySODMetrics' value wherever that is finite."""
    gt = np.zeros((64, 64), np.uint8)
    gt[30:33, 63:64] = 255
    pred = np.zeros_like(gt)
    pred[29:34, 60:64] = 6
    reference = sod.Smeasure(alpha=0.5)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference.step(pred, gt)
    assert np.isnan(reference.get_results()["sm"])
    got = _run([(pred, gt)]).get_results()["S"]
    assert np.isfinite(got) and 0 < got <= 1
    gt_inside = np.roll(gt, -8, axis=1)
    pred_inside = np.roll(pred, -8, axis=1)
    reference = sod.Smeasure(alpha=0.5)
    reference.step(pred_inside, gt_inside)
    assert _run([(pred_inside, gt_inside)]).get_results()["S"] == reference.get_results()["sm"]


@pytest.mark.parametrize(
    "pred, gt, message",
    [
        (np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), "pred must be a uint8"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), "pred must be a uint8"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), "gt must be a uint8"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), "differ in size"),
    ],
)
def test_bad_inputs_are_rejected(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        SaliencyMetrics().step(pred, gt)


def test_bad_construction_and_use():
    with pytest.raises(ValueError, match="unknown metric"):
        SaliencyMetrics(["maxF", "IoU"])
    with pytest.raises(ValueError, match="no frames"):
        SaliencyMetrics().get_results()
    with pytest.raises(ValueError, match="same metrics"):
        SaliencyMetrics().merge(SaliencyMetrics(VALIDATION_METRICS))
