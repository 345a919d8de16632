"""Numeric precision of a run: the one `--precision` vocabulary of every script, its
resolution on a device, and autocast.

Precisions: `fp32` (the faithful float32 path, the release's numbers), `bf16` and `fp16`
(autocast to that dtype; fp16 training with loss scaling), and, for inference only,
`mixed` (float32 with the full-resolution decoder in bfloat16, checked pixel by pixel:
`libs.inference.checked_decoder`).

`auto` (the scripts' default) looks at the hardware: where bfloat16 matrix products are
native — CPUs with AMX or AVX512-BF16, CUDA GPUs of compute capability 8.0 or newer — it
is `mixed` for inference and `bf16` autocast for training; elsewhere it is `fp32`.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from .errors import UserError

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
INFERENCE_PRECISION_CHOICES = ("auto", "fp32", "mixed", "bf16", "fp16")
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "mixed": None, "bf16": torch.bfloat16,
                                                  "fp16": torch.float16}


class PrecisionError(UserError, ValueError):
    """An unknown precision, or one the device cannot run."""


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _torch_cpu_check(name: str) -> bool | None:
    """`torch.cpu.<name>()` where this torch has it (a private probe of the CPU), else None."""
    probe = getattr(torch.cpu, name, None)
    if probe is None:
        return None
    try:
        return bool(probe())
    except Exception:  # a probe that fails says nothing either way
        return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX tiles or AVX512-BF16)."""
    for probe, flag in (("_is_amx_tile_supported", "amx_bf16"), ("_is_avx512_bf16_supported", "avx512_bf16")):
        found = _torch_cpu_check(probe)
        if found is None:
            found = flag in _cpu_flags()
        if found:
            return True
    return False


def cuda_has_native_bf16(device: torch.device | None = None) -> bool:
    """Whether the CUDA device has bfloat16 tensor cores (compute capability 8.0 or newer)."""
    if not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def native_bf16(device: torch.device | str) -> bool:
    """Whether bfloat16 autocast is fast (not emulated) on `device`."""
    device = torch.device(device)
    if device.type == "cuda":
        return cuda_has_native_bf16(device)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device | str, training: bool = False) -> str:
    """The concrete precision (`fp32`, `mixed`, `bf16` or `fp16`) for `precision` on `device`.

    `auto` is `mixed` (inference) or `bf16` (training) where `native_bf16(device)`, else
    `fp32`. Refused: `mixed` for training, and `bf16` or `mixed` on a CUDA GPU without
    bfloat16. Other explicit requests are honoured, even where slow (fp16 on a CPU without
    AMX-FP16; see README.md, "Performance").
    """
    device = torch.device(device)
    if precision not in INFERENCE_PRECISION_CHOICES:
        allowed = PRECISION_CHOICES if training else INFERENCE_PRECISION_CHOICES
        raise PrecisionError(f"precision {precision!r}: expected one of {', '.join(allowed)}")
    if precision == "auto":
        if not native_bf16(device):
            return "fp32"
        return "bf16" if training else "mixed"
    if precision == "mixed" and training:
        raise PrecisionError("precision mixed is for inference; train with fp32, bf16 or fp16")
    if precision in ("bf16", "mixed") and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"precision {precision}: {torch.cuda.get_device_name(device)} has no bfloat16 "
                             "support; use fp16 or fp32")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a concrete precision (None for fp32)."""
    if precision not in AUTOCAST_DTYPES:
        raise PrecisionError(f"precision {precision!r} is not concrete; resolve it first")
    return AUTOCAST_DTYPES[precision]


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """Autocast to the precision's dtype on `device`; a no-op context for fp32 and mixed (whose
    reduced-precision part casts for itself)."""
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


def describe(precision: str, device: torch.device | str, training: bool = False) -> str:
    """A few words saying what `precision` resolved to and why, for the scripts' logs."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device, training)
    if precision != "auto":
        return f"precision {resolved}"
    why = "no native bfloat16" if resolved == "fp32" else "native bfloat16"
    return f"precision {resolved} (auto: {why} on {device.type})"


def keep_float32_exact(precision: str) -> None:
    """With `fp32` or `mixed`, stop cuDNN and cuBLAS from running float32 convolutions and matrix
    products in TF32 (PyTorch lets cuDNN do so by default, which keeps about 10 bits of mantissa
    and so is not the release's float32); the reduced precisions leave PyTorch's defaults."""
    if precision in ("fp32", "mixed"):
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
