"""Training's `--precision auto`: the candidates a training plan is tuned among, and their timing
on one training step (through the one tuner, `libs.runtime.tuner`).

The decoder is settled by arithmetic when the plan is made (`libs.runtime.plan`); what is timed
here is the layout and the precision: float32, float32 with channels-last convs, and bf16
autocast with channels-last where bfloat16 is native (a CUDA GPU with bfloat16, a CPU with
AVX512-BF16 or AMX; elsewhere bf16 is emulated and never wins, so it is not a candidate). The
steps run on copies of the model (its weights untouched) and are timed only where they cost at
most `libs.runtime.tuner.CHOOSING_SHARE` of the first epoch; otherwise the plan stays float32.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from libs.modules import to_channels_last
from libs.runtime.plan import RunPlan
from libs.runtime.tuner import Tuned, affordable, tune

from .tasks import Task

BASELINE = "fp32"
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively (a CUDA GPU with bfloat16; a CPU with AVX512-BF16
    or AMX-BF16, read from /proc/cpuinfo)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_CPU_FLAGS)


def training_candidates(plan: RunPlan) -> dict[str, RunPlan]:
    """The plans `--precision auto` training times, by name; the first (float32 with the plan's
    decoder) is the baseline. Only an auto plan has alternatives."""
    candidates = {BASELINE: plan}
    if not plan.auto:
        return candidates
    candidates["fp32, channels-last"] = plan.replace(channels_last=True)
    if native_bf16(plan.device):
        candidates["bf16 autocast, channels-last"] = plan.replace(precision="bf16", channels_last=True)
    return candidates


def batch_shapes(batch: Any) -> str:
    """The shapes of a batch's tensors, for the decision cache's key."""
    if isinstance(batch, torch.Tensor):
        return "x".join(map(str, batch.shape))
    if isinstance(batch, dict):
        return "{" + ",".join(f"{k}:{batch_shapes(v)}" for k, v in batch.items() if batch_shapes(v)) + "}"
    if isinstance(batch, (list, tuple)):
        return "[" + ",".join(batch_shapes(v) for v in batch) + "]"
    return ""


def training_step(task: Task, module: nn.Module, batch: Any, plan: RunPlan) -> Callable[[], None]:
    """One forward and backward pass of a copy of `module` under `plan` (the weights untouched)."""
    model = copy.deepcopy(module)
    if plan.channels_last:
        to_channels_last(getattr(model, "backbone", model))

    def step() -> None:
        model.train()
        task.set_train_mode(model)
        model.zero_grad(set_to_none=True)
        with plan.autocast():
            out = task.step(model, batch)
        out.loss.backward()
        if plan.device.type == "cuda":
            torch.cuda.synchronize(plan.device)

    return step


def tune_training(plan: RunPlan, task: Task, module: nn.Module, first_batch: Callable[[], Any],
                  steps: int, note: Callable[[str], None]) -> RunPlan:
    """The training plan: `plan` itself unless it is auto with alternatives whose timing (on one
    step of `first_batch()`, on copies of `module`) costs at most the choosing share of an epoch
    of `steps` steps, or whose decision is cached."""
    candidates = training_candidates(plan)
    if len(candidates) == 1:
        return plan
    if not affordable(len(candidates), steps):
        return plan.replace(why=f"{plan.why}; layout and bf16 not timed: {steps} steps an epoch are too "
                                "few to pay for timing them")
    batch = first_batch()
    tuned: Tuned = tune(f"training {type(task).__name__} {batch_shapes(batch)}", candidates, BASELINE,
                        lambda candidate: training_step(task, module, batch, candidate), note)
    return tuned.plan
