"""`--memory`: keeping freed memory in the process (glibc), measured in turn, never changing a value."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from libs.runtime import allocator, calibration
from libs.runtime.allocator import GLIBC, KEPT, choose_memory, keep_freed_memory, keeps_freed_memory
from libs.runtime.errors import UserError
from tests.conftest import ROOT
from tests.test_precision import fake_timer

needs_glibc = pytest.mark.skipif(not allocator.can_keep_freed_memory(), reason="malloc is not glibc's")


@pytest.fixture(autouse=True)
def decision_cache(monkeypatch, tmp_path):
    """Each test with a decision cache of its own (conftest gives glibc's behaviour back afterwards)."""
    monkeypatch.setenv(calibration.CACHE_ENV, str(tmp_path / "cache"))


def test_glibc_first_is_glibc_untouched():
    """Asking for glibc's behaviour before anything else calls no mallopt (its dynamic thresholds stay)."""
    code = ("from libs.runtime import allocator\n"
            "calls = []\n"
            "allocator._libc = lambda: type('L', (), {'mallopt': lambda *a: calls.append(a) or 1,\n"
            "                                        'malloc_trim': lambda *a: 1})()\n"
            "assert allocator.keep_freed_memory(False) and calls == [], calls\n"
            "assert allocator.keep_freed_memory(True) and len(calls) == 2\n"
            "assert allocator.keep_freed_memory(True) and len(calls) == 2\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_time_in_turn_runs_each_candidate_in_one_block():
    order: list[str] = []
    candidates = {name: (lambda n=name: order.append(n)) for name in ("a", "b")}
    times = calibration.time_in_turn(candidates, rounds=2, warmup=1,
                                     timer=fake_timer({"a": 2.0, "b": 1.0}, order))
    assert order == ["a", "a", "a", "b", "b", "b"]
    assert times == {"a": [2.0, 2.0], "b": [1.0, 1.0]}


def test_explicit_choices_apply_without_measuring():
    ran: list[int] = []
    assert choose_memory("glibc", "x", lambda: ran.append(1)).choice == GLIBC
    decision = choose_memory("kept", "x", lambda: ran.append(1))
    assert decision.choice == KEPT and not decision.ratios and not ran
    assert keeps_freed_memory() == allocator.can_keep_freed_memory()
    assert choose_memory("auto", "x", lambda: ran.append(1), "cuda").choice == GLIBC and not ran
    with pytest.raises(UserError, match="--memory 'sometimes'"):
        choose_memory("sometimes", "x", lambda: None)


@needs_glibc
@pytest.mark.parametrize("faster", [True, False])
def test_auto_keeps_memory_only_where_it_measures_faster(monkeypatch, faster):
    order: list[str] = []

    def work() -> None:
        order.append(KEPT if keeps_freed_memory() else GLIBC)

    seconds = {GLIBC: 1.0, KEPT: 0.5 if faster else 0.98}
    real = calibration.measured_choice

    def clocked(what, candidates, baseline, device, **kwargs):
        return real(what, candidates, baseline, device, timer=fake_timer(seconds, order), **kwargs)

    monkeypatch.setattr(allocator, "measured_choice", clocked)
    decision = choose_memory("auto", "test work", work)
    assert order == [GLIBC] * 3 + [KEPT] * 3  # the baseline first, each in one block
    assert decision.choice == (KEPT if faster else GLIBC) and keeps_freed_memory() == faster
    keep_freed_memory(False)
    again = choose_memory("auto", "test work", work)
    assert again.cached and again.choice == decision.choice and len(order) == 6
    assert keeps_freed_memory() == faster


def test_predictor_values_do_not_depend_on_memory():
    from libs.inference import Predictor
    from libs.networks import VideoModel

    torch.manual_seed(0)
    model = VideoModel().eval()
    clips = torch.randn(1, 2, 3, 48, 48)
    glibc = Predictor(model, "cpu", precision="fp32", memory="glibc")(clips)
    lines: list[str] = []
    auto = Predictor(model, "cpu", precision="fp32", memory="auto", report=lines.append)
    assert torch.equal(auto(clips), glibc) and torch.equal(auto(clips), glibc)
    assert auto.memory in ("kept", "glibc") and auto.decisions
    if allocator.can_keep_freed_memory():
        assert len(lines) == 1 and lines[0].startswith("memory auto: ")
    kept = Predictor(model, "cpu", precision="fp32", memory="kept")
    assert torch.equal(kept(clips), glibc) and KEPT in kept.describe()
    with pytest.raises(UserError, match="--memory"):
        Predictor(model, "cpu", memory="always")


def test_scripts_take_memory():
    import generate_pseudo_labels
    import inference
    import train
    import train_fgplg

    for script in (inference, train, train_fgplg, generate_pseudo_labels):
        parser = script.build_parser()
        assert parser.parse_args([]).memory == "auto"
        assert parser.parse_args(["--memory", "kept"]).memory == "kept"
        with pytest.raises(SystemExit):
            parser.parse_args(["--memory", "always"])


def test_inference_starts_without_the_metrics_and_the_training_engine():
    """inference.py's imports leave out PySODMetrics (scikit-learn: about a second), torchvision
    (1.4 s: its detection ops import torch._dynamo) and the engine."""
    left_out = ("py_sod_metrics", "sklearn", "torchvision", "torch._dynamo", "libs.engine")
    code = f"import sys, inference\nprint(sorted(m for m in {left_out!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_loading_a_checkpoint_imports_neither_dynamo_nor_sympy(tmp_path):
    """Checkpoints are built on the meta device without `normal_` (which imports torch._dynamo
    there, 1.4 s) or `to_empty` (whose empty_like imports sympy, 0.3 s)."""
    path = tmp_path / "image.pth"
    code = ("import sys, torch\n"
            "from libs.networks import ImageModel\n"
            f"torch.save(ImageModel().state_dict(), {str(path)!r})\n"
            "from libs.networks.weights import model_from_checkpoint\n"
            f"model, kind = model_from_checkpoint({str(path)!r})\n"
            "assert kind == 'image' and not any(p.is_meta for p in model.state_dict().values())\n"
            "print(sorted(m for m in ('torch._dynamo', 'sympy', 'torchvision') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
