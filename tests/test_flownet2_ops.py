"""FlowNet2's ops in plain PyTorch: correlation, resample2d, channel norm."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from flownet2.channelnorm import ChannelNorm, channel_norm
from flownet2.correlation import Correlation, correlation
from flownet2.resample2d import Resample2d, resample2d

pytestmark = pytest.mark.usefixtures("two_threads")


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- correlation --------------------------------------------------------------------------------


def brute_force_correlation(f1: torch.Tensor, f2: torch.Tensor, pad: int, max_disp: int, stride2: int):
    """The definition, one displacement at a time: f1(y, x) . f2(y + dy, x + dx) / C, f2 zero outside."""
    channels, height, width = f1.shape[1:]
    radius = max_disp // stride2
    size = 2 * radius + 1
    out_h, out_w = height + 2 * pad - 2 * max_disp, width + 2 * pad - 2 * max_disp
    margin = pad + max_disp  # enough zeros around both maps for any displacement
    p1, p2 = F.pad(f1, (margin,) * 4), F.pad(f2, (margin,) * 4)
    first = margin + max_disp - pad  # padded position of output pixel (0, 0)
    channels_out = []
    for j in range(-radius, radius + 1):
        for i in range(-radius, radius + 1):
            a = p1[..., first : first + out_h, first : first + out_w]
            y0, x0 = first + j * stride2, first + i * stride2
            b = p2[..., y0 : y0 + out_h, x0 : x0 + out_w]
            channels_out.append((a * b).sum(1) / channels)  # channel (j + r) * size + (i + r)
    assert len(channels_out) == size * size
    return torch.stack(channels_out, dim=1)


def test_correlation_matches_brute_force_real_configuration():
    f1, f2 = _randn(2, 3, 24, 24, seed=1), _randn(2, 3, 24, 24, seed=2)
    out = Correlation(pad_size=20, kernel_size=1, max_displacement=20, stride1=1, stride2=2)(f1, f2)
    assert out.shape == (2, 441, 24, 24)
    torch.testing.assert_close(out, brute_force_correlation(f1, f2, 20, 20, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("pad", "max_disp", "stride2", "width"),
    # width 30 with 25 displacements: the band matrices are tiled over columns (21 + 9).
    [(2, 2, 1, 7), (3, 3, 2, 7), (1, 3, 2, 7), (5, 3, 2, 7), (4, 5, 2, 7), (2, 2, 1, 30)],
)
def test_correlation_matches_brute_force_other_configurations(pad, max_disp, stride2, width):
    f1, f2 = _randn(1, 2, 9, width, seed=3), _randn(1, 2, 9, width, seed=4)
    out = correlation(f1, f2, pad_size=pad, max_displacement=max_disp, stride2=stride2)
    torch.testing.assert_close(out, brute_force_correlation(f1, f2, pad, max_disp, stride2))


def test_correlation_channel_order_on_a_shift():
    """f2 = f1 moved by (dy, dx) = (4, -6): the peak is channel (4/2 + 10) * 21 + (-6/2 + 10)."""
    f1 = _randn(1, 64, 32, 32, seed=5)
    f2 = torch.roll(f1, shifts=(4, -6), dims=(2, 3))
    out = correlation(f1, f2)
    centre = out[0, :, 8:20, 8:20]
    assert bool((centre.argmax(dim=0) == 12 * 21 + 7).all())
    torch.testing.assert_close(centre[12 * 21 + 7], f1[0, :, 8:20, 8:20].pow(2).mean(0))


def test_correlation_is_zero_outside_the_image():
    ones = torch.ones(1, 4, 8, 8, dtype=torch.float64)
    out = correlation(ones, ones)
    # Displacement (+20, +20) reaches the image only from pixels with y, x < -12: never.
    assert bool((out[0, 440] == 0).all())
    # Displacement (-2, 0) is inside for every row but the first two.
    assert bool((out[0, 9 * 21 + 10, 2:] == 1).all()) and bool((out[0, 9 * 21 + 10, :2] == 0).all())


def test_correlation_gradcheck_small_displacement():
    f1 = _randn(1, 2, 6, 6, seed=6).requires_grad_()
    f2 = _randn(1, 2, 6, 6, seed=7).requires_grad_()
    for pad, max_disp, stride2 in ((2, 2, 1), (4, 4, 2), (1, 3, 2)):

        def op(a, b, pad=pad, max_disp=max_disp, stride2=stride2):
            return correlation(a, b, pad_size=pad, max_displacement=max_disp, stride2=stride2)

        assert gradcheck(op, (f1, f2), fast_mode=True)
        assert gradgradcheck(op, (f1, f2), fast_mode=True)


def test_correlation_gradcheck_full_jacobian():
    f1 = _randn(1, 2, 4, 4, seed=22).requires_grad_()
    f2 = _randn(1, 2, 4, 4, seed=23).requires_grad_()
    assert gradcheck(lambda a, b: correlation(a, b, pad_size=2, max_displacement=2, stride2=1), (f1, f2))


def test_correlation_gradcheck_real_configuration():
    f1 = _randn(1, 2, 6, 6, seed=8).requires_grad_()
    f2 = _randn(1, 2, 6, 6, seed=9).requires_grad_()
    # fast_mode: random projections of the Jacobian instead of one backward per output (441 * 36).
    assert gradcheck(correlation, (f1, f2), fast_mode=True)


def test_correlation_memory_stays_within_output_size():
    """No intermediate, forward or backward, larger than the output or a padded input.

    Nothing like [B, 441, C, H, W] (64 times the output here) is ever built.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargestTensor(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            for tensor in result if isinstance(result, (tuple, list)) else (result,):
                if isinstance(tensor, torch.Tensor):
                    self.largest = max(
                        self.largest, tensor.untyped_storage().nbytes() // tensor.element_size()
                    )
            return result

    batch, channels, size = 2, 64, 24
    f1 = torch.randn(batch, channels, size, size, requires_grad=True)
    f2 = torch.randn(batch, channels, size, size, requires_grad=True)
    with LargestTensor() as mode:
        correlation(f1, f2).sum().backward()  # the backward pass too
    bound = max(batch * 441 * size * size, batch * channels * (size + 40) ** 2)
    assert mode.largest <= bound
    assert mode.largest < batch * 441 * channels * size * size // 8


def test_correlation_keeps_float32_under_autocast_and_accumulates_half_inputs_in_float32():
    f1, f2 = (
        _randn(1, 16, 12, 12, seed=10, dtype=torch.float32),
        _randn(1, 16, 12, 12, seed=11, dtype=torch.float32),
    )
    plain = correlation(f1, f2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = correlation(f1, f2)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, plain)
    a, b = f1.bfloat16(), f2.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = correlation(a, b)
    assert half.dtype == torch.bfloat16
    exact = correlation(a.double(), b.double())
    # Only the final rounding to bf16 (8 bits of mantissa) remains.
    assert bool(((half.double() - exact).abs() <= exact.abs() * 2.0**-8 + 1e-30).all())


def test_correlation_rejects_unsupported_configurations():
    with pytest.raises(NotImplementedError):
        Correlation(kernel_size=3)
    with pytest.raises(ValueError, match="one shape"):
        correlation(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 9))


# --- resample2d ---------------------------------------------------------------------------------


def brute_force_resample(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """NVIDIA's kernel written out: weights from the unclamped position, tap indices clamped."""
    batch, channels, height, width = img.shape
    out = torch.zeros_like(img)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                xf, yf = x + flow[b, 0, y, x].item(), y + flow[b, 1, y, x].item()
                alpha, beta = xf - math.floor(xf), yf - math.floor(yf)
                left = min(max(math.floor(xf), 0), width - 1)
                right = min(max(math.floor(xf) + 1, 0), width - 1)
                top = min(max(math.floor(yf), 0), height - 1)
                bottom = min(max(math.floor(yf) + 1, 0), height - 1)
                out[b, :, y, x] = (
                    (1 - alpha) * (1 - beta) * img[b, :, top, left]
                    + alpha * (1 - beta) * img[b, :, top, right]
                    + (1 - alpha) * beta * img[b, :, bottom, left]
                    + alpha * beta * img[b, :, bottom, right]
                )
    return out


def _border_flow(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Flows that reach well past every border, plus exact hits on the first and last pixel."""
    flow = _randn(batch, 2, height, width, seed=seed) * max(height, width)
    xs = torch.arange(width, dtype=torch.float64)
    ys = torch.arange(height, dtype=torch.float64).view(-1, 1)
    flow[0, 0, 0] = -xs  # first row lands exactly on column 0
    flow[0, 1, :, 0] = (height - 1) - ys[:, 0]  # first column lands exactly on the last row
    flow[0, 0, -1] = width - 1 - xs + 0.25  # last row lands a quarter pixel past the right edge
    return flow


def test_resample2d_matches_brute_force_at_and_beyond_borders():
    img = _randn(2, 3, 7, 9, seed=12)
    flow = _border_flow(2, 7, 9, seed=13)
    assert (flow.abs() > 9).any()
    torch.testing.assert_close(Resample2d()(img, flow), brute_force_resample(img, flow))


def test_resample2d_simple_cases():
    img = _randn(1, 2, 5, 6, seed=14)
    torch.testing.assert_close(resample2d(img, torch.zeros(1, 2, 5, 6, dtype=torch.float64)), img)
    shift = torch.zeros(1, 2, 5, 6, dtype=torch.float64)
    shift[:, 0] = 2.0  # sample two columns to the right; the last columns repeat the border
    expected = torch.cat((img[..., 2:], img[..., -1:].expand(-1, -1, -1, 2)), dim=-1)
    torch.testing.assert_close(resample2d(img, shift), expected)
    single = _randn(1, 2, 1, 4, seed=15)
    torch.testing.assert_close(
        resample2d(single, torch.full((1, 2, 1, 4), 0.5, dtype=torch.float64)),
        brute_force_resample(single, torch.full((1, 2, 1, 4), 0.5, dtype=torch.float64)),
    )


def test_resample2d_gradcheck():
    img = _randn(1, 2, 5, 6, seed=16).requires_grad_()
    flow = (_randn(1, 2, 5, 6, seed=17) * 3).requires_grad_()  # some positions beyond the borders
    assert gradcheck(resample2d, (img, flow), fast_mode=True)


def test_resample2d_precision_and_autocast():
    img, flow = (
        _randn(1, 3, 8, 8, seed=18, dtype=torch.float32),
        _randn(1, 2, 8, 8, seed=19, dtype=torch.float32),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = resample2d(img, flow)
        half = resample2d(img.bfloat16(), flow)
    assert out.dtype == torch.float32 and half.dtype == torch.float32
    torch.testing.assert_close(out, resample2d(img, flow))
    assert resample2d(img.bfloat16(), flow.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="differ"):
        resample2d(img, flow[..., :4])


# --- channel norm -------------------------------------------------------------------------------


def test_channel_norm_values_and_gradient():
    x = _randn(2, 3, 4, 5, seed=20)
    torch.testing.assert_close(ChannelNorm()(x), x.pow(2).sum(1, keepdim=True).sqrt())
    assert gradcheck(channel_norm, (x.clone().requires_grad_(),), fast_mode=True)
    zero = torch.zeros(1, 2, 3, 3, requires_grad=True)
    channel_norm(zero).sum().backward()
    assert torch.equal(zero.grad, torch.zeros_like(zero))


def test_channel_norm_accumulates_half_inputs_in_float32():
    x = (_randn(1, 64, 4, 4, seed=21) * 100).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = channel_norm(x)
    assert out.dtype == torch.bfloat16
    exact = x.double().pow(2).sum(1, keepdim=True).sqrt()
    assert bool(((out.double() - exact).abs() <= exact * 2.0**-8).all())
