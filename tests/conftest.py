"""Shared fixtures: the release's reference keys, weights and golden outputs, and the real DAVIS sample.

The reference material is part of the repository (`tests/reference/`: the key lists and the
golden inputs and outputs); the weights are made from the key lists by `reference_weights.py`.
The real DAVIS 2016 sample is not: tests that read it skip, saying so, where it is absent.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reference_weights import REFERENCE, key_list, weights_for  # noqa: E402

# material this project keeps beside the checkout (absent in a clone elsewhere)
SHARED = ROOT.parent / "shared"


# set to 1: the `cuda` tests run with the CPU standing in for the GPU (a check of the tests themselves)
CUDA_STAND_IN = "RCRNET_CUDA_TESTS_ON_CPU"


def pytest_configure(config):
    """Under pytest-xdist (`-n N`), each worker gets its share of the cores: N workers with every
    core's thread each would oversubscribe the machine. Scripts the tests start inherit it."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip, saying why, where there is no GPU."""
    if torch.cuda.is_available() or os.environ.get(CUDA_STAND_IN) == "1":
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU (none here; {CUDA_STAND_IN}=1 runs it on the CPU)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cuda_device() -> torch.device:
    """The GPU the `cuda` tests run on (the current CUDA device), or the CPU standing in for it."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (read by `_free_disk`)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _free_disk(request):
    """Delete a passing test's tmp_path as soon as it ends: the training tests write checkpoints
    of hundreds of MB, and a whole run would otherwise keep over 15 GB on disk."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    report = getattr(request.node, "report_call", None)
    if folder is not None and report is not None and report.passed:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _decision_cache(tmp_path_factory):
    """One cache of measured decisions (`--precision auto`, `--compile auto`) for the whole run:
    scripts run in-process measure each input shape once, and nothing is written to ~/.cache."""
    from libs.runtime.calibration import CACHE_ENV

    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("decisions"))
    yield
    if saved is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = saved


@pytest.fixture(scope="session")
def reference_state_dict():
    """`reference_state_dict(name)` -> the deterministic weights of keys/<name>.tsv."""

    def build(name: str) -> dict[str, torch.Tensor]:
        return weights_for(key_list(name))

    return build


@pytest.fixture(scope="session")
def reference_keys():
    """`reference_keys(name)` -> {key: (shape, dtype)} of keys/<name>.tsv."""
    return key_list


@pytest.fixture(scope="session")
def golden():
    """`golden(name)` -> the dict stored in golden/<name>.pt."""

    def load(name: str) -> dict:
        return torch.load(REFERENCE / "golden" / f"{name}.pt", weights_only=True)

    return load


def _limit_threads(count: int):
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, count))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_threads():
    """At most two torch threads for a module's tests (CI has two cores); use with `usefixtures`."""
    yield from _limit_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (many small ops, where threads only cost)."""
    yield from _limit_threads(1)


def assert_one_line_error(main, argv: list[str], capsys, message: str) -> None:
    """`main(argv)` fails with exit status 2 and one stderr line holding `message`, no traceback
    (argparse's usage errors exit through SystemExit, the scripts' own errors return 2)."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, (argv, err)
    assert message in err and "Traceback" not in err, (argv, err)
    assert len(err.strip().splitlines()) == 1, (argv, err)


DAVIS_SAMPLE = Path(os.environ.get("RCRNET_DAVIS_SAMPLE", SHARED / "data" / "DAVIS2016-sample"))
DAVIS_SAMPLE_VIDEOS = {"car-shadow": 40, "libby": 49, "motocross-jump": 40}


@pytest.fixture(scope="session")
def davis_sample() -> Path:
    """The three real DAVIS 2016 validation videos of ../shared/data/DAVIS2016-sample (read in
    place, never copied); the test skips where they are absent."""
    return need_davis_sample()


def need_davis_sample() -> Path:
    """The DAVIS 2016 sample's folder, or skip the test saying what it needs."""
    if not (DAVIS_SAMPLE / "Annotations" / "480p" / "libby").is_dir():
        pytest.skip(f"needs the real DAVIS 2016 sample (videos {', '.join(sorted(DAVIS_SAMPLE_VIDEOS))}) "
                    f"at {DAVIS_SAMPLE} or $RCRNET_DAVIS_SAMPLE")
    return DAVIS_SAMPLE
