"""The cropped form of ASPP's dilated 3x3 branches (benchmarks/aspp_speed.py's candidate) against the
release's conv: values and gradients in float64, every layout and map size, and the benchmark's
dry run. The models keep the release's conv; this checks that the benchmark compares the same
linear map."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_benchmarks import load

from libs.modules import ASPP

pytestmark = pytest.mark.usefixtures("two_threads")
F64 = torch.float64
bench = load("aspp_speed")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# (batch, height, width, dilation, channels-last): ASPP's 28x28 map at each rate, odd and
# non-square maps, a map smaller than the rate (only the centre tap), one smaller along one axis
CASES = [(1, 28, 28, 6, False), (1, 28, 28, 12, False), (1, 28, 28, 18, False), (1, 7, 9, 6, False),
         (2, 33, 40, 12, False), (1, 5, 4, 6, False), (2, 4, 30, 18, False), (2, 28, 28, 6, True),
         (2, 7, 9, 6, True), (1, 33, 40, 18, True)]


@pytest.mark.parametrize("batch,height,width,dilation,channels_last", CASES)
def test_cropped_conv_computes_the_release_conv(batch, height, width, dilation, channels_last):
    generator = torch.Generator().manual_seed(height * width + dilation)
    x = torch.randn(batch, 24, height, width, generator=generator, dtype=F64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(16, 24, 3, 3, generator=generator, dtype=F64)
    bias = torch.randn(16, generator=generator, dtype=F64)
    for b in (None, bias):
        got = bench.cropped_dilated_conv3x3(x, weight, b, dilation)
        assert got.shape == (batch, 16, height, width)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert got.is_contiguous(memory_format=layout)
        assert relative_error(got, F.conv2d(x, weight, b, padding=dilation, dilation=dilation)) < 1e-12


def test_channels_last_weights_are_used_as_they_are():
    x = torch.randn(1, 8, 11, 13, dtype=F64)
    weight = torch.randn(4, 8, 3, 3, dtype=F64).contiguous(memory_format=torch.channels_last)
    assert relative_error(bench.cropped_dilated_conv3x3(x, weight, None, 6),
                          F.conv2d(x, weight, padding=6, dilation=6)) < 1e-12


def small_aspp() -> ASPP:
    torch.manual_seed(0)
    aspp = ASPP(in_channels=24, out_channels=8).double()
    for module in aspp.modules():  # BatchNorm statistics and affine parameters other than 1 and 0
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.normal_(1, 0.1)
    return aspp


@pytest.mark.parametrize("size", [(28, 28), (7, 9), (33, 40), (5, 5)])
def test_cropped_aspp_equals_the_release_aspp(size):
    release = small_aspp().eval()
    cropped = bench.crop_aspp(release)
    for name in ("c1", "c2", "c3"):
        assert isinstance(getattr(cropped.stages, name).conv, bench.CroppedDilatedConv2d)
    assert type(release.stages.c1.conv) is torch.nn.Conv2d  # the original is left as it was
    x = torch.randn(2, 24, *size, dtype=F64)
    with torch.no_grad():
        assert relative_error(cropped(x), release(x)) < 1e-12



def test_flop_count_leaves_out_exactly_the_products_with_padding():
    release = small_aspp().eval()
    x = torch.randn(1, 1, 24, 28, 28, dtype=F64)  # one frame of a clip, as the benchmark counts

    class Frame(torch.nn.Module):
        def __init__(self, aspp: ASPP) -> None:
            super().__init__()
            self.aspp = aspp

        def forward(self, clip: torch.Tensor) -> torch.Tensor:
            return self.aspp(clip[:, 0])

    full, cropped = (bench.flops_per_frame(Frame(m), x) for m in (release, bench.crop_aspp(release)))
    # per rate, (28 + 2 (28 - r))^2 of the 9 * 28^2 tap positions read the map
    inside = sum((28 + 2 * (28 - rate)) ** 2 for rate in (6, 12, 18))
    assert round((full - cropped) * 1e9) == 2 * 24 * 8 * (3 * 9 * 28 * 28 - inside)

def test_gradients_of_input_and_parameters_equal_the_release_in_train_mode():
    release = small_aspp().train()
    cropped = bench.crop_aspp(release)
    x = torch.randn(2, 24, 13, 15, dtype=F64)
    grads = []
    for model in (release, cropped):
        torch.manual_seed(1)  # the same Dropout2d mask
        inputs = x.clone().requires_grad_()
        (model(inputs) * torch.linspace(-1, 1, 8 * 13 * 15, dtype=F64).view(8, 13, 15)).sum().backward()
        grads.append([inputs.grad] + [p.grad for p in model.parameters()])
    names = ["input"] + [name for name, _ in release.named_parameters()]
    for name, ours, theirs in zip(names, grads[1], grads[0]):
        assert relative_error(ours, theirs) < 1e-12, name


def test_autocast_computes_in_bfloat16_as_conv2d_does():
    x = torch.randn(1, 16, 9, 9)
    weight = torch.randn(8, 16, 3, 3) * 0.25
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = bench.cropped_dilated_conv3x3(x, weight, None, 6)
        expected = F.conv2d(x, weight, padding=6, dilation=6)
    assert got.dtype == expected.dtype == torch.bfloat16
    assert relative_error(got.float(), F.conv2d(x, weight, padding=6, dilation=6)) < 2e-2


def test_only_a_3x3_conv_with_padding_equal_to_dilation_is_cropped():
    with pytest.raises(ValueError, match="padding = dilation"):
        bench.CroppedDilatedConv2d(torch.nn.Conv2d(4, 4, 3, padding=1, dilation=2))
    with pytest.raises(ValueError, match="3x3 weight"):
        bench.cropped_dilated_conv3x3(torch.randn(1, 4, 5, 5), torch.randn(4, 4, 1, 1), None, 2)


@pytest.mark.slow
def test_benchmark_dry_run(capsys):
    argv = ["--size", "64", "--map", "5", "--clip", "2", "--rounds", "1", "--warmup", "0"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "| ASPP 5x5x2048, batch 4 |" in out
    assert "| VideoModel clip of 2 at 64 |" in out
    assert "GFLOP per frame at 64x64" in out
