"""Run plans (`--precision` resolved once), the tuner's measured decisions (with a fake clock), the
decision cache's failure modes, and the inference optimisations."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from libs.inference.optimize import Float32Island, fold_batchnorm, optimize_for_inference, prepare_model
from libs.modules import Decoder
from libs.networks import ImageModel, VideoModel
from libs.runtime import calibration, tuner
from libs.runtime.plan import RunPlan, plan_run
from libs.runtime.precision import PrecisionError, autocast_dtype, resolve_precision

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def decision_cache(monkeypatch, tmp_path):
    """Every test measures afresh, with a cache of its own."""
    monkeypatch.setenv(calibration.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / calibration.CACHE_FILE


def fake_timer(seconds: dict[str, float], order: list[str]) -> Callable[[], float]:
    """A clock that advances by `seconds[name]` across each call of candidate `name`, the
    candidates' names being appended to `order` as they run."""
    clock = [0.0]
    started = [False]

    def timer() -> float:
        if started[0]:
            clock[0] += seconds[order[-1]]
        started[0] = not started[0]
        return clock[0]

    return timer


def candidates_of(order: list[str], names: list[str]) -> dict[str, Callable[[], None]]:
    return {name: (lambda n=name: order.append(n)) for name in names}


def test_auto_is_float32_whatever_the_hardware(monkeypatch):
    for capability in ((9, 0), (7, 5)):  # no GPU capability or CPU flag decides it any more
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert resolve_precision("auto", "cpu") == "fp32"
        assert resolve_precision("auto", "cpu", training=True) == "fp32"
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, "cpu") == explicit


def test_time_alternately_rotates_the_order():
    order: list[str] = []
    times = calibration.time_alternately(candidates_of(order, ["a", "b", "c"]), rounds=3, warmup=1,
                                         timer=fake_timer({"a": 1.0, "b": 2.0, "c": 3.0}, order))
    assert order == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert times == {"a": [1.0] * 3, "b": [2.0] * 3, "c": [3.0] * 3}


@pytest.mark.parametrize("seconds, choice", [
    ({"fp32": 1.0, "x": 0.5, "y": 0.8}, "x"),     # clearly faster: chosen
    ({"fp32": 1.0, "x": 0.97, "y": 0.99}, "fp32"),  # within the margin: plain fp32
    ({"fp32": 1.0, "x": 1.5, "y": 2.0}, "fp32"),    # slower: never chosen
])
def test_pick_fastest_is_never_slower_than_the_baseline(seconds, choice):
    times = {name: [t, t * 1.01] for name, t in seconds.items()}
    decision = calibration.pick_fastest(times, "fp32")
    assert decision.choice == choice
    assert decision.ratios["fp32"] == pytest.approx(1.0)
    assert decision.ratios["x"] == pytest.approx(seconds["fp32"] / seconds["x"])
    assert choice in decision.describe()


def test_measured_choice_is_cached_per_machine(decision_cache):
    order: list[str] = []
    timer = fake_timer({"fp32": 1.0, "fast": 0.5}, order)
    first = calibration.measured_choice("what", candidates_of(order, ["fp32", "fast"]), "fp32", timer=timer)
    assert first.choice == "fast" and not first.cached and decision_cache.is_file()
    runs = len(order)
    again = calibration.measured_choice("what", candidates_of(order, ["fp32", "fast"]), "fp32", timer=timer)
    assert again.choice == "fast" and again.cached and len(order) == runs  # nothing run again
    assert "cached" in again.describe()
    # another input (key) or a choice no longer offered: measured again
    other = calibration.measured_choice("other", candidates_of(order, ["fp32", "slow"]), "fp32",
                                        timer=fake_timer({"fp32": 1.0, "slow": 3.0}, order))
    assert other.choice == "fp32" and not other.cached
    assert calibration.cached_decision(calibration.machine_key("cpu", "what"), ["fp32", "else"]) is None
    with pytest.raises(ValueError):
        calibration.measured_choice("what", candidates_of(order, ["a"]), "fp32")


def test_unreadable_cache_only_costs_a_measurement(decision_cache):
    decision_cache.parent.mkdir(parents=True)
    decision_cache.write_text("not json")
    order: list[str] = []
    decision = calibration.measured_choice("what", candidates_of(order, ["fp32", "fast"]), "fp32",
                                           timer=fake_timer({"fp32": 1.0, "fast": 0.1}, order))
    assert decision.choice == "fast"


def test_precision_names_and_errors():
    assert resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(PrecisionError):
        resolve_precision("off", "cpu")  # the retired --amp vocabulary
    assert autocast_dtype("bf16") is torch.bfloat16
    assert autocast_dtype("fp32") is None
    with pytest.raises(PrecisionError):
        resolve_precision("int8", "cpu")
    with pytest.raises(PrecisionError):
        autocast_dtype("auto")
    with pytest.raises(PrecisionError):
        resolve_precision("mixed", "cpu")  # the retired checked-decoder precision


def test_fp32_and_auto_run_the_model_itself():
    model = ImageModel().eval()
    assert optimize_for_inference(model, plan_run("inference", CPU, "fp32")) is model
    assert optimize_for_inference(model, plan_run("inference", CPU, "auto")) is model


def test_plans_are_resolved_by_arithmetic():
    """fp32 is the release's computation; auto on a CPU is float32 with the factored decoder
    (fewer operations, not timed); bf16 inference folds BatchNorm and uses channels-last."""
    assert plan_run("inference", CPU, "fp32").release
    auto = plan_run("inference", CPU, "auto")
    assert (auto.precision, auto.decoder, auto.channels_last, auto.fold_bn) == \
        ("fp32", "factored", False, False)
    assert "factored decoder" in auto.describe() and "fewer operations" in auto.describe()
    bf16 = plan_run("inference", CPU, "bf16")
    assert (bf16.precision, bf16.fold_bn, bf16.channels_last) == ("bf16", True, True)
    training = plan_run("training", CPU, "bf16")
    assert (training.decoder, training.channels_last, training.fold_bn) == ("release", True, False)
    with pytest.raises(PrecisionError):
        plan_run("inference", CPU, "int8")


def test_auto_puts_frames_side_by_side_with_two_threads_only(monkeypatch):
    """CPU inference with two torch threads (where it was measured): a clip's frames two at a time,
    one thread each; VideoModel's alone (`for_model`); never in fp32 or training."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    auto = plan_run("inference", CPU, "auto")
    assert auto.parallel_frames == 2 and not auto.release
    assert "2 frames side by side" in auto.describe() and "one thread each" in auto.describe()
    for kind in ("image", "fgplg"):
        other = auto.for_model(kind)
        assert other.parallel_frames == 1 and "side by side" not in other.describe()
    assert auto.for_model("video") is auto
    assert plan_run("inference", CPU, "fp32").parallel_frames == 1
    assert plan_run("training", CPU, "auto").parallel_frames == 1
    for threads in (1, 4):
        monkeypatch.setattr(torch, "get_num_threads", lambda threads=threads: threads)
        assert plan_run("inference", CPU, "auto").parallel_frames == 1


def test_predictor_builds_the_plans_frames_side_by_side(monkeypatch, tmp_path):
    from libs.inference import Predictor

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    plan = plan_run("inference", CPU, "auto")
    for model, kind, frames in ((VideoModel(), "video", 2), (ImageModel(), "image", 1)):
        torch.save(model.state_dict(), tmp_path / f"{kind}.pth")
        predictor = Predictor.from_checkpoint(tmp_path / f"{kind}.pth", plan)
        assert predictor.kind == kind and predictor.plan.parallel_frames == frames
        assert getattr(predictor.model, "parallel_frames", 1) == frames


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_batchnorm_keeps_the_output():
    torch.manual_seed(0)
    model = VideoModel().eval()
    for module in model.modules():  # running statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    clip = torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        expected = model(clip)
    bns = _bn_count(model)
    folded = prepare_model(model, RunPlan(CPU, fold_bn=True, channels_last=True)).model
    assert _bn_count(folded) == 0
    assert fold_batchnorm(ImageModel().eval()) == bns
    with torch.inference_mode():
        got = folded(clip.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (1, 2)))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert _bn_count(model) == bns  # the original is untouched


def test_bf16_autocast_and_float32_islands():
    torch.manual_seed(0)
    model = ImageModel().eval()
    fast = prepare_model(model, RunPlan(CPU, "bf16", fold_bn=True, channels_last=True),
                         float32_modules=["backbone.decoder.conv2"])
    assert isinstance(fast.model.backbone.decoder.conv2, Float32Island)
    assert fast.model.backbone.decoder.conv2.module.weight.dtype == torch.float32
    frames = torch.randn(2, 3, 64, 64)
    out = fast(frames)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 64, 64)
    with torch.no_grad():
        expected = model(frames)
    # random weights give logits in the thousands: compare relative to their magnitude
    assert (out - expected).abs().max() < 0.05 * expected.abs().max()


# ----------------------------------------------------------------------------- the scripts' defaults


def test_script_defaults_are_auto():
    import inference
    import train

    assert inference.build_parser().parse_args([]).precision == "auto"
    assert train.build_parser().parse_args([]).precision == "auto"
    assert train.build_parser().parse_args(["--precision", "fp32"]).precision == "fp32"


def test_auto_predictor_runs_the_factored_decoder_without_timing(monkeypatch):
    from libs.inference import Predictor

    timed: list[str] = []
    monkeypatch.setattr(calibration, "time_alternately", lambda *a, **k: timed.append("x"))
    torch.manual_seed(0)
    release = VideoModel().eval()
    model = VideoModel(decoder="factored").eval()
    model.load_state_dict(release.state_dict())
    clips = torch.randn(1, 2, 3, 48, 48)
    predictor = Predictor(model, plan_run("inference", CPU, "auto"))
    first = predictor(clips)
    assert not timed and "factored decoder" in predictor.describe()
    decoders = [m for m in predictor._runner.modules() if isinstance(m, Decoder)]
    assert decoders and all(d.decoder == "factored" for d in decoders)
    with torch.no_grad():
        expected = torch.sigmoid(release(clips))
    torch.testing.assert_close(first, expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(predictor(clips), first, atol=1e-5, rtol=0)


def test_fp32_predictor_is_the_faithful_model():
    from libs.inference import Predictor

    torch.manual_seed(0)
    model = VideoModel().eval()
    clips = torch.randn(2, 3, 3, 48, 48)
    predictor = Predictor(model, plan_run("inference", CPU, "fp32", "auto"))
    predictor(clips[:1])
    assert predictor._runner is model and not predictor.compiled and predictor.plan.compile == "off"
    with torch.no_grad():
        expected = torch.sigmoid(torch.stack(model(list(clips.unbind(1))), 1))  # the release's call
    assert torch.equal(predictor(clips), expected)


def test_inference_script_fp32_writes_the_faithful_maps(tmp_path, capsys):
    """inference.py --precision fp32: the PNGs hold exactly the release's 8-bit maps."""
    import inference
    from libs.datasets import get_transforms
    from libs.inference import FolderClips, resize_to_original, saliency_to_uint8

    torch.manual_seed(1)
    model = VideoModel().eval()
    checkpoint = tmp_path / "video.pth"
    torch.save(model.state_dict(), checkpoint)
    frames = tmp_path / "clip"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)).save(frames / f"{index:03d}.jpg")
    out = tmp_path / "results"
    status = inference.main(["--input", str(frames), "--checkpoint", str(checkpoint), "--results-folder",
                             str(out), "--size", "32", "-j", "0", "--device", "cpu", "--precision", "fp32"])
    assert status == 0, capsys.readouterr().err
    clip = torch.stack([f["image"] for f in FolderClips(frames, get_transforms(False, 32)["test"], 4)[0]])
    with torch.no_grad():
        probs = torch.sigmoid(torch.stack(model(list(clip[None].unbind(1))), 1))[0, :, 0]
    for index in range(4):
        expected = np.asarray(resize_to_original(saliency_to_uint8(probs[index]), 40, 52))
        assert np.array_equal(np.asarray(Image.open(out / "clip" / f"{index:03d}.png")), expected)


# ----------------------------------------------------------------------------- the tuner and its cache


def _candidates() -> dict[str, RunPlan]:
    base = RunPlan(CPU, auto=True, why="test")
    return {"fp32": base, "fp32, channels-last": base.replace(channels_last=True)}


def _work(calls: list[str]):
    def work(plan: RunPlan):
        name = "fp32, channels-last" if plan.channels_last else "fp32"
        return lambda: calls.append(name) or name
    return work


def _tune_with_clock(calls: list[str], notes: list[str], seconds: dict[str, float]) -> tuner.Tuned:
    real = calibration.time_alternately

    def clocked(candidates, rounds, warmup, timer=None):
        return real(candidates, rounds, warmup, fake_timer(seconds, calls))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(calibration, "time_alternately", clocked)
        return tuner.tune("what", _candidates(), "fp32", _work(calls), note=notes.append)


def test_tuner_keeps_the_chosen_output_and_says_why():
    calls: list[str] = []
    tuned = _tune_with_clock(calls, [], {"fp32": 1.0, "fp32, channels-last": 0.5})
    assert tuned.plan.channels_last and tuned.output == "fp32, channels-last"
    assert "2.00x fp32" in tuned.plan.describe() and "measured now" in tuned.plan.describe()
    assert calls.count("fp32") == tuner.calls_per_candidate()


def test_nothing_is_timed_twice(monkeypatch):
    """A decision is timed once per machine and input: the second run of the same job reads it
    from the cache and calls no candidate and no clock."""
    calls: list[str] = []
    _tune_with_clock(calls, [], {"fp32": 1.0, "fp32, channels-last": 0.5})
    timed = len(calls)
    again = tuner.tune("what", _candidates(), "fp32", _work(calls), note=pytest.fail)
    assert len(calls) == timed and again.decision.cached and again.output is None
    assert again.plan.channels_last and "cached measurement" in again.plan.describe()


def test_affordable_timing_is_at_most_the_share_of_a_pass():
    per = tuner.calls_per_candidate()
    assert tuner.affordable(2, int(2 * per / tuner.CHOOSING_SHARE))
    assert not tuner.affordable(2, int(2 * per / tuner.CHOOSING_SHARE) - 1)
    assert not tuner.affordable(1, 10**6)


@pytest.mark.parametrize("content, said", [
    ("{not json", "not a JSON object"),
    ("[1, 2]", "not a JSON object"),
    ('{"KEY": {"choice": "bf16 everywhere", "baseline": "fp32", "ratios": {}}}', "not a decision"),
    ('{"KEY": {"choice": "fp32", "baseline": "fp32", "ratios": {"fp32": "fast"}}}', "not a decision"),
    ('{"KEY": 3}', "not a decision"),
])
def test_corrupt_cache_or_entry_is_measured_again_with_one_note(decision_cache, content, said):
    key = calibration.machine_key(CPU, "what")
    decision_cache.parent.mkdir(parents=True, exist_ok=True)
    decision_cache.write_text(content.replace("KEY", key))
    calls: list[str] = []
    notes: list[str] = []
    tuned = _tune_with_clock(calls, notes, {"fp32": 1.0, "fp32, channels-last": 0.5})
    assert tuned.plan.channels_last and not tuned.decision.cached and calls
    assert len(notes) == 1 and said in notes[0] and str(decision_cache) in notes[0]
    again = tuner.tune("what", _candidates(), "fp32", _work(calls), note=pytest.fail)
    assert again.decision.cached  # the measurement replaced the bad cache


def test_unwritable_cache_is_measured_with_one_note(decision_cache):
    decision_cache.parent.parent.mkdir(parents=True, exist_ok=True)
    decision_cache.parent.write_text("a file where the cache folder should be")
    calls: list[str] = []
    notes: list[str] = []
    tuned = _tune_with_clock(calls, notes, {"fp32": 1.0, "fp32, channels-last": 2.0})
    assert tuned.plan == _candidates()["fp32"].replace(why=tuned.plan.why) and calls
    assert len(notes) == 1 and "cannot be written" in notes[0] and "measures again" in notes[0]


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(calibration.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert calibration.cache_path() == tmp_path / "xdg" / "rcrnet" / calibration.CACHE_FILE
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert calibration.cache_path() == tmp_path / "home" / ".cache" / "rcrnet" / calibration.CACHE_FILE
    monkeypatch.setenv(calibration.CACHE_ENV, str(tmp_path / "mine"))
    assert calibration.cache_path() == tmp_path / "mine" / calibration.CACHE_FILE
