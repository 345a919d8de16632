"""Faster inference for RCRNet models (ImageModel, VideoModel, FGPLG): BatchNorm folding,
channels-last convs, reduced precision and `torch.compile`.

`optimize_for_inference(model, plan)` returns the model to call under a `RunPlan`
(`libs.runtime.plan`). When the plan is the release's computation that is the model itself,
untouched: the faithful path. Otherwise it is an `InferenceModel` wrapping a changed copy (the
decoder is the model's own, chosen when it was built from `plan.decoder`):

- BatchNorm layers that follow a conv are folded into the conv (eval-mode running
  statistics, in float32).
- Conv2d weights (and inputs) use the channels-last layout, which oneDNN and cuDNN convolve
  without reordering every activation.
- `bf16` / `fp16`: autocast over the whole model (optionally with `float32_modules` kept in
  float32): faster where bfloat16 is native, but far outside the inference tolerance on a
  trained model (README.md, "Performance").
- `compile=True` wraps the model in `torch.compile` (inductor; on CPU with weight freezing,
  which folds constants and fuses conv + ReLU).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from libs.modules import DilatedResNet50, to_channels_last
from libs.modules.resnet import Bottleneck
from libs.runtime.plan import RunPlan
from libs.runtime.precision import autocast, autocast_off


class Float32Island(nn.Module):
    """Runs the wrapped module in float32 with autocast off; hands back float32."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.float()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        with autocast_off(inputs[0].device.type):
            return self.module(*(x.float() for x in inputs))


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) attribute names of the BatchNorms that `module`'s forward applies right after a conv."""
    children = dict(module.named_children())
    if isinstance(module, Bottleneck):
        pairs = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]
    elif isinstance(module, DilatedResNet50):
        pairs = [("conv1", "bn1")]
    elif isinstance(module, nn.Sequential):
        names = list(children)
        pairs = [(a, b) for a, b in zip(names, names[1:])
                 if isinstance(children[a], nn.Conv2d) and isinstance(children[b], nn.BatchNorm2d)]
    else:
        return []
    return [(c, b) for c, b in pairs if isinstance(children.get(c), nn.Conv2d)
            and isinstance(children.get(b), nn.BatchNorm2d)]


def fold_batchnorm(model: nn.Module) -> int:
    """Fold, in place, every eval-mode BatchNorm2d that directly follows a Conv2d into that conv
    (the BatchNorm becomes an Identity); returns how many were folded.

    Covers the ResNet stem and Bottleneck blocks (RCRNet's refinement skips included)
    and Sequentials of conv then BatchNorm (ConvBNReLU units, downsample projections).
    """
    folded = 0
    for module in list(model.modules()):
        for conv_name, bn_name in _conv_bn_pairs(module):
            bn = getattr(module, bn_name)
            if bn.training:
                continue
            setattr(module, conv_name, fuse_conv_bn_eval(getattr(module, conv_name), bn))
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded


def keep_float32(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """Wrap, in place, the named submodules in `Float32Island`s (names that don't exist are an error)."""
    for name in names:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        child = getattr(parent, child_name)
        if not isinstance(child, Float32Island):
            setattr(parent, child_name, Float32Island(child))
    return model


def _channels_last_input(x: torch.Tensor) -> torch.Tensor:
    """A clip [B, T, C, H, W] (or frames [B, C, H, W]) whose frames are channels-last."""
    if x.dim() == 5:
        return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2])
    return x.contiguous(memory_format=torch.channels_last)


class InferenceModel(nn.Module):
    """A model prepared by `prepare_model`: forward(x) -> float32 logits of `model(x)`.

    Runs under `torch.inference_mode` and, for `bf16` / `fp16`, their autocast; inputs are moved
    to the channels-last layout when the weights are.
    """

    def __init__(self, model: nn.Module, precision: str, device: torch.device, channels_last: bool,
                 compiled: Callable[..., torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.device = device
        self.channels_last = channels_last
        self._compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = _channels_last_input(x)
        run = self.model if self._compiled is None else self._compiled
        with inference_context(self.precision, self.device):
            out = run(x)
        return out.float()


@contextlib.contextmanager
def inference_context(precision: str, device: torch.device | str) -> Iterator[None]:
    """`torch.inference_mode` and, for bf16 / fp16, autocast: how a prepared model is called
    (for calls other than forward, e.g. FGPLG's `generate_pseudo_label`)."""
    with torch.inference_mode(), autocast(precision, device):
        yield


def prepare_model(model: nn.Module, plan: RunPlan, float32_modules: Sequence[str] = ()) -> InferenceModel:
    """A copy of `model` (eval mode, on the plan's device) changed as `plan` says, as an
    `InferenceModel`: BatchNorm folded into the convs (`plan.fold_bn`), channels-last convs
    (`plan.channels_last`), autocast to `plan.precision` with `float32_modules` kept in float32,
    `torch.compile` (`plan.compile == "on"`; on CPU with inductor's weight freezing)."""
    fast = copy.deepcopy(model).to(plan.device).eval()
    if plan.fold_bn:
        fold_batchnorm(fast)
    if plan.precision in ("bf16", "fp16") and float32_modules:
        keep_float32(fast, float32_modules)
    if plan.channels_last:
        to_channels_last(fast)
    compiled = None
    if plan.compile == "on":
        if plan.device.type == "cpu":
            inductor_freezing()
        compiled = torch.compile(fast, dynamic=False)
    return InferenceModel(fast, plan.precision, plan.device, plan.channels_last, compiled)


def optimize_for_inference(model: nn.Module, plan: RunPlan) -> nn.Module:
    """`model` ready for inference under `plan`: the model itself (eval mode) when the plan
    changes nothing but the decoder it was built with, else `prepare_model(model, plan)`."""
    model.eval()
    if plan.precision == "fp32" and not (plan.channels_last or plan.fold_bn or plan.compile == "on"):
        return model
    return prepare_model(model, plan)


def inductor_freezing() -> None:
    """Turn on inductor's weight freezing (constant folding of weights, conv + BN folding, weight
    prepacking) for later `torch.compile` calls in inference-only processes."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
