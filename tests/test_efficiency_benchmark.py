"""A dry run of benchmarks/efficiency.py (tiny frames, one round) so that it keeps working."""
from __future__ import annotations

import json

import pytest
from test_benchmarks import load


@pytest.mark.slow
def test_efficiency_dry_run(tmp_path, capsys):
    result = tmp_path / "efficiency.json"
    argv = ["--size", "32", "--clip", "2", "--rounds", "1", "--warmup", "0", "--matmul-size", "128",
            "--matmul-repeats", "1", "--json", str(result)]
    assert load("efficiency").main(argv) == 0
    out = capsys.readouterr().out
    assert "| default (--precision auto) |" in out and "| release (--precision fp32) |" in out
    assert "| default | ASPP |" in out and "% of matmul peak" in out
    saved = json.loads(result.read_text())
    assert saved["machine"] and saved["matmul"]["gflops"] > 0
    paths = saved["paths"]
    default, release = paths["default (--precision auto)"], paths["release (--precision fp32)"]
    # the factored decoder is fewer operations than the release's resize-then-conv
    assert 0 < default["gflop_per_frame"] < release["gflop_per_frame"]
    stages = default["stages"]
    assert sum(s["gflop_per_frame"] for s in stages.values()) <= default["gflop_per_frame"] * (1 + 1e-9)
    assert all(s["gflop_per_frame"] > 0 for s in stages.values())
    # at 32x32 ASPP's map is 2x2: its dilated branches' off-centre taps all read padding
    aspp = stages["ASPP"]
    assert 0 < aspp["gflop_per_frame_without_padding"] < aspp["gflop_per_frame"]
    assert "| default | ASPP without products with padding |" in out


def test_stage_seconds_are_the_stages_share_of_the_cores():
    """Frames side by side run a stage in two one-thread workers at once: each call counts for the
    threads it used, out of the model's, so two overlapping one-thread calls on two threads take
    the wall time of one, and a call on both threads its whole length."""
    core_seconds = load("efficiency").core_seconds
    assert core_seconds([(0.0, 2.0, 1), (0.0, 2.0, 1)], 2) == 2.0
    assert core_seconds([(0.0, 2.0, 1), (1.0, 3.0, 1), (5.0, 6.0, 2)], 2) == 3.0
    assert core_seconds([], 2) == 0.0
