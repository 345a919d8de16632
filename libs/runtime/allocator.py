"""Keep freed memory in the process for the next pass (glibc's malloc on Linux): `--memory`.

glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh `mmap` and
gives it back with `munmap` when it is freed. RCRNet's activations at 448x448 are tens to
hundreds of MiB each, so every forward pass (and every training step) maps, page-faults (the
kernel zeroes each 4 KiB page) and unmaps them again: on this project's sandboxed AMD EPYC
about 400,000 page faults per inference clip and 1.4 million per training step, 30-65% of the
wall time. With mmap off (`M_MMAP_MAX = 0`) and trimming off, those blocks come from the heap
and stay mapped, so later passes reuse them: the same values, no page faults after the first
pass, and a resident set that stays at the run's peak instead of falling between passes.

What a page fault costs depends on the kernel (and on a sandbox around it), so `--memory auto`
measures both on the run's own work (`libs.runtime.calibration`, cached per machine) and keeps
freed memory only where that is faster; glibc's own behaviour stays the baseline. CPU only: CUDA
memory has PyTorch's caching allocator.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

import torch

from .calibration import Decision, measured_choice
from .errors import UserError

MEMORY_CHOICES = ("auto", "glibc", "kept")
GLIBC = "glibc malloc"  # the baseline: glibc's own thresholds
KEPT = "freed memory kept"

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = -1  # mallopt(M_TRIM_THRESHOLD, -1): never give the heap's top back
DEFAULT_MMAP_MAX = 65536
DEFAULT_TRIM_THRESHOLD = 128 * 1024

_kept: bool | None = None  # None: never changed in this process (glibc's dynamic thresholds)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return None
    return libc


def can_keep_freed_memory() -> bool:
    """Whether this process's malloc can be told to keep freed memory (Linux with glibc)."""
    return _libc() is not None


def keeps_freed_memory() -> bool:
    """Whether freed memory is being kept now."""
    return bool(_kept)


def keep_freed_memory(enable: bool) -> bool:
    """Keep large freed blocks in the process (True) or go back to glibc's behaviour (False: the
    heap's free memory is given back); returns whether malloc took the setting. A no-op when
    nothing changes (False before any True leaves glibc's dynamic thresholds untouched)."""
    global _kept
    libc = _libc()
    if libc is None:
        return False
    if enable == bool(_kept):
        return True
    if enable:
        done = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    else:
        done = bool(libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD))
        libc.malloc_trim(0)
    _kept = enable
    return done


def check_memory_choice(memory: str) -> str:
    """`memory` if it is one of `MEMORY_CHOICES`, else a UserError naming the flag."""
    if memory not in MEMORY_CHOICES:
        raise UserError(f"--memory {memory!r}: expected one of {', '.join(MEMORY_CHOICES)}")
    return memory


def choose_memory(memory: str, what: str, work: Callable[[], object],
                  device: torch.device | str = "cpu") -> Decision:
    """Apply `--memory` for `work` (one repeated pass of the run: a forward pass, a training step).

    `kept` / `glibc` apply as told; `auto` (CPU with glibc) times `work` under glibc's behaviour
    first, then with freed memory kept (each after an untimed call, not interleaved: switching
    back would give the kept memory away before every call), and keeps freed memory only if
    that is clearly faster; the decision is cached per machine and `what`."""
    device = torch.device(device)
    if check_memory_choice(memory) != "auto":
        keep_freed_memory(memory == "kept")
        return Decision(KEPT if memory == "kept" else GLIBC, GLIBC)
    if device.type != "cpu" or not can_keep_freed_memory():
        return Decision(GLIBC, GLIBC)

    def under(kept: bool) -> Callable[[], None]:
        def run() -> None:
            keep_freed_memory(kept)
            work()
        return run

    decision = measured_choice(f"memory {what}", {GLIBC: under(False), KEPT: under(True)}, GLIBC, device,
                               interleaved=False)
    keep_freed_memory(decision.choice == KEPT)
    return decision
