"""benchmarks/cuda_speed.py's dry run: the CUDA speed benchmark's code on the CPU at tiny sizes, so
that the benchmark prepared for a GPU keeps working without one."""
from __future__ import annotations

import json

import pytest
from test_benchmarks import load


@pytest.mark.slow
def test_dry_run_prints_every_table(tmp_path, capsys):
    results = tmp_path / "cuda_speed.json"
    # the training part is benchmarks/train_speed.py's main, run by its own smoke test
    argv = ["--dry-run", "--cache", str(tmp_path / "cache"), "--json", str(results), "--parts", "video",
            "pseudo_labels", "end_to_end", "flownet2"]
    assert load("cuda_speed").main(argv) == 0
    out = capsys.readouterr().out
    tables = json.loads(results.read_text())["tables"]
    assert [t["title"].split(" on ")[0] for t in tables] == [
        "VideoModel", "FGPLG pseudo-labels with FlowNet 2.0", "inference.py end to end"]
    video = {row[0]: row for row in tables[0]["rows"]}
    assert video["fp32 eager, no_grad, list of frames (release)"][2] == "1.00x"
    assert video["fp32 prepared, 2 clips"][4] == "yes"  # float32 stays within the inference tolerance
    assert all(row[0] in out for table in tables for row in table["rows"])
    assert [row[0].split(" (")[0] for row in tables[2]["rows"]] == ["--precision auto", "--precision fp32"]
    assert "| cpu | float32 |" in out  # FlowNet 2.0's table, from benchmarks/flownet2_speed.py
