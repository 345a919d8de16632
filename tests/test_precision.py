"""Precision selection (`auto`'s measured decisions, with a fake clock) and the inference optimisations."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from libs.inference import predictor as predictor_module
from libs.inference.optimize import Float32Island, fold_batchnorm, optimize_for_inference, prepare_model
from libs.inference.predictor import AUTO_CANDIDATES
from libs.modules import Decoder
from libs.networks import ImageModel, VideoModel, set_exact_upsampled_conv
from libs.runtime import calibration
from libs.runtime.precision import PrecisionError, autocast_dtype, resolve_precision


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


def test_fp32_is_the_model_itself():
    model = ImageModel().eval()
    assert optimize_for_inference(model, "fp32", "cpu") is model
    assert optimize_for_inference(model, "auto", "cpu") is model


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
    folded = prepare_model(model, "fp32", "cpu").model
    assert _bn_count(folded) == 0
    assert fold_batchnorm(ImageModel().eval()) == bns
    with torch.inference_mode():
        got = folded(clip.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (1, 2)))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert _bn_count(model) == bns  # the original is untouched


def test_bf16_autocast_and_float32_islands():
    torch.manual_seed(0)
    model = ImageModel().eval()
    fast = prepare_model(model, "bf16", "cpu", float32_modules=["backbone.decoder.conv2"])
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


def _measured_as(monkeypatch, winner: str) -> None:
    """Make `measured_choice` pick `winner` (the timer says every other option takes 1 s, it 0.1 s)."""
    real = calibration.measured_choice

    def rigged(what, candidates, baseline, device="cpu", **kwargs):
        order: list[str] = []
        timed = {name: (lambda n=name, run=run: (order.append(n), run())) for name, run in candidates.items()}
        seconds = {name: 0.1 if name == winner else 1.0 for name in candidates}
        return real(what, timed, baseline, device, timer=fake_timer(seconds, order), use_cache=False)

    monkeypatch.setattr(predictor_module, "measured_choice", rigged)


@pytest.mark.parametrize("winner", list(AUTO_CANDIDATES))
def test_auto_predictor_runs_the_measured_choice(monkeypatch, winner):
    from libs.inference import Predictor

    _measured_as(monkeypatch, winner)
    torch.manual_seed(0)
    model = VideoModel().eval()
    clips = torch.randn(1, 2, 3, 48, 48)
    lines: list[str] = []
    predictor = Predictor(model, "cpu", precision="auto", report=lines.append)
    assert predictor.precision == "fp32" and "auto" in predictor.describe()
    first = predictor(clips)
    assert predictor.chosen == winner and winner in predictor.describe()
    assert len(lines) == 1 and lines[0].startswith("precision auto: " + winner)
    decoders = [m for m in predictor._runner.modules() if isinstance(m, Decoder)]
    assert decoders and all(d.exact_upsampled_conv == AUTO_CANDIDATES[winner]["factored_decoder"]
                            for d in decoders)
    with torch.no_grad():
        expected = torch.sigmoid(model(clips))
    torch.testing.assert_close(first, expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(predictor(clips), first, atol=1e-5, rtol=0)


def test_fp32_predictor_is_the_faithful_model():
    from libs.inference import Predictor

    torch.manual_seed(0)
    model = VideoModel().eval()
    clips = torch.randn(2, 3, 3, 48, 48)
    predictor = Predictor(model, "cpu", precision="fp32", compile="auto")
    predictor(clips[:1])
    assert predictor._runner is model and not predictor.compiled and not predictor.decisions
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
    set_exact_upsampled_conv(model, False)  # the release's decoder, as --precision fp32
    with torch.no_grad():
        probs = torch.sigmoid(torch.stack(model(list(clip[None].unbind(1))), 1))[0, :, 0]
    for index in range(4):
        expected = np.asarray(resize_to_original(saliency_to_uint8(probs[index]), 40, 52))
        assert np.array_equal(np.asarray(Image.open(out / "clip" / f"{index:03d}.png")), expected)
