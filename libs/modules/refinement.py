"""Top-down refinement blocks and the full-resolution decoder of RCRNet's pixel-wise classifier
(the release's libs/networks/rcrnet.py)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .factored_decoder import ReluLinear, factored_decoder
from .layers import ConvBNReLU, fresh_init_
from .resnet import Bottleneck, projection

# How `Decoder.forward_resized` computes: the release's resize-then-conv, or the factored decoder.
RELEASE_DECODER = "release"
FACTORED_DECODER = "factored"
DECODERS = (RELEASE_DECODER, FACTORED_DECODER)


class SkipBottleneck(Bottleneck):
    """ResNet's Bottleneck with expansion 2: reduces a backbone skip feature to 2 * planes channels."""

    expansion = 2

    def __init__(self, in_channels: int, planes: int) -> None:
        super().__init__(in_channels, planes, downsample=projection(in_channels, planes * self.expansion))


class RefinementBlock(nn.Module):
    """Fuses a backbone skip feature `td` with a deeper feature `bu` of the same spatial size.

    `skip` reduces td to `skip_channels`; `refine` is a 3x3 ConvBNReLU over concat(bu, skip(td)).
    """

    def __init__(
        self, td_channels: int, bu_channels: int, skip_channels: int = 96, out_channels: int = 128
    ) -> None:
        super().__init__()
        self.skip = SkipBottleneck(td_channels, skip_channels // SkipBottleneck.expansion)
        self.refine = ConvBNReLU(bu_channels + skip_channels, out_channels, 3, padding=1)
        fresh_init_(self)

    def forward(self, td: torch.Tensor, bu: torch.Tensor) -> torch.Tensor:
        return self.refine(torch.cat((bu, self.skip(td)), dim=1))


class Decoder(nn.Sequential):
    """3x3 ConvBNReLU (128 -> 256) then a 1x1 conv with bias to the class logits, at input resolution.

    `forward(x)` decodes a map already at the output size. `forward_resized(x, size)` is
    `forward(bilinear resize of x to size)` (RCRNet's last step). `decoder` (one of `DECODERS`,
    fixed at construction): "release" (the default) resizes first, then convolves, as the
    release's libs/networks/rcrnet.py does (bit for bit in float32); "factored" is the factored
    decoder, which convolves without forming the resized map (`factored_decoder`: the same
    values up to rounding, about a seventh of the arithmetic at a 4x resize).
    """

    def __init__(self, in_channels: int = 128, hidden_channels: int = 256, n_classes: int = 1,
                 decoder: str = RELEASE_DECODER) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, hidden_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_channels, n_classes, kernel_size=1)
        self._factored = check_decoder(decoder) == FACTORED_DECODER
        fresh_init_(self)

    @property
    def decoder(self) -> str:
        """The computation chosen at construction: "release" or "factored"."""
        return FACTORED_DECODER if self._factored else RELEASE_DECODER

    def forward_resized(self, x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
        """Logits [N, n_classes, *size] of `x` [N, C, h, w] resized (bilinear, align_corners=False)."""
        conv = self.conv1.conv
        if not (self._factored and _is_plain_conv3x3(conv)):
            return self(F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False))
        weight, bias = conv.weight, conv.bias
        bn = self.conv1.bn
        folded = isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.running_var is not None
        if folded:
            weight, bias = _fold_batchnorm(weight, bias, bn)
        # pointwise: no BatchNorm statistics over the pixels (folded here or already, e.g. by
        # libs.inference.optimize.fold_batchnorm, which leaves an Identity)
        pointwise = folded or isinstance(bn, nn.Identity)
        head = self._head()
        epilogue = head if pointwise else (lambda y: head(bn(y)))
        return factored_decoder(x, weight, bias, tuple(size), epilogue, pointwise=pointwise)

    def _head(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """ReLU and conv2 of the conv1 output [N, J, L, 1] (after its BatchNorm): a `ReluLinear`
        (one matrix product over channels-last pixels; oneDNN's 1x1 conv to one channel is over ten
        times slower) unless either is wrapped (e.g. a float32 island under autocast)."""
        relu, conv2 = self.conv1.relu, self.conv2
        if type(relu) is nn.ReLU and type(conv2) is nn.Conv2d:
            return ReluLinear(conv2.weight.flatten(1), conv2.bias)
        return lambda y: conv2(relu(y))


def check_decoder(decoder: str) -> str:
    """`decoder` if it is one of `DECODERS`, else a ValueError naming the choices."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder {decoder!r}: expected one of {', '.join(DECODERS)}")
    return decoder


def _is_plain_conv3x3(conv: nn.Conv2d) -> bool:
    return (conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def _fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None,
                    bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias with an eval-mode BatchNorm folded in (differentiable in all of them)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if bias is not None:
        shift = shift + bias * scale
    return weight * scale.view(-1, 1, 1, 1), shift
