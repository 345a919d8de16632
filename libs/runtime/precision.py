"""Numeric precision of a run: the one `--precision` vocabulary of every script, its
resolution on a device, and autocast.

Precisions: `fp32` (the faithful float32 path, the release's numbers), `bf16` and `fp16`
(autocast to that dtype; fp16 training with loss scaling).

`auto` (the scripts' default) is float32 here, resolved to `fp32`; how that float32 is computed
(the factored decoder, and for training channels-last or bf16 where they time faster) is the
run's plan (`libs.runtime.plan`, `libs.runtime.tuner`), which resolves the precision once.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import UserError

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(UserError, ValueError):
    """An unknown precision, or one the device cannot run."""


def resolve_precision(precision: str, device: torch.device | str, training: bool = False) -> str:
    """The concrete precision (`fp32`, `bf16` or `fp16`) for `precision` on `device`.

    `auto` is `fp32` (the run's plan, `libs.runtime.plan`, settles how). Refused: `bf16` on
    a CUDA GPU without bfloat16. Other explicit requests are honoured, even where slow (fp16 on a CPU without
    AMX-FP16; see README.md, "Performance").
    """
    device = torch.device(device)
    if precision not in PRECISION_CHOICES:
        raise PrecisionError(f"precision {precision!r}: expected one of {', '.join(PRECISION_CHOICES)}")
    if precision == "auto":
        return "fp32"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"precision {precision}: {torch.cuda.get_device_name(device)} has no bfloat16 "
                             "support; use fp16 or fp32")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a concrete precision (None for fp32)."""
    if precision not in AUTOCAST_DTYPES:
        raise PrecisionError(f"precision {precision!r} is not concrete; resolve it first")
    return AUTOCAST_DTYPES[precision]


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """Autocast to the precision's dtype on `device`; a no-op context for fp32."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context in which autocast is disabled on `device_type` (float32 islands)."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def keep_float32_exact(precision: str) -> None:
    """With `fp32`, stop cuDNN and cuBLAS from running float32 convolutions and matrix products in
    TF32 (PyTorch lets cuDNN do so by default, which keeps about 10 bits of mantissa and so is not
    the release's float32); the reduced precisions leave PyTorch's defaults."""
    if precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for cuBLAS and cuDNN float32 work on or off inside the block, the previous settings
    restored afterwards (`keep_float32_exact` sets them for a whole run)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
