"""benchmarks/cuda_check.py: its guarded checks, its NCCL probe (with gloo), and a CPU dry run of
the whole script, so that the check prepared for a GPU keeps working without one."""
from __future__ import annotations

import json
import socket

import pytest
import torch
from test_benchmarks import load

CORRECTNESS_SECTIONS = ("golden", "ops", "maps", "training", "torchrun")


@pytest.fixture(scope="module")
def cuda_check():
    return load("cuda_check")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_check_is_recorded_and_the_run_goes_on(cuda_check, tmp_path):
    plan = cuda_check.make_plan(True, None, "off")
    run = cuda_check.Run(tmp_path, plan, torch.device("cpu"), {})
    run.begin("golden")
    run.check("passes", lambda: cuda_check.Outcome("fine", {"x": 1}))
    run.check("raises", lambda: 1 / 0)
    run.check("needs a GPU", lambda: cuda_check.Outcome("never"), cuda_only="CUDA graphs")
    run.begin("video_speed")
    run.check("speed fails", lambda: cuda_check.Outcome("slow", passed=False))
    run.check("no time left", lambda: cuda_check.Outcome("never"), needs=1e9)
    statuses = [(r.name, r.status) for r in run.records]
    assert statuses == [("passes", "pass"), ("raises", "fail"), ("needs a GPU", "skip"),
                        ("speed fails", "fail"), ("no time left", "skip")]
    assert run.records[1].reason == "ZeroDivisionError: division by zero"
    assert run.records[2].reason == "CUDA graphs needs CUDA"
    assert run.records[4].reason.startswith("time budget")
    written = json.loads((tmp_path / "cuda_check.json").read_text())
    assert set(written["sections"]) == set(cuda_check.SECTIONS)
    assert written["exit_status"] == 1  # the correctness failure; the speed one does not count
    assert written["counts"]["correctness"] == {"pass": 1, "fail": 1, "skip": 1}
    assert "| golden | raises | fail | ZeroDivisionError: division by zero |" in run.table()


def test_failure_reason_is_the_workers_error(cuda_check):
    log = "\n".join([
        "[rank1]: Traceback (most recent call last):",
        "[rank1]: torch.distributed.DistBackendError: NCCL error in: NCCLUtils.cpp:94, invalid usage",
        "[rank1]: ncclInvalidUsage: This usually reflects invalid usage of NCCL library.",
        "[rank1]: Last error:",
        "[rank1]: Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 1a000",
        "E1202 06:52:36 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1)",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
        "benchmarks/cuda_check.py FAILED",
    ])
    reason = cuda_check.Finished("probe", 1, 2.0, log).failure()
    assert reason.startswith("probe exited with 1: torch.distributed.DistBackendError: NCCL error")
    assert reason.endswith("(Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 1a000)")
    assert cuda_check.Finished("run", None, 61.0, "").failure() == "run: killed after 61 s (time limit)"


def test_nccl_probe_runs_with_gloo(cuda_check, tmp_path, monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(name, value)
    assert cuda_check.nccl_probe(tmp_path / "probe.json", "cpu") == 0
    found = json.loads((tmp_path / "probe.json").read_text())
    assert found == {"backend": "gloo", "world_size": 1, "all_reduce": True, "ddp_gradients_averaged": True,
                     "same_on_every_rank": True, "nccl": None}


@pytest.mark.slow
def test_dry_run_writes_every_section_and_passes(cuda_check, tmp_path, capsys):
    out = tmp_path / "out"
    status = cuda_check.main(["--out", str(out), "--dry-run", "--cache", str(tmp_path / "cache")])
    printed = capsys.readouterr().out
    results = json.loads((out / "cuda_check.json").read_text())
    records = [r for section in results["sections"].values() for r in section]
    failed = [(r["section"], r["name"], r["reason"] or r["text"]) for r in records if r["status"] == "fail"]
    assert status == 0 and results["exit_status"] == 0, failed
    assert list(results["sections"]) == list(cuda_check.SECTIONS)
    assert all(results["sections"][name] for name in cuda_check.SECTIONS)
    for name in CORRECTNESS_SECTIONS:
        passed = [r for r in results["sections"][name] if r["status"] == "pass"]
        assert passed, f"no correctness check of {name} ran on the CPU"
    assert not failed, failed
    skipped = [r for r in records if r["status"] == "skip"]
    assert all(r["reason"] for r in skipped)
    # the table comes last, one row per check
    table = printed[printed.rindex("| section | check | result | numbers |"):]
    assert table.count("\n| ") >= len(records)
    assert (out / "logs" / "maps_cpu.log").is_file()
    assert results["plan"]["dry_run"] and results["meta"]["device"] == "cpu"
