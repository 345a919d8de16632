"""Loading NVIDIA's FlowNet 2.0 checkpoint (`FlowNet2_checkpoint.pth.tar`).

The file, converted from Caffe and saved by PyTorch 0.4, is a dict
`{"epoch": ..., "state_dict": ..., "best_EPE": ...}` whose state dict uses this package's
parameter names. It is read with `torch.load(..., weights_only=True)` and loaded strictly:
any missing, unexpected or mis-shaped tensor is one `CheckpointError` listing them all.
"""

from __future__ import annotations

import os

from torch import nn

from libs.utils.checkpoint import CheckpointError, load_state_dict_strict, read_state_dict

__all__ = ["CheckpointError", "load_flownet2_checkpoint"]


def load_flownet2_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load NVIDIA's FlowNet2 checkpoint at `path` into `model` (a `FlowNet2`) strictly.

    Accepts the wrapped file as NVIDIA ships it or a bare state dict; DataParallel's
    `module.` prefixes are removed. Raises CheckpointError if the file cannot be read or
    does not fit the model exactly.
    """
    state_dict = read_state_dict(path)
    load_state_dict_strict(model, state_dict, source=os.fspath(path))
