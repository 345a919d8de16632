"""Shared fixtures: the release's reference keys, weights and golden outputs.

The reference material lives in `../shared/reference` beside the checkout (CI puts it
there); `RCRNET_REFERENCE` overrides the location. A missing folder is an error, not a
skip: the golden tests are what prove fidelity.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REFERENCE = Path(os.environ.get("RCRNET_REFERENCE", ROOT.parent / "shared" / "reference"))


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
def reference_dir() -> Path:
    if not (REFERENCE / "refweights.py").is_file():
        pytest.fail(f"reference folder not found at {REFERENCE} (set RCRNET_REFERENCE)")
    return REFERENCE


@pytest.fixture(scope="session")
def refweights(reference_dir: Path):
    """The `refweights` module of the reference folder."""
    spec = importlib.util.spec_from_file_location("refweights", reference_dir / "refweights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def reference_state_dict(reference_dir: Path, refweights):
    """`reference_state_dict(name)` -> the deterministic weights of keys/<name>.tsv."""

    def build(name: str) -> dict[str, torch.Tensor]:
        keys = refweights.read_keys(reference_dir / "keys" / f"{name}.tsv")
        return refweights.reference_state_dict(keys)

    return build


@pytest.fixture(scope="session")
def reference_keys(reference_dir: Path, refweights):
    """`reference_keys(name)` -> {key: (shape, dtype)} of keys/<name>.tsv."""

    def read(name: str):
        return refweights.read_keys(reference_dir / "keys" / f"{name}.tsv")

    return read


@pytest.fixture(scope="session")
def golden(reference_dir: Path):
    """`golden(name)` -> the dict stored in golden/<name>.pt."""

    def load(name: str) -> dict:
        return torch.load(reference_dir / "golden" / f"{name}.pt", weights_only=True)

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


DAVIS_SAMPLE = Path(
    os.environ.get("RCRNET_DAVIS_SAMPLE", ROOT.parent / "shared" / "data" / "DAVIS2016-sample")
)
DAVIS_SAMPLE_VIDEOS = {"car-shadow": 40, "libby": 49, "motocross-jump": 40}


@pytest.fixture(scope="session")
def davis_sample() -> Path:
    """The three real DAVIS 2016 validation videos of ../shared/data/DAVIS2016-sample (read in
    place, never copied); a missing folder is an error, not a skip."""
    if not (DAVIS_SAMPLE / "Annotations" / "480p" / "libby").is_dir():
        pytest.fail(f"DAVIS 2016 sample not found at {DAVIS_SAMPLE} (set RCRNET_DAVIS_SAMPLE)")
    return DAVIS_SAMPLE
