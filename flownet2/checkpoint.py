"""Loading NVIDIA's FlowNet 2.0 checkpoint (`FlowNet2_checkpoint.pth.tar`), needing nothing but torch.

The file, converted from Caffe and saved by PyTorch 0.4, is a dict
`{"epoch": ..., "state_dict": ..., "best_EPE": ...}` whose state dict uses this package's
parameter names. It is read with `torch.load(..., weights_only=True)` and loaded strictly:
any missing, unexpected or mis-shaped tensor is one `CheckpointError` listing them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["CheckpointError", "check_fits", "load_flownet2_checkpoint", "read_flownet2_state_dict"]

DATA_PARALLEL_PREFIX = "module."
MAX_KEYS_LISTED = 40


class CheckpointError(RuntimeError):
    """A FlowNet 2.0 checkpoint cannot be read, or its tensors do not fit the network."""


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_LISTED])
    if len(keys) > MAX_KEYS_LISTED:
        shown += f", ... ({len(keys) - MAX_KEYS_LISTED} more)"
    return shown


def _shape(shape: torch.Size) -> str:
    return "x".join(map(str, shape)) or "scalar"


def check_fits(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str,
               target: str) -> None:
    """Raise one CheckpointError listing every key `given` lacks, every extra key and every shape mismatch."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [k for k in given if k in expected and given[k].shape != expected[k].shape]
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{source or 'state dict'} does not fit {target}: {len(missing)} missing, "
             f"{len(unexpected)} unexpected, {len(mismatched)} with another shape"]
    if missing:
        parts.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        pairs = [f"{k} (checkpoint {_shape(given[k].shape)}, model {_shape(expected[k].shape)})"
                 for k in mismatched]
        parts.append(f"shape mismatches: {_listing(pairs)}")
    raise CheckpointError("\n  ".join(parts))


def read_flownet2_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a FlowNet 2.0 file: NVIDIA's wrapped dict or a bare state dict, `module.` removed."""
    path = Path(path)
    if not path.is_file():
        reason = "not a file" if path.exists() else "no such file"
        raise CheckpointError(f"FlowNet2 checkpoint {path}: {reason}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged, foreign or unsafe files
        raise CheckpointError(f"FlowNet2 checkpoint {path}: not a file written by torch.save holding only "
                              f"tensors, or a damaged one ({type(exc).__name__})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"FlowNet2 checkpoint {path}: holds no state dict of tensors")
    return {k.removeprefix(DATA_PARALLEL_PREFIX): v for k, v in obj.items()}


def load_flownet2_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load NVIDIA's FlowNet2 checkpoint at `path` into `model` (a `FlowNet2`) strictly.

    Accepts the wrapped file as NVIDIA ships it or a bare state dict; DataParallel's
    `module.` prefixes are removed. Raises CheckpointError if the file cannot be read or
    does not fit the model exactly; the model is then left untouched.
    """
    state_dict = read_flownet2_state_dict(path)
    check_fits(model.state_dict(), state_dict, os.fspath(path), type(model).__name__)
    model.load_state_dict(state_dict, strict=True)
