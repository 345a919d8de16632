"""libs.evaluation.matlab: MATLAB imresize, thresholds and the points where PySODMetrics differs."""

from __future__ import annotations

import numpy as np
import py_sod_metrics as sod
import pytest

from libs.evaluation import matlab
from libs.evaluation.metrics import BorderSafeSmeasure
from libs.evaluation.protocol import PROTOCOLS, make_protocol, select_frames


def test_imresize_reproduces_ramps_and_constants():
    ramp = np.tile(np.arange(0, 250, 25, dtype=np.uint8), (4, 1))  # 4 x 10
    up = matlab.imresize(ramp, (4, 20))
    # 2x upsampling samples the input at u = x/2 + 1/4; cubic reproduces a linear ramp inside.
    inner = 25 * (np.arange(1, 21) / 2 + 0.25 - 1)
    assert np.array_equal(up[0, 4:-4], np.floor(inner[4:-4] + 0.5).astype(np.uint8))
    assert np.array_equal(matlab.imresize(np.full((9, 7), 77, np.uint8), (4, 13)), np.full((4, 13), 77))
    down = matlab.imresize(np.tile(np.arange(40, dtype=np.uint8) * 5, (3, 1)), (3, 20))
    assert np.abs(down[0, 2:-2].astype(int) - (np.arange(20) * 10 + 2.5)[2:-2]).max() <= 1
    assert np.array_equal(matlab.imresize(ramp, (4, 10)), ramp)


def test_thresholds_follow_matlab_colon():
    t = matlab.matlab_thresholds()
    assert t[0] == 0 and t[255] == 1 and np.all(np.diff(t) > 0)
    assert t[1] == 1 / 255 and t[200] == 1 - 55 * (1 / 255)


def test_f_curve_counts_pixels_at_or_above_each_threshold():
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 256, (30, 40)).astype(np.uint8)
    pred[0, :2] = (0, 255)
    gt = rng.random((30, 40)) > 0.6
    sal = matlab.mapminmax(pred)
    precision, recall, f = matlab.f_curves(sal, gt)
    for k in (0, 1, 29, 128, 200, 255):
        binary = sal >= matlab.matlab_thresholds()[k]
        hits = np.count_nonzero(binary & gt)
        assert precision[k] == pytest.approx(hits / binary.sum()) and recall[k] == pytest.approx(
            hits / gt.sum()
        )
    # PySODMetrics truncates pred * 255 to uint8, so values on a threshold can fall a bin lower.
    fm = sod.Fmeasure()
    fm.step(pred, gt.astype(np.uint8) * 255)
    pysod = np.asarray(fm.changeable_fms[0])[::-1]
    assert np.abs(pysod - f).max() > 1e-4
    assert matlab.adaptive_f(sal, gt) == pytest.approx(fm.adaptive_fms[0], abs=1e-12)


def test_s_measure_centroid_rounds_half_away_from_zero():
    gt = np.zeros((10, 6), bool)
    gt[2:8, 2:4] = (
        True  # 0-based centroid column 2.5 (row 4.5): PySODMetrics rounds to 2, MATLAB's 1-based 3.5 to 4
    )
    pred = np.clip(gt * 200 + np.arange(60).reshape(10, 6), 0, 255).astype(np.uint8)
    sm = BorderSafeSmeasure()
    sm.step(pred, gt.astype(np.uint8) * 255)
    mine = matlab.s_measure(matlab.mapminmax(pred), gt)
    assert abs(mine - sm.sms[0]) > 1e-4
    gt[:] = False
    gt[2:9, 2:5] = True  # centroid (5.0, 3.0): both split at the same place
    sm = BorderSafeSmeasure()
    sm.step(pred, gt.astype(np.uint8) * 255)
    assert matlab.s_measure(matlab.mapminmax(pred), gt) == pytest.approx(sm.sms[0], abs=1e-12)


def test_protocols_and_frame_selection():
    assert make_protocol("davsod") is PROTOCOLS["davsod"]
    custom = make_protocol("davsod", skip_first_last=False)
    assert custom.name == "davsod+custom" and not custom.skip_first_last and custom.average == "videos"
    with pytest.raises(ValueError, match="unknown resize 'nearest'"):
        make_protocol("frames", resize="nearest")
    keys = [("a", "a/0"), ("a", "a/1"), ("a", "a/2"), ("b", "b/0"), ("b", "b/1")]
    assert select_frames(keys, True) == (["a/1"], ["a/0", "a/2", "b/0", "b/1"])
    assert select_frames(keys, False) == ([k for _, k in keys], [])
