"""Precision selection (hardware detection mocked) and the inference optimisations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from libs.inference.checked_decoder import CheckedDecoder
from libs.inference.optimize import Float32Island, fold_batchnorm, optimize_for_inference, prepare_model
from libs.networks import ImageModel, VideoModel
from libs.runtime import precision
from libs.runtime.precision import PrecisionError, autocast_dtype, resolve_precision


@pytest.fixture
def cpu_bf16(monkeypatch):
    """`cpu_bf16(True/False)` makes the CPU probe report native bfloat16 or not."""

    def set_native(native: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)

    return set_native


@pytest.mark.parametrize("native, inference, training", [(True, "mixed", "bf16"), (False, "fp32", "fp32")])
def test_auto_follows_cpu_bf16(cpu_bf16, native, inference, training):
    cpu_bf16(native)
    assert resolve_precision("auto", "cpu") == inference
    assert resolve_precision("auto", "cpu", training=True) == training
    for explicit in ("fp32", "bf16", "fp16", "mixed"):
        assert resolve_precision(explicit, "cpu") == explicit


@pytest.mark.parametrize("capability, native", [((8, 0), True), ((9, 0), True), ((7, 5), False)])
def test_auto_follows_cuda_capability(monkeypatch, capability, native):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto", "cuda") == ("mixed" if native else "fp32")
    assert resolve_precision("auto", "cuda", training=True) == ("bf16" if native else "fp32")


def test_cpu_probe_falls_back_to_cpuinfo_flags(monkeypatch):
    monkeypatch.setattr(precision, "_torch_cpu_check", lambda name: None)
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx512f", "amx_bf16", "amx_tile"}))
    assert precision.cpu_has_native_bf16()
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert not precision.cpu_has_native_bf16()
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert precision.cpu_has_native_bf16()


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
        resolve_precision("mixed", "cpu", training=True)


def test_fp32_is_the_model_itself(cpu_bf16):
    cpu_bf16(True)
    model = ImageModel().eval()
    assert optimize_for_inference(model, "fp32", "cpu") is model
    cpu_bf16(False)
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


def _trained_like_decoder(seed: int = 0) -> nn.Module:
    """An RCRNet decoder with BatchNorm statistics and a logit conv that cancels like a trained one."""
    torch.manual_seed(seed)
    decoder = ImageModel().backbone.decoder.eval()
    bn = decoder.conv1.bn
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 2.0)
    decoder.conv1.conv.weight.data.normal_(0, 0.05)
    decoder.conv2.weight.data.normal_(0, 1.0)
    return decoder


def test_checked_decoder_matches_float32_in_8_bits():
    decoder = _trained_like_decoder()
    checked = CheckedDecoder(decoder)
    x = torch.relu(torch.randn(2, 128, 40, 48)) * 3
    with torch.no_grad():
        expected = decoder(x)
        logits, bound = checked.dense(x)
        got = checked(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    # the bf16 logits alone are off by more than the 8-bit tolerance allows ...
    assert (logits - expected).abs().max() > 0.05
    # ... the error estimate covers the actual error with a wide margin ...
    assert ((logits - expected).abs() <= bound / 2).all()
    # ... and after the float32 recomputation the 8-bit maps are float32's
    for scale in (lambda p: (p * 255).round(), lambda p: (p * 255).floor()):
        diff = (scale(torch.sigmoid(got)) - scale(torch.sigmoid(expected))).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
    assert 0 < checked.last_recomputed < 1


def test_mixed_precision_replaces_the_decoder_only(cpu_bf16):
    cpu_bf16(True)
    model = VideoModel().eval()
    fast = optimize_for_inference(model, "auto", "cpu")
    assert fast.precision == "mixed"
    assert isinstance(fast.model.backbone.decoder, CheckedDecoder)
    assert not isinstance(model.backbone.decoder, CheckedDecoder)
    clip = torch.randn(1, 2, 3, 64, 64)
    out = fast(clip)
    assert out.shape == (1, 2, 1, 64, 64) and out.dtype == torch.float32
    with pytest.raises(ValueError):
        prepare_model(nn.Sequential(nn.Conv2d(3, 3, 1)), "mixed", "cpu")


# ----------------------------------------------------------------------------- the scripts' defaults


@pytest.mark.parametrize("native", [True, False])
def test_script_defaults_follow_the_hardware(cpu_bf16, native):
    import inference
    import train
    from libs.inference import Predictor
    from libs.runtime.precision import resolve_precision

    cpu_bf16(native)
    args = inference.build_parser().parse_args([])
    predictor = Predictor(VideoModel(), "cpu", precision=args.precision)
    assert predictor.precision == ("mixed" if native else "fp32")
    assert (predictor.runner is predictor.model) == (not native)
    train_args = train.build_parser().parse_args([])
    assert train_args.precision == "auto"
    assert resolve_precision(train_args.precision, "cpu", training=True) == ("bf16" if native else "fp32")
    assert train.build_parser().parse_args(["--precision", "fp32"]).precision == "fp32"


def test_fp32_predictor_is_the_faithful_model(cpu_bf16):
    cpu_bf16(True)
    from libs.inference import Predictor

    torch.manual_seed(0)
    model = VideoModel().eval()
    clips = torch.randn(2, 3, 3, 48, 48)
    predictor = Predictor(model, "cpu", precision="fp32", compile="auto")
    predictor.plan(10**6)  # a long run compiles only with reduced precision
    assert predictor.runner is model and not predictor.compiled
    with torch.no_grad():
        expected = torch.sigmoid(torch.stack(model(list(clips.unbind(1))), 1))  # the release's call
    assert torch.equal(predictor(clips), expected)


def test_inference_script_fp32_writes_the_faithful_maps(cpu_bf16, tmp_path, capsys):
    """inference.py --precision fp32: the PNGs hold exactly the release's 8-bit maps."""
    import inference
    from libs.datasets import get_transforms
    from libs.inference import FolderClips, resize_to_original, saliency_to_uint8

    cpu_bf16(True)
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
