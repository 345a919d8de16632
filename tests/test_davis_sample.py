"""Reading, clip sampling, evaluation under both protocols and the preparer's check, on the real
DAVIS 2016 sample (car-shadow, libby, motocross-jump), read in place through symlinks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import py_sod_metrics as sod
import pytest
import yaml
from PIL import Image
from scipy import ndimage

import evaluate
from libs.datasets import prepare
from libs.datasets.config import DEFAULT_CONFIG, load_dataset_config
from libs.datasets.reading import read_image, read_label
from libs.datasets.video_dataset import VideoClipDataset, VideoImageDataset
from libs.evaluation import evaluate_results, matlab
from libs.evaluation.protocol import PROTOCOLS
from tests.conftest import DAVIS_SAMPLE_VIDEOS

VIDEOS = sorted(DAVIS_SAMPLE_VIDEOS)


@pytest.fixture()
def root(tmp_path: Path, davis_sample: Path) -> Path:
    """A data root whose DAVIS2016 links to the sample, and a config with its three videos as `sample`."""
    data = tmp_path / "data"
    assert prepare.prepare("DAVIS2016", davis_sample, data) == [
        f"linked JPEGImages/480p/, Annotations/480p/ from {davis_sample}"
    ]
    entry = yaml.safe_load(DEFAULT_CONFIG.read_text())["DAVIS2016"]
    entry["video_split"] = {"sample": VIDEOS}
    (tmp_path / "davis.yaml").write_text(yaml.safe_dump({"DAVIS2016": entry}))
    return data


def _spec(root: Path):
    return load_dataset_config(root.parent / "davis.yaml")["DAVIS2016"]


def test_reading_real_frames(root: Path):
    spec = _spec(root)
    image = read_image(spec.video_image_folder(root, "libby") / "00000.jpg")
    label = read_label(spec.video_label_folder(root, "libby") / "00000.png")
    assert tuple(image.shape) == (3, 480, 854) and str(image.dtype) == "torch.uint8"
    assert tuple(label.shape) == (1, 480, 854) and set(np.unique(label.numpy())) == {0.0, 1.0}
    assert 0.005 < float(label.mean()) < 0.5
    dataset = VideoImageDataset(spec, root, "sample", training=False)
    assert len(dataset) == sum(DAVIS_SAMPLE_VIDEOS.values()) == 129


def test_clip_sampling_real_frames(root: Path):
    clips = VideoClipDataset(_spec(root), root, "sample", training=False, clip_len=4)
    ids = clips.clip_image_ids()
    # 40 frames: 10 clips; 49 frames: 12 clips and one ending on the last frame; 40: 10.
    assert len(ids) == 10 + 13 + 10
    for clip in ids:
        videos = {i.split("/")[0] for i in clip}
        numbers = [int(i.split("/")[1]) for i in clip]
        assert len(videos) == 1 and numbers == list(range(numbers[0], numbers[0] + 4))
    assert ids[10 + 12] == [f"libby/{n:05d}" for n in range(45, 49)]
    training = VideoClipDataset(_spec(root), root, "sample", training=True, clip_len=4)
    assert len(training) > len(clips)  # overlapping clips (step clip_len - 1) while training


def _write_maps(root: Path, results: Path, scale: float) -> None:
    """Blurred, shifted, noisy versions of the labels as predictions (fixed seed)."""
    rng = np.random.default_rng(14)
    spec = _spec(root)
    for video in VIDEOS:
        for gt_path in sorted(spec.video_label_folder(root, video).glob("*.png")):
            gt = np.asarray(Image.open(gt_path)).astype(np.float64)
            pred = ndimage.shift(ndimage.gaussian_filter(gt, 6), (3, -5), order=1) * 0.8
            pred = np.clip(np.round(pred + rng.normal(0, 18, gt.shape) + 20), 0, 255).astype(np.uint8)
            image = Image.fromarray(pred)
            if scale != 1:
                image = image.resize((int(854 * scale), int(480 * scale)), Image.BILINEAR)
            out = results / "DAVIS2016" / video / gt_path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            image.save(out)


def _pairs(root: Path, results: Path):
    spec = _spec(root)
    for video in VIDEOS:
        for gt_path in sorted(spec.video_label_folder(root, video).glob("*.png")):
            yield (
                video,
                np.asarray(Image.open(gt_path)),
                np.asarray(Image.open(results / "DAVIS2016" / video / gt_path.name)),
            )


@pytest.mark.slow
def test_evaluation_protocols_real_frames(root: Path, tmp_path: Path):
    results = tmp_path / "results" / "method"
    _write_maps(root, results, 1.0)
    config = root.parent / "davis.yaml"
    frames = evaluate_results(
        results,
        root,
        "DAVIS2016",
        "sample",
        config_path=config,
        workers=2,
        metrics=("S", "MAE", "maxF", "meanF", "adpF"),
    )
    sm, mae, fm = sod.Smeasure(), sod.MAE(), sod.Fmeasure()
    per_video: dict[str, list] = {v: [] for v in VIDEOS}
    for video, gt, pred in _pairs(root, results):
        for metric in (sm, mae, fm):
            metric.step(pred, gt)
        per_video[video].append((gt, pred))
    assert frames["frames"] == 129 and frames["protocol"] == PROTOCOLS["frames"].describe()
    assert frames["S"] == pytest.approx(np.mean(sm.sms), abs=1e-12)
    assert frames["MAE"] == pytest.approx(np.mean(mae.maes), abs=1e-12)
    assert frames["maxF"] == pytest.approx(np.mean(fm.changeable_fms, axis=0).max(), abs=1e-12)

    davsod = evaluate_results(
        results,
        root,
        "DAVIS2016",
        "sample",
        config_path=config,
        workers=2,
        metrics=("S", "MAE", "maxF", "meanF", "adpF"),
        protocol=PROTOCOLS["davsod"],
    )
    # main.m by hand: frames 2..n-1 of each video, means per video, then over videos;
    # max F of the mean over videos of the per-video mean F curves.
    s_v, mae_v, adp_v, curves = [], [], [], []
    for video in VIDEOS:
        pairs = per_video[video][1:-1]
        scored = [(matlab.mapminmax(p), g > 128) for g, p in pairs]
        s_v.append(np.mean([matlab.s_measure(s, g) for s, g in scored]))
        mae_v.append(np.mean([np.mean(np.abs(g - s)) for s, g in scored]))
        adp_v.append(np.mean([matlab.adaptive_f(s, g) for s, g in scored]))
        curves.append(np.mean([matlab.f_curves(s, g)[2] for s, g in scored], axis=0))
    assert davsod["frames"] == 129 - 6 and davsod["counts"]["edge_skipped"] == 6
    assert davsod["S"] == pytest.approx(np.mean(s_v), abs=1e-12)
    assert davsod["MAE"] == pytest.approx(np.mean(mae_v), abs=1e-12)
    assert davsod["adpF"] == pytest.approx(np.mean(adp_v), abs=1e-12)
    assert davsod["maxF"] == pytest.approx(np.mean(curves, axis=0).max(), abs=1e-12)
    assert davsod["meanF"] == pytest.approx(np.mean(curves), abs=1e-12)
    assert davsod["maxF"] != np.mean([c.max() for c in curves])  # not the mean of per-video maxima
    assert abs(davsod["S"] - frames["S"]) > 1e-4  # the conventions change the numbers


@pytest.mark.slow
def test_evaluate_cli_davsod_on_resized_maps(root: Path, tmp_path: Path, capsys):
    results = tmp_path / "results" / "small"
    _write_maps(root, results, 0.5)
    out = tmp_path / "s.json"
    base = [
        "--data",
        str(root),
        "--dataset-config",
        str(root.parent / "davis.yaml"),
        "--dataset",
        "DAVIS2016",
        "--split",
        "sample",
        "--results",
        str(results),
        "-j",
        "2",
        "--json",
        str(out),
    ]
    assert evaluate.main([*base, "--protocol", "davsod"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == (
        "protocol: davsod (average over videos; first/last annotated frame of each video skipped; "
        "resize bicubic-matlab; definitions matlab; F-measure mean-of-f)"
    )
    assert "123 map(s) sized unlike their ground truth: resized bicubic as MATLAB's imresize" in captured.err
    assert "6 first/last annotated frame(s) of the videos left out" in captured.err
    davsod = json.loads(out.read_text())["small"]["DAVIS2016"]
    assert davsod["frames"] == 123 and davsod["protocol"]["name"] == "davsod"
    assert evaluate.main([*base, "--protocol", "davsod", "--resize", "bilinear"]) == 0
    custom = json.loads(out.read_text())["small"]["DAVIS2016"]
    assert custom["protocol"] == {**davsod["protocol"], "name": "davsod+custom", "resize": "bilinear"}
    assert 0 < abs(custom["MAE"] - davsod["MAE"]) < 0.01  # only the resizing differs


def test_prepare_check_real_sample(root: Path, capsys):
    assert prepare.main(["DAVIS2016", "--data", str(root), "--check"]) == 1  # 3 of the 20 val videos
    out = capsys.readouterr().out
    assert "| val | 20 | 3 | 129 | 129 | 20 | - | 1376 | NO |" in out
    assert "val: missing 17: blackswan, bmx-trees, breakdance" in out
    assert "| train | 29 | 0 | 0 | 0 | 30 | - | 2079 | NO |" in out
    assert "| * | 3 | 3 | 129 | 129 | 50 | 3455 | 3455 | NO |" in out
