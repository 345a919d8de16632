"""Full-precision islands for FlowNet 2.0's custom ops.

Correlation, resample2d and channel norm sum many products (256 channels, four bilinear
taps, three squares). Under bf16/fp16 autocast, or with half-precision inputs, those sums
would lose most of their digits, so the ops run in float32 (float64 stays float64) with
autocast switched off, and hand back their result in the inputs' own dtype. This mirrors
NVIDIA's port, which wrapped the same layers in fp32 casts for its fp16 mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import reduce

import torch
from torch import Tensor


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context that disables autocast for `device_type` (a no-op where autocast does not exist)."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype an op computes in for inputs of `dtype`: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def run_full_precision(fn: Callable[..., Tensor], *tensors: Tensor) -> Tensor:
    """Call `fn` on `tensors` cast to float32 (or float64) with autocast off.

    The result is cast back to the promoted dtype of the inputs (float32 for integer inputs),
    so the op is dtype-preserving from the caller's point of view.
    """
    out_dtype = reduce(torch.promote_types, (t.dtype for t in tensors))
    compute = work_dtype(out_dtype)
    if not out_dtype.is_floating_point:
        out_dtype = compute
    with _autocast_off(tensors[0].device.type):
        result = fn(*(t.to(compute) for t in tensors))
    return result.to(out_dtype)
