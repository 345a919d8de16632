"""The factored decoder (`factored_decoder`, `Decoder(decoder="factored")`) against the release's
resize-then-convolve decoder: values, gradients, BatchNorm in train mode."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from libs.modules import Decoder
from libs.modules.factored_decoder import factored_decoder, phase_coefficients, resize_matrix
from libs.networks import ImageModel, VideoModel

pytestmark = pytest.mark.usefixtures("two_threads")
F64 = torch.float64


def plain(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, size) -> torch.Tensor:
    resized = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return F.conv2d(resized, weight, bias, padding=1)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# (low-res size, output size): 4x as in RCRNet (448 via 112 at small scale), other powers of two,
# non-square, the sizes of odd inputs (block1 of a 33 / 65 / 97 / 449-like input), factor 1, maps
# of one row or column
SIZES = [((8, 8), (32, 32)), ((16, 16), (64, 64)), ((9, 9), (33, 33)), ((17, 17), (65, 65)),
         ((25, 25), (97, 97)), ((29, 29), (113, 113)), ((5, 7), (20, 28)), ((6, 5), (12, 40)),
         ((3, 3), (12, 12)), ((2, 2), (8, 8)), ((9, 17), (33, 65)), ((7, 7), (7, 7)),
         ((13, 11), (40, 31)), ((40, 40), (160, 160)), ((1, 1), (4, 4)), ((1, 3), (2, 12))]


@pytest.mark.parametrize(("low", "size"), SIZES)
def test_equals_resize_then_conv_in_float64(low, size):
    generator = torch.Generator().manual_seed(sum(low) + sum(size))
    x = torch.randn(2, 5, *low, dtype=F64, generator=generator)
    weight = torch.randn(6, 5, 3, 3, dtype=F64, generator=generator)
    bias = torch.randn(6, dtype=F64, generator=generator)
    for b in (bias, None):
        expected = plain(x, weight, b, size)
        actual = factored_decoder(x, weight, b, size)
        assert actual.shape == expected.shape
        assert relative_error(actual, expected) < 1e-13


def test_border_blocks_matter():
    """The periodic formula on the edge-replicated map is wrong at the border: the zero-padding
    terms must be removed."""
    low, size = (8, 8), (32, 32)
    x = torch.randn(1, 3, *low, dtype=F64)
    weight = torch.randn(4, 3, 3, 3, dtype=F64)
    expected = plain(x, weight, None, size)
    # the interior formula is the full-resolution conv of an edge-replicated (not zero) border
    # shifted by the periodic weights; its border rows differ from the true ones by O(1)
    replicated = F.pad(x, (1, 1, 1, 1), mode="replicate")
    periodic = F.conv2d(F.interpolate(replicated, scale_factor=4, mode="bilinear", align_corners=False),
                        weight, padding=1)[:, :, 4:-4, 4:-4]
    assert relative_error(periodic[:, :, 4:-4, 4:-4], expected[:, :, 4:-4, 4:-4]) < 1e-13
    assert relative_error(periodic, expected) > 1e-3
    assert relative_error(factored_decoder(x, weight, None, size), expected) < 1e-13


@pytest.mark.parametrize(("low", "size"), [((8, 8), (32, 32)), ((5, 7), (20, 28)), ((1, 3), (4, 6)),
                                           ((1, 1), (4, 4)), ((4, 1), (16, 2)), ((2, 6), (2, 24)),
                                           ((7, 7), (7, 7)), ((13, 11), (40, 31))])
def test_pointwise_epilogue_row_by_row(low, size):
    """Inference: a pointwise epilogue one low-res row at a time (power-of-two factors, the row
    ring's three slots wrapping, maps of one row or column), with and without autograd
    recording (which takes the whole-map path); other sizes take the general path."""
    generator = torch.Generator().manual_seed(sum(low) + sum(size))
    x = torch.randn(3, 4, *low, dtype=F64, generator=generator)
    weight = torch.randn(5, 4, 3, 3, dtype=F64, generator=generator)
    bias = torch.randn(5, dtype=F64, generator=generator)
    head = torch.randn(2, 5, 1, 1, dtype=F64, generator=generator)

    def epilogue(y):
        return F.conv2d(torch.relu(y), head)

    for b in (None, bias):
        expected = epilogue(plain(x, weight, b, size))
        with torch.no_grad():
            by_rows = factored_decoder(x, weight, b, size, epilogue, pointwise=True)
        assert by_rows.shape == expected.shape
        assert relative_error(by_rows, expected) < 1e-13
    xg = x.clone().requires_grad_(True)
    recorded = factored_decoder(xg, weight, bias, size, epilogue, pointwise=True)
    assert relative_error(recorded.detach(), expected) < 1e-13
    recorded.sum().backward()
    xp = x.clone().requires_grad_(True)
    epilogue(plain(xp, weight, bias, size)).sum().backward()
    assert relative_error(xg.grad, xp.grad) < 1e-12


def test_row_by_row_under_bfloat16_autocast():
    """The rows' tap ring and products take autocast's dtype (bfloat16 on a CPU, as
    `--precision bf16` runs the model): their out= forms are not autocast themselves."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 6, 5, generator=generator)
    weight = torch.randn(4, 8, 3, 3, generator=generator)
    bias = torch.randn(4, generator=generator)
    head = torch.randn(1, 4, 1, 1, generator=generator)

    def epilogue(y):
        return F.conv2d(torch.relu(y), head)

    expected = epilogue(plain(x, weight, bias, (24, 20)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        by_rows = factored_decoder(x, weight, bias, (24, 20), epilogue, pointwise=True)
    assert by_rows.dtype == torch.bfloat16
    assert relative_error(by_rows.float(), expected) < 5e-2


def test_resize_matrix_and_phase_coefficients():
    matrix = resize_matrix(6, 24, F64, torch.device("cpu"))
    x = torch.randn(6, dtype=F64)
    resized = F.interpolate(x.view(1, 1, 6, 1), size=(24, 1), mode="bilinear", align_corners=False)
    torch.testing.assert_close(matrix @ x, resized.flatten(), rtol=0, atol=1e-15)
    # interior rows: row 4 i + s + a - 1 of the matrix is coefficients[s][a] around i
    coefficients = phase_coefficients(4)
    for s in range(4):
        for a in range(3):
            row = matrix[4 * 2 + s + a - 1, 1:4].tolist()
            assert row == coefficients[s][a]


def test_float32_close_to_plain():
    x = torch.randn(1, 32, 28, 28)
    weight = torch.randn(64, 32, 3, 3) * 0.05
    expected = plain(x.double(), weight.double(), None, (112, 112))
    fast = factored_decoder(x, weight, None, (112, 112)).double()
    slow = plain(x, weight, None, (112, 112)).double()
    # both float32 results are within float32 rounding of the float64 value
    assert relative_error(fast, expected) < 1e-5
    assert relative_error(slow, expected) < 1e-5


@pytest.mark.parametrize(("low", "size"), [((5, 5), (20, 20)), ((5, 4), (17, 15))])
@pytest.mark.slow
def test_gradcheck(low, size):
    x = torch.randn(1, 2, *low, dtype=F64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=F64, requires_grad=True)
    bias = torch.randn(3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: factored_decoder(*a, size), (x, weight, bias))


def _decoder_pair(train: bool, n_classes: int = 2) -> tuple[Decoder, Decoder]:
    torch.manual_seed(0)
    fast = Decoder(16, 24, n_classes, decoder="factored").double()
    with torch.no_grad():
        fast.conv1.bn.running_mean.normal_()
        fast.conv1.bn.running_var.uniform_(0.5, 2.0)
        fast.conv1.bn.weight.uniform_(0.5, 1.5)
        fast.conv1.bn.bias.normal_()
    slow = Decoder(16, 24, n_classes).double()
    slow.load_state_dict(fast.state_dict())
    fast.train(train)
    slow.train(train)
    return fast, slow


@pytest.mark.parametrize(("train", "n_classes"), [(False, 1), (False, 2), (True, 2)])
@pytest.mark.parametrize(("low", "size"), [((8, 8), (32, 32)), ((9, 7), (33, 25)), ((5, 6), (20, 24))])
def test_decoder_values_gradients_and_batchnorm(train, n_classes, low, size):
    """Eval-mode BatchNorm at power-of-two factors takes the fused ReLU + 1x1 path
    (`_ReluLinearBlocks`: one and several classes), train mode the generic epilogue."""
    fast, slow = _decoder_pair(train, n_classes)
    x = torch.randn(3, 16, *low, dtype=F64)
    outputs, grads = [], []
    for decoder in (fast, slow):
        xi = x.clone().requires_grad_(True)
        out = decoder.forward_resized(xi, size)
        (out * torch.linspace(-1, 2, out.numel(), dtype=F64).view_as(out)).sum().backward()
        outputs.append(out.detach())
        grads.append([xi.grad] + [p.grad for p in decoder.parameters()])
    assert relative_error(*outputs) < 1e-12
    for fast_grad, slow_grad in zip(*grads):
        assert relative_error(fast_grad, slow_grad) < 1e-11
    bn_fast, bn_slow = fast.conv1.bn, slow.conv1.bn
    torch.testing.assert_close(bn_fast.running_mean, bn_slow.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn_fast.running_var, bn_slow.running_var, rtol=1e-12, atol=1e-12)
    if train:  # batch statistics moved the running ones
        assert bn_fast.num_batches_tracked.item() == 1


def test_fused_backward_refuses_a_second_pass():
    fast, _ = _decoder_pair(False, 1)
    out = fast.forward_resized(torch.randn(1, 16, 4, 4, dtype=F64, requires_grad=True), (16, 16))
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        out.sum().backward()


def test_decoder_with_folded_batchnorm_runs_row_by_row(monkeypatch):
    """After libs.inference.optimize.fold_batchnorm (conv1.bn an Identity) the decoder still
    takes the row-by-row inference path, with the same values."""
    import libs.modules.factored_decoder as module
    from libs.inference.optimize import fold_batchnorm

    fast, slow = _decoder_pair(False)
    assert fold_batchnorm(fast) == 1 and isinstance(fast.conv1.bn, nn.Identity)
    calls = []
    original = module.logits_by_rows
    monkeypatch.setattr(module, "logits_by_rows", lambda *args: calls.append(1) or original(*args))
    x = torch.randn(2, 16, 8, 8, dtype=F64)
    with torch.no_grad():
        out = fast.forward_resized(x, (32, 32))
        expected = slow.forward_resized(x, (32, 32))
    assert calls and relative_error(out, expected) < 1e-12


def test_release_decoder_is_the_default_and_the_state_dict_is_the_same():
    release, factored = ImageModel(), ImageModel(decoder="factored")
    keys = set(release.state_dict())
    assert {"backbone.decoder.conv1.conv.weight", "backbone.decoder.conv1.bn.running_var",
            "backbone.decoder.conv2.bias"} <= keys
    assert release.backbone.decoder.decoder == "release"
    assert factored.backbone.decoder.decoder == "factored"
    assert set(factored.state_dict()) == keys
    with pytest.raises(ValueError, match="decoder 'exact'"):
        VideoModel(decoder="exact")


@pytest.fixture(scope="module")
def reference_models(reference_state_dict):
    models = {}
    for name, cls in (("image_model", ImageModel), ("video_model", VideoModel)):
        weights = {k: v for k, v in reference_state_dict(name).items()
                   if not k.startswith("backbone.resnet.fc")}
        pair = []
        for decoder in ("factored", "release"):
            model = cls(decoder=decoder)
            model.load_state_dict(weights, strict=True)
            pair.append(model.double().eval())
        models[name] = pair
    return models


def _both_paths(models: list[nn.Module], inputs) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return models[0](inputs), models[1](inputs)


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 64, 64), (2, 33, 33), (1, 65, 48), (1, 97, 97)])
def test_image_model_fast_equals_plain(reference_models, batch, height, width):
    frames = torch.randn(batch, 3, height, width, dtype=F64)
    fast, slow = _both_paths(reference_models["image_model"], frames)
    assert relative_error(fast, slow) < 1e-12


@pytest.mark.parametrize(("length", "height", "width"), [(2, 64, 64), (3, 37, 41)])
def test_video_model_fast_equals_plain(reference_models, length, height, width):
    clip = torch.randn(1, length, 3, height, width, dtype=F64)
    fast, slow = _both_paths(reference_models["video_model"], clip)
    assert relative_error(fast, slow) < 1e-12


@pytest.mark.slow
def test_image_model_training_step_matches(reference_state_dict):
    """Train-mode BatchNorm (batch statistics at full resolution) and all parameter gradients."""
    weights = {k: v for k, v in reference_state_dict("image_model").items()
               if not k.startswith("backbone.resnet.fc")}
    frames = torch.randn(2, 3, 48, 48, dtype=F64)
    target = torch.rand(2, 1, 48, 48, dtype=F64)
    results = []
    for decoder in ("factored", "release"):
        model = ImageModel(decoder=decoder).double()
        model.load_state_dict(weights, strict=True)
        model.train()
        torch.manual_seed(0)  # the same ASPP dropout mask
        loss = F.binary_cross_entropy_with_logits(model(frames), target)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()},
                        model.backbone.decoder.conv1.bn.running_var.clone()))
    (loss_fast, grads_fast, var_fast), (loss_slow, grads_slow, var_slow) = results
    assert relative_error(loss_fast, loss_slow) < 1e-12
    assert relative_error(var_fast, var_slow) < 1e-12
    for name, grad in grads_slow.items():
        assert relative_error(grads_fast[name], grad) < 1e-9, name
