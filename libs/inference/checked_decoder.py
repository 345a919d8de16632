"""RCRNet's full-resolution decoder in bfloat16, checked pixel by pixel against float32.

The decoder (3x3 conv 128 -> 256 + BatchNorm + ReLU, then a 1x1 conv to the logit, at the
input's full resolution) is about half of RCRNet's arithmetic, but a trained model's logit
is a sum of 256 large terms that mostly cancel, so bfloat16 rounding moves the logit by
up to ~1 and the 8-bit saliency of pixels near a quantisation step by many levels.

`CheckedDecoder` runs the decoder in bfloat16 (or float16) together with a per-pixel
estimate of the standard deviation of the rounding error of its logit:

    sigma^2 = u^2 (sum_k x_k^2 (S_k + E_k^2) + sum_j w_j^2 h_j^2)

where u is the unit roundoff of the low dtype (2^-8 for bfloat16), x the decoder's input
(the 3x3 neighbourhood, all channels), W the conv weights (BatchNorm folded), w the 1x1
weights, h the hidden activations, S_k = sum_j w_j^2 W_jk^2 (rounding of each product's
operands, independent terms) and E_k = sum_j w_j W_jk (the input's rounding shared by the
256 hidden channels). Every pixel whose 8-bit value — round(255 p) or floor(255 p), with
p = sigmoid(logit) — is not constant over logit +- (z sigma + u |logit|) is recomputed in
float32 (a gathered 3x3 patch times the folded weights), so the other pixels' 8-bit values
are float32's unless the rounding error exceeds z = 8 estimated standard deviations (on the
benchmark model the largest error seen is 1.7 of them). Typically 5-10% of the pixels are
recomputed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def quantisation_may_change(logit: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Where round(255 p) or floor(255 p), p = sigmoid(logit), may differ over logit +- bound."""
    low = torch.sigmoid(logit - bound) * 255
    high = torch.sigmoid(logit + bound) * 255
    return (low.round() != high.round()) | (low.floor() != high.floor())


class CheckedDecoder(nn.Module):
    """A drop-in replacement of an eval-mode RCRNet `Decoder` (conv1 = ConvBNReLU 3x3, conv2 = 1x1 conv
    with bias to one logit): low precision, with float32 recomputation where the 8-bit output could
    differ. Input [N, C, H, W] (any dtype; used as float32), output float32 logits [N, 1, H, W].
    """

    def __init__(self, decoder: nn.Module, dtype: torch.dtype = torch.bfloat16, z: float = 8.0) -> None:
        super().__init__()
        if dtype not in UNIT_ROUNDOFF:
            raise ValueError(f"dtype must be bfloat16 or float16, got {dtype}")
        conv1 = decoder.conv1.conv
        if conv1.kernel_size != (3, 3) or conv1.padding != (1, 1) or decoder.conv2.out_channels != 1:
            raise ValueError("CheckedDecoder needs a 3x3 (padding 1) conv1 and a 1-channel conv2")
        bn = getattr(decoder.conv1, "bn", None)
        folded = fuse_conv_bn_eval(conv1, bn) if isinstance(bn, nn.BatchNorm2d) else conv1
        weight = folded.weight.detach().float()  # [J, K, 3, 3]
        bias = folded.bias.detach().float() if folded.bias is not None else torch.zeros(weight.shape[0])
        w2 = decoder.conv2.weight.detach().float()  # [1, J, 1, 1]
        b2 = decoder.conv2.bias.detach().float()
        self.dtype = dtype
        self.unit_roundoff = UNIT_ROUNDOFF[dtype]
        self.z = float(z)
        per_hidden = w2.view(-1, 1, 1, 1)
        products = (per_hidden**2 * weight**2).sum(0, keepdim=True)
        shared = (per_hidden * weight).sum(0, keepdim=True)
        self.register_buffer("weight_low", weight.to(dtype).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias_low", bias.to(dtype))
        self.register_buffer("w2_low", w2.to(dtype))
        self.register_buffer("w2_squared_low", (w2**2).to(dtype))
        self.register_buffer("variance_kernel_low",
                             (products + shared**2).to(dtype).contiguous(memory_format=torch.channels_last))
        self.register_buffer("weight_rows", weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1))
        self.register_buffer("bias", bias)
        self.register_buffer("w2", w2.view(-1))
        self.register_buffer("b2", b2)
        self.last_recomputed = 0.0

    def dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-precision logits [N, 1, H, W] (float32) and the half-width of their error interval.

        Everything here runs in the low dtype (the error estimate needs no more); the 1x1 conv's
        own rounding (weights, output) is covered by the doubled hidden term and u |logit|.
        """
        low = x.to(self.dtype)
        hidden = F.relu(F.conv2d(low, self.weight_low, self.bias_low, padding=1))
        logit = (F.conv2d(hidden, self.w2_low) + self.b2).float()
        variance = (F.conv2d(low.square(), self.variance_kernel_low, padding=1).float()
                    + 2 * F.conv2d(hidden.square(), self.w2_squared_low).float())
        bound = self.z * self.unit_roundoff * variance.sqrt() + 2 * self.unit_roundoff * logit.abs()
        return logit, bound

    @torch.compiler.disable
    def exact(self, x: torch.Tensor, logit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`logit` with the pixels of `mask` [N, 1, H, W] recomputed in float32."""
        index = mask.flatten().nonzero().squeeze(1)
        self.last_recomputed = index.numel() / max(1, mask.numel())
        if index.numel() == 0:
            return logit
        n, channels, height, width = x.shape
        rows = x.float().permute(0, 2, 3, 1).reshape(-1, channels)  # a view for channels-last input
        frame, pixel = index // (height * width), index % (height * width)
        row, col = pixel // width, pixel % width
        offsets = torch.tensor([-1, 0, 1], device=x.device)
        tap_row = (row[:, None, None] + offsets[None, :, None]).expand(-1, 3, 3)  # [M, 3, 3]
        tap_col = (col[:, None, None] + offsets[None, None, :]).expand(-1, 3, 3)
        inside = (tap_row >= 0) & (tap_row < height) & (tap_col >= 0) & (tap_col < width)
        source = ((frame[:, None, None] * height + tap_row.clamp(0, height - 1)) * width
                  + tap_col.clamp(0, width - 1))
        flat = logit.flatten().clone()
        chunk = 32768
        for start in range(0, index.numel(), chunk):
            sl = slice(start, start + chunk)
            patches = rows.index_select(0, source[sl].flatten()).view(-1, 9, channels)
            patches = (patches * inside[sl].view(-1, 9, 1)).view(-1, 9 * channels)
            hidden = F.relu(torch.addmm(self.bias, patches, self.weight_rows.t()))
            flat[index[sl]] = torch.mv(hidden, self.w2) + self.b2
        return flat.view_as(logit)

    def float32_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder in float32 (BatchNorm folded): what the checked pixels are recomputed as."""
        channels = x.shape[1]
        weight = self.weight_rows.view(-1, 3, 3, channels).permute(0, 3, 1, 2)
        hidden = F.relu(F.conv2d(x.float(), weight, self.bias, padding=1))
        return F.conv2d(hidden, self.w2.view(1, -1, 1, 1), self.b2)

    def error_report(self, x: torch.Tensor) -> dict[str, float]:
        """How the error estimate fares on input `x`: the largest |low-precision logit - float32 logit|
        in units of the estimated standard deviation (the margin is `z` of them), and the share of
        pixels recomputed."""
        with torch.inference_mode(), torch.autocast(x.device.type, enabled=False):
            logit, bound = self.dense(x)
            exact = self.float32_logits(x)
            sigma = (bound - 2 * self.unit_roundoff * logit.abs()) / self.z
            ratio = ((logit - exact).abs() / sigma.clamp_min(1e-12)).max().item()
            recomputed = quantisation_may_change(logit, bound).float().mean().item()
        return {"max_error_in_sigmas": ratio, "z": self.z, "recomputed": recomputed}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for frame in x.split(1):  # frame by frame: the full-resolution intermediates are large
            logit, bound = self.dense(frame)
            outputs.append(self.exact(frame, logit, quantisation_may_change(logit, bound)))
        return torch.cat(outputs)
