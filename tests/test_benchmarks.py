"""Smoke runs of the benchmark scripts (tiny sizes, one round) so that they keep working."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from conftest import need_davis_sample

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    """The benchmark script `benchmarks/<name>.py` as a module."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def decision_cache(monkeypatch, tmp_path):
    """`precision auto`'s measurements go to a cache of the test's own."""
    monkeypatch.setenv("RCRNET_CACHE_DIR", str(tmp_path / "decisions"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Synthetic data and a one-step benchmark model, shared by the smoke runs."""
    return tmp_path_factory.mktemp("bench")


TINY_MODEL = ["--train-steps", "1", "--train-size", "64"]


@pytest.mark.slow
def test_inference_speed(cache, capsys):
    argv = ["--size", "64", "--rounds", "1", "--warmup", "0", "--deviation-clips", "1", "--no-compile",
            "--cache", str(cache), *TINY_MODEL]
    assert load("inference_speed").main(argv) == 0
    out = capsys.readouterr().out
    assert "| fp32 eager, no_grad, list of frames (release) |" in out
    assert "| fp32 eager, factored decoder, 2 frames side by side (--precision auto, 2 threads) |" in out


@pytest.mark.slow
def test_train_speed(capsys):
    argv = ["--size", "32", "--clip-len", "2", "--rounds", "1", "--warmup", "0",
            "--configs", "release", "bf16-cl"]
    assert load("train_speed").main(argv) == 0
    out = capsys.readouterr().out
    assert "| fp32, release decoder (resize then conv) | " in out and "| 1.00x |" in out
    assert "| bf16 autocast + channels_last |" in out
    assert "| fp32 |" not in out  # left out by --configs


@pytest.mark.slow
def test_end_to_end(cache, capsys):
    argv = ["--size", "64", "--frames", "8", "--rounds", "1", "--warmup", "0", "--compile", "off",
            "--cache", str(cache), *TINY_MODEL]
    assert load("end_to_end").main(argv) == 0
    out = capsys.readouterr().out
    assert "| inference.py (defaults) |" in out


@pytest.mark.slow
def test_pseudo_label_speed(cache, capsys):
    argv = ["--size", "64", "--rounds", "1", "--warmup", "0", "--labels", "1", "--cache", str(cache),
            *TINY_MODEL]
    assert load("pseudo_label_speed").main(argv) == 0
    out = capsys.readouterr().out
    assert "| fp32 eager (release way) |" in out
    assert "generate_pseudo_labels.py's default" in out


@pytest.mark.slow
def test_vs_release_without_the_release(reference_state_dict, tmp_path, capsys):
    """Without --release-dir: our inference.py runs (fp32, defaults on a fresh and on a warm decision
    cache) and the model-only row, the release left out."""
    davis = need_davis_sample()
    checkpoint = tmp_path / "video_best_model.pth"
    torch.save(reference_state_dict("video_model"), checkpoint)
    argv = ["--davis", str(davis), "--checkpoint", str(checkpoint), "--videos", "car-shadow", "--frames", "4",
            "--size", "32", "--rounds", "1", "--no-small-job"]
    assert load("vs_release").main(argv) == 0
    out = capsys.readouterr().out
    assert "| our inference.py (defaults), fresh cache |" in out
    assert "| our inference.py (defaults), warm cache |" in out
    assert "release inference.py: left out (no --release-dir given)" in out
    assert "per round" not in out  # no release row to pair with


def test_paired_ratios_are_per_round():
    """Row.paired: speed over the baseline round by round, so a slow round slows both sides."""
    from benchmarks._common import Row

    baseline = Row("release", lambda: None, 48, [100.0, 200.0, 100.0])
    ours = Row("ours", lambda: None, 48, [40.0, 80.0, 50.0])
    assert ours.paired(baseline) == pytest.approx([2.5, 2.5, 2.0])
    assert ours.rate / baseline.rate == pytest.approx(2.0)  # the ratio of medians: 100 / 50
    with pytest.raises(ValueError, match="same rounds"):
        Row("short", lambda: None, 48, [1.0]).paired(baseline)


def test_vs_release_table_pairs_rounds_with_the_release():
    from benchmarks._common import Row

    vs_release = load("vs_release")
    release = Row(vs_release.RELEASE, lambda: None, 48, [100.0, 200.0, 100.0])
    ours = Row(vs_release.WARM, lambda: None, 48, [40.0, 80.0, 50.0])
    header, table = vs_release.speed_table([release, ours], [vs_release.RELEASE], paired=vs_release.RELEASE)
    assert header[-2:] == ["vs release inference.py", "vs release inference.py, per round: median (range)"]
    assert table[1][-2:] == ["2.00x", "2.50x (2.00-2.50)"]
