"""scripts/semi_supervised_pipeline.py end to end, tiny: every step runs, results are written,
and a second run reuses every step's output."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--videos", "2", "--frames", "10", "--vos-frames", "30", "--images", "8", "--image-epochs", "1",
        "--fgplg-epochs", "1", "--video-epochs", "1", "--size", "32"]


def _pipeline():
    return importlib.import_module("scripts.semi_supervised_pipeline")


@pytest.mark.slow
def test_command_line_errors_are_one_line_and_nothing_is_deleted(tmp_path):
    """`python -m scripts.semi_supervised_pipeline` from the checkout: a bad flag and a --fresh
    aimed at a folder the pipeline did not write are one line each, exit status 2."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    for flags, message in ((["--threads", "0"], "argument --threads: must be at least 1, got 0"),
                           (["--out", str(mine), "--fresh"], "refusing to delete it")):
        done = subprocess.run([sys.executable, "-m", "scripts.semi_supervised_pipeline", *flags], cwd=ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert message in done.stderr
    assert (mine / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_pipeline_runs_every_step_and_resumes(tmp_path):
    pipeline = _pipeline()
    out = tmp_path / "run"
    results = pipeline.Pipeline(pipeline.parse_args(["--out", str(out), *TINY])).main()
    for key in ("a_warp", "b_fgplg", "c_pseudo", "c_sparse"):
        assert results[key]["frames"] > 0, key
        for metric in ("MAE", "S", "maxF"):
            assert 0 <= results[key][metric] <= 1, (key, metric)
    assert json.loads((out / "results.json").read_text())["b_fgplg"] == results["b_fgplg"]
    assert "(c) RCRNet+NER on sparse ground truth only" in (out / "results.md").read_text()
    assert (out / "pseudo-fgplg" / "1_5" / "DAVIS2016").is_dir()
    log = (out / "pipeline.log").read_text()
    again = pipeline.Pipeline(pipeline.parse_args(["--out", str(out), *TINY])).main()
    assert (out / "pipeline.log").read_text().count("fgplg: ") == log.count("fgplg: ")  # not retrained
    assert again["b_fgplg"] == results["b_fgplg"] and again["c_pseudo"] == results["c_pseudo"]
