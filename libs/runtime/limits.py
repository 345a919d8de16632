"""Limits checked before memory is allocated: a run that cannot fit is refused in one line.

A frame size or clip length far beyond what the machine holds would otherwise end in the
kernel's out-of-memory killer (exit 137, no message) after minutes of work. `estimate_memory`
estimates a run's peak memory from the number of pixels one step processes; `check_memory`
compares that with the memory available to this process on the device (on the CPU: the
smaller of the kernel's `MemAvailable` and the room left under the cgroup's limit; on CUDA:
the device's free memory) and refuses a run whose estimate exceeds it, naming both numbers.

The per-pixel costs are the growth of the peak resident memory of RCRNet+NER's float32
forward pass (inference) and forward + backward pass (training) per input pixel of every
frame, measured on the CPU over clips of 2 to 8 frames of 128 to 512 pixels; the fixed part
covers the process with PyTorch, the weights and, for training, their gradients and Adam's
two moments. The estimate is of that measured peak, not an upper bound: a run estimated above
the memory available would be killed, and one estimated just below it may still be (other
processes, DataLoader workers), so the check refuses the runs that cannot fit and lets the
others try.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError

GIB = 1 << 30
# peak bytes per input pixel of each frame in one step (forward; forward + backward)
INFERENCE_BYTES_PER_PIXEL = 460
TRAINING_BYTES_PER_PIXEL = 4300
# the process with PyTorch and the model's weights (and for training their gradients and Adam's moments)
INFERENCE_FIXED_BYTES = 3 * GIB // 4
TRAINING_FIXED_BYTES = 3 * GIB // 2
USUAL_CLIP_LEN = 4


class MemoryLimitError(UserError):
    """A run whose estimated memory exceeds what the machine has available."""


@dataclass(frozen=True)
class MemoryEstimate:
    """A run's estimated peak memory in bytes and what it was estimated for (flags, for messages)."""

    bytes: int
    what: str


def estimate_memory(*, size: int, frames: int, training: bool, what: str) -> MemoryEstimate:
    """The estimated peak memory of a run whose every step holds `frames` frames of size x size
    pixels (batch size x clip length), for training (forward and backward) or inference."""
    per_pixel = TRAINING_BYTES_PER_PIXEL if training else INFERENCE_BYTES_PER_PIXEL
    fixed = TRAINING_FIXED_BYTES if training else INFERENCE_FIXED_BYTES
    return MemoryEstimate(fixed + per_pixel * frames * size * size, what)


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2 or v1), or None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit_text = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if not limit_text.isdigit() or int(limit_text) >= 1 << 60:
            return None  # "max", or v1's "no limit" value
        return max(0, int(limit_text) - usage)
    return None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes of memory this process can still allocate on `device` (None when unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    room = _cgroup_room()
    if room is not None:
        found.append(room)
    return min(found) if found else None


def human(size: float) -> str:
    """Bytes as a short human-readable amount (KB, MB, GB, TB; powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def check_memory(estimate: MemoryEstimate, device: torch.device | str = "cpu") -> None:
    """Refuse (`MemoryLimitError`, one line with both amounts) a run whose estimate exceeds the
    memory available on `device`; nothing is refused where that amount cannot be read."""
    available = available_memory(device)
    if available is not None and estimate.bytes > available:
        where = "this machine" if torch.device(device).type == "cpu" else str(device)
        raise MemoryLimitError(f"{estimate.what}: this run needs about {human(estimate.bytes)} of memory "
                               f"(estimated), {where} has {human(available)} available; lower these values")


def check_run_memory(device: torch.device | str, *, size: int, batch_size: int, clip_len: int | None,
                     training: bool) -> None:
    """`check_memory` of a run of `batch_size` items of `clip_len` frames (None: single images)
    of size x size pixels per step, its flags named in the message."""
    flags = f"--size {size}" + (f", --clip-len {clip_len}" if clip_len is not None else "") \
        + f", --batch-size {batch_size}"
    frames = batch_size * (clip_len or 1)
    check_memory(estimate_memory(size=size, frames=frames, training=training, what=flags), device)


def check_clip_length(clip_len: int, frames: int, what: str) -> None:
    """Refuse a clip far longer than the video it is cut from: every clip would repeat the last
    frame `clip_len - frames` times, for nothing but time. A video shorter than the usual clip
    (`USUAL_CLIP_LEN`) is padded as the release's inference pads it; `frames` <= 0: unknown."""
    if frames > 0 and clip_len > max(frames, USUAL_CLIP_LEN):
        raise UserError(f"--clip-len {clip_len} is longer than {what} ({frames} frames): each clip would "
                        f"repeat its last frame {clip_len - frames} times; use --clip-len "
                        f"{max(frames, USUAL_CLIP_LEN)} or less")
