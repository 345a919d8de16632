"""FlowNet2: reference keys, golden output, parts, autocast, any-size helper, NVIDIA checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flownet2.checkpoint import CheckpointError, load_flownet2_checkpoint
from flownet2.models import FlowNet2, FlowNetC, FlowNetFusion, FlowNetS, FlowNetSD
from flownet2.padding import estimate_flow, padded_length, resized_length

GOLDEN_RTOL = 1e-6


pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def reference_weights(reference_state_dict) -> dict[str, torch.Tensor]:
    return reference_state_dict("flownet2")


def _with_weights(weights: dict[str, torch.Tensor], **kwargs: float) -> FlowNet2:
    """A FlowNet2 in eval mode holding `weights` (built on the meta device: no init, no copy)."""
    with torch.device("meta"):
        model = FlowNet2(**kwargs)
    model.load_state_dict(weights, strict=True, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def model32(reference_weights) -> FlowNet2:
    return _with_weights(reference_weights)


def test_state_dict_matches_reference_keys(reference_keys):
    reference = reference_keys("flownet2")
    with torch.device("meta"):
        ours = FlowNet2().state_dict()
    assert list(ours) == list(reference)
    for key, tensor in ours.items():
        shape, dtype = reference[key]
        assert tuple(tensor.shape) == shape, key
        assert str(tensor.dtype).removeprefix("torch.") == dtype, key


def test_golden_output_float64(golden, reference_weights):
    case = golden("flownet2")
    assert case["model"] == "FlowNet2"
    model = _with_weights({k: v.double() for k, v in reference_weights.items()}, rgb_max=case["rgb_max"])
    with torch.no_grad():
        output = model(case["input"])
    expected = case["output"]
    assert output.shape == expected.shape == (1, 2, 128, 128)
    assert output.dtype == torch.float64
    scale = expected.abs().max()
    assert (output - expected).abs().max() <= GOLDEN_RTOL * scale


def test_batch_items_are_independent(model32):
    """Normalisation is per sample: a batch gives each item's own result."""
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 2, 64, 64)
    frames[1] *= 0.5
    with torch.no_grad():
        batched = model32(frames)
        single = torch.cat([model32(frames[i : i + 1]) for i in range(2)])
    assert batched.shape == (2, 2, 64, 64)
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4 * single.abs().max().item())


def test_parts_output_shapes(model32):
    x = torch.randn(1, 6, 64, 128)
    with torch.no_grad():
        for part, channels in ((model32.flownetc, 6), (model32.flownets_1, 12), (model32.flownets_d, 6)):
            flows = part.multiscale(torch.randn(1, channels, 64, 128))
            assert [f.shape[-2:] for f in flows] == [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]
            assert all(f.shape[:2] == (1, 2) for f in flows)
        assert model32.flownetc(x).shape == (1, 2, 16, 32)
        assert model32.flownetfusion(torch.randn(1, 11, 64, 128)).shape == (1, 2, 64, 128)
    assert isinstance(model32.flownetc, FlowNetC)
    assert isinstance(model32.flownets_2, FlowNetS)
    assert isinstance(model32.flownets_d, FlowNetSD)
    assert isinstance(model32.flownetfusion, FlowNetFusion)
    assert model32.flownets_1.upsampled_flow6_to_5.bias is None
    assert model32.flownetc.upsampled_flow6_to_5.bias is not None


def test_rejects_bad_input_shapes(model32):
    with pytest.raises(ValueError, match="multiples of 64"):
        model32(torch.rand(1, 3, 2, 75, 100))
    with pytest.raises(ValueError, match=r"\[B, 3, 2, H, W\]"):
        model32(torch.rand(1, 2, 3, 64, 64))


def test_bf16_autocast_forward(model32):
    torch.manual_seed(1)
    frames = torch.rand(1, 3, 2, 64, 64)
    with torch.no_grad():
        reference = model32(frames)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model32(frames)
    assert output.shape == reference.shape
    assert torch.isfinite(output).all()
    relative = (output.float() - reference).norm() / reference.norm()
    assert relative < 0.05, f"bf16 autocast differs from float32 by {relative:.3f} (relative L2)"


def test_size_helpers():
    assert [padded_length(n) for n in (1, 64, 65, 100, 448)] == [64, 64, 128, 128, 448]
    assert [resized_length(n) for n in (1, 75, 100, 96, 448)] == [64, 64, 128, 128, 448]


def test_estimate_flow_any_size_with_flownet2(model32):
    torch.manual_seed(2)
    frame0, frame1 = torch.rand(2, 1, 3, 75, 100).unbind(0)
    with torch.no_grad():
        flow = estimate_flow(model32, frame0, frame1)
        # Same as padding by hand: 128x128, 26 rows above / 27 below, 14 columns left / 14 right.
        pad = (14, 14, 26, 27)
        padded = torch.stack([nn.functional.pad(f, pad, mode="replicate") for f in (frame0, frame1)], dim=2)
        expected = model32(padded)[..., 26 : 26 + 75, 14 : 14 + 100]
    assert flow.shape == (1, 2, 75, 100)
    assert torch.isfinite(flow).all()
    torch.testing.assert_close(flow, expected)


class _FirstFrameAsFlow(nn.Module):
    """Stub network returning frame 0's first two channels as 'flow': shows where pixels land."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        assert frames.shape[-2] % 64 == 0 and frames.shape[-1] % 64 == 0
        return frames[:, :2, 0]


class _ConstantFlow(nn.Module):
    """Stub network predicting the same displacement (u, v) everywhere, in its input's pixels."""

    def __init__(self, u: float, v: float) -> None:
        super().__init__()
        self.uv = (u, v)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        assert frames.shape[-2] % 64 == 0 and frames.shape[-1] % 64 == 0
        flow = frames.new_empty(frames.shape[0], 2, *frames.shape[-2:])
        flow[:, 0], flow[:, 1] = self.uv
        return flow


def test_estimate_flow_pad_mode_keeps_pixels_and_scale():
    frame0 = torch.rand(2, 3, 75, 100)
    flow = estimate_flow(_FirstFrameAsFlow(), frame0, torch.rand(2, 3, 75, 100), mode="pad")
    assert torch.equal(flow, frame0[:, :2])
    flow = estimate_flow(_ConstantFlow(3.0, -2.0), frame0, frame0, mode="pad")
    assert torch.equal(flow, torch.tensor([3.0, -2.0]).view(1, 2, 1, 1).expand(2, 2, 75, 100))


def test_estimate_flow_resize_mode_rescales_flow():
    # 75x100 runs at 64x128: a displacement of (u, v) there is (u * 100/128, v * 75/64) here.
    frame = torch.rand(1, 3, 75, 100)
    flow = estimate_flow(_ConstantFlow(3.0, -2.0), frame, frame, mode="resize")
    assert flow.shape == (1, 2, 75, 100)
    torch.testing.assert_close(flow[:, 0], torch.full((1, 75, 100), 3.0 * 100 / 128))
    torch.testing.assert_close(flow[:, 1], torch.full((1, 75, 100), -2.0 * 75 / 64))
    # Already a multiple of 64: passed through untouched.
    frame = torch.rand(1, 3, 64, 128)
    assert torch.equal(estimate_flow(_FirstFrameAsFlow(), frame, frame, mode="resize"), frame[:, :2])
    with pytest.raises(ValueError, match="mode"):
        estimate_flow(_FirstFrameAsFlow(), frame, frame, mode="crop")


def _tiny_nvidia_checkpoint(reference_keys) -> tuple[dict, dict[str, float]]:
    """NVIDIA's layout with every tensor a broadcast scalar (a few KB on disk), and the scalar per key."""
    values = {key: float(i) for i, key in enumerate(reference_keys("flownet2"))}
    shapes = {key: shape for key, (shape, _) in reference_keys("flownet2").items()}
    state_dict = {key: torch.full((1,), values[key]).expand(shapes[key]) for key in values}
    return {"epoch": 0, "state_dict": state_dict, "best_EPE": 1e10}, values


def test_loads_nvidia_style_checkpoint(tmp_path, reference_keys):
    checkpoint, values = _tiny_nvidia_checkpoint(reference_keys)
    path = tmp_path / "FlowNet2_checkpoint.pth.tar"
    # The legacy (pre-1.6) serialisation, as PyTorch 0.4 wrote it.
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    model = FlowNet2.from_checkpoint(path)
    state = model.state_dict()
    assert set(state) == set(values)
    assert all(bool((state[key] == value).all()) for key, value in values.items())


def test_broken_checkpoint_errors_clearly(tmp_path, reference_keys):
    checkpoint, _ = _tiny_nvidia_checkpoint(reference_keys)
    state_dict = checkpoint["state_dict"]
    del state_dict["flownetc.conv1.0.bias"]
    state_dict["flownetc.corr.weight"] = torch.zeros(1)
    state_dict["flownets_1.conv1.0.weight"] = torch.zeros(64, 6, 7, 7)
    path = tmp_path / "broken.pth.tar"
    torch.save(checkpoint, path)
    with torch.device("meta"):
        model = FlowNet2()
    with pytest.raises(CheckpointError) as info:
        load_flownet2_checkpoint(model, path)
    message = str(info.value)
    for text in ("flownetc.conv1.0.bias", "flownetc.corr.weight", "flownets_1.conv1.0.weight", str(path)):
        assert text in message
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage"):
        load_flownet2_checkpoint(model, garbage)


def test_fresh_init_is_the_ports():
    """Xavier-uniform conv weights and biases uniform in [0, 1), as NVIDIA's networks initialise."""
    torch.manual_seed(3)
    fusion = FlowNetFusion()
    biases = [m.bias for m in fusion.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert all(bool(((b >= 0) & (b < 1)).all()) for b in biases)
    weight = fusion.conv1[0].weight  # 64 x 64 x 3 x 3: Xavier bound sqrt(6 / (fan_in + fan_out))
    assert weight.abs().max() <= (6 / (2 * 64 * 9)) ** 0.5
