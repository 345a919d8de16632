"""Checkpoint files: reading them into state dicts, telling what they hold, and writing them.

The release's files are plain state dicts saved by PyTorch 0.4.1 (`image_pretrained_model.pth`,
`video_best_model.pth`, `pseudo_label_generator_5.pth`); others wrap them in a `state_dict`
(or `model`) entry or carry DataParallel's `module.` prefixes. All are read with
`weights_only=True`, so no pickled code ever runs. `read_state_dict` returns a `StateDict`: a
dict that remembers the file it came from, so a loader given it (after the caller looked at its
keys) names that file in its errors.

Besides PyTorch's pickle-based files, every reader and `save_weights` take safetensors files
(https://huggingface.co/docs/safetensors: a JSON header and raw tensor bytes, no pickle,
memory-mapped), recognised by their `.safetensors` suffix or their header. safetensors does
not keep the order of the keys, so the files this project writes record it in their metadata
(`key_order`) and reading restores it.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open
from torch import nn

from flownet2.checkpoint import CheckpointError as FlowNetCheckpointError
from libs.runtime.errors import UserError, first_line
from libs.runtime.files import FileReadError, read_torch_file, save_torch, write_atomic

PathLike = str | os.PathLike[str]
Weights = PathLike | Mapping[str, torch.Tensor]

RELEASE_UNUSED_PREFIXES = ("backbone.resnet.fc.",)
IMAGENET_UNUSED_PREFIXES = ("fc.",)
BACKBONE_PREFIX = "backbone."
FLOWNET_PREFIX = "flownet."
DATA_PARALLEL_PREFIX = "module."
WRAPPER_KEYS = ("state_dict", "model")
NER_PREFIXES = ("non_local_block", "convgru_forward", "convgru_backward", "bidirection_conv")
STEM_KEY = "backbone.resnet.conv1.weight"
FGPLG_STEM_CHANNELS = 7
SAFETENSORS_SUFFIX = ".safetensors"
KEY_ORDER = "key_order"
# a safetensors file starts with its header's length (8 bytes, little-endian) and the header's "{"
SAFETENSORS_HEADER_START = 8
MAX_SAFETENSORS_HEADER = 100_000_000


class CheckpointError(UserError, FlowNetCheckpointError):
    """A checkpoint file cannot be read, or its tensors do not fit the model."""


class StateDict(dict):
    """A state dict read from a file, which it names (`source`, "checkpoint <path>") for the
    messages of whatever loads it. It pickles as a plain OrderedDict, so a file saved from it
    holds nothing but tensors and containers and loads with `weights_only=True`."""

    source: str = "state dict"

    def __reduce__(self) -> tuple[Any, ...]:
        return OrderedDict, (), None, None, iter(self.items())


def describe_source(weights: Mapping[str, torch.Tensor]) -> str:
    """The file a state dict came from, as messages name it ("state dict" when not read from one)."""
    return getattr(weights, "source", "state dict")


def is_safetensors(path: PathLike) -> bool:
    """Whether `path` names a safetensors file: its suffix is `.safetensors`, or it starts like one."""
    path = Path(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(SAFETENSORS_HEADER_START + 1)
    except OSError:
        return False
    if len(head) <= SAFETENSORS_HEADER_START:
        return False
    size = int.from_bytes(head[:SAFETENSORS_HEADER_START], "little")
    return 1 < size <= MAX_SAFETENSORS_HEADER and head[SAFETENSORS_HEADER_START:] == b"{"


def read_safetensors_metadata(path: PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file's header (empty if it has none)."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error type, and OSError
        raise CheckpointError(f"cannot read checkpoint {path}: not a valid safetensors file "
                              f"({first_line(exc)})") from None


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: {'not a file' if path.exists() else 'no such file'}")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, in the order its `key_order` metadata records, if any."""
    _check_file(path)
    try:
        tensors = safetensors.torch.load_file(os.fspath(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error type, and OSError
        raise CheckpointError(f"cannot read checkpoint {path}: not a valid safetensors file "
                              f"({first_line(exc)})") from None
    order = read_safetensors_metadata(path).get(KEY_ORDER)
    if order is None:
        return tensors
    try:
        names = json.loads(order)
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or sorted(map(str, names)) != sorted(tensors):
        raise CheckpointError(f"checkpoint {path}: its {KEY_ORDER!r} metadata does not list its tensors")
    return {name: tensors[name] for name in names}


def read_state_dict(path: PathLike) -> StateDict:
    """The state dict stored at `path`, on the CPU, with wrappers and `module.` prefixes removed
    (a `StateDict` naming `path`).

    Accepts a safetensors file, or a `torch.save` file holding a plain state dict or a dict
    holding one under `state_dict` or `model`.
    """
    if is_safetensors(path):
        obj: object = _read_safetensors(Path(path))
    else:
        try:
            obj = read_torch_file(path, "checkpoint")
        except FileReadError as error:
            raise CheckpointError(str(error)) from None
    if isinstance(obj, Mapping):
        for wrapper in WRAPPER_KEYS:
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path}: holds {type(obj).__name__}, not a state dict")
    if not obj:
        raise CheckpointError(f"checkpoint {path}: holds an empty dict, not a state dict")
    not_tensors = [str(k) for k, v in obj.items()
                   if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not_tensors:
        shown = ", ".join(not_tensors[:5]) + (", ..." if len(not_tensors) > 5 else "")
        raise CheckpointError(f"checkpoint {path}: not a state dict (entries that are not tensors: {shown})")
    state_dict = StateDict()
    state_dict.source = f"checkpoint {path}"
    for key, tensor in obj.items():
        name = key
        while name.startswith(DATA_PARALLEL_PREFIX):
            name = name[len(DATA_PARALLEL_PREFIX):]
        if name in state_dict:
            raise CheckpointError(f"checkpoint {path}: key {name!r} appears both with and without 'module.'")
        state_dict[name] = tensor
    return state_dict


def checkpoint_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What a state dict holds: "fgplg" (7-channel stem), "video" (NER layers), "image" (RCRNet),
    "imagenet" (torchvision's ResNet-50 names) or "unknown"."""
    stem = state_dict.get(STEM_KEY)
    if stem is not None and stem.dim() == 4 and stem.shape[1] == FGPLG_STEM_CHANNELS:
        return "fgplg"
    if any(k.startswith(NER_PREFIXES) for k in state_dict):
        return "video"
    if any(k.startswith(BACKBONE_PREFIX) for k in state_dict):
        return "image"
    return "imagenet" if "conv1.weight" in state_dict and "layer1.0.conv1.weight" in state_dict else "unknown"


def checkpoint_flow(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The flow estimator of an FGPLG state dict: "flownet2" if it holds `flownet.*` keys, else "dis".

    An FGPLG with FlowNet 2.0 always saves the frozen `flownet.*` weights (the release's
    `pseudo_label_generator_5.pth` does too); one with DIS has none.
    """
    return "flownet2" if any(k.startswith(FLOWNET_PREFIX) for k in state_dict) else "dis"


def weights_metadata(state_dict: Mapping[str, torch.Tensor], output_stride: int | None = None,
                     source: PathLike | None = None) -> dict[str, str]:
    """What a safetensors file of `state_dict` records about it: the model kind (`checkpoint_kind`,
    or "flownet2"), the stem's input channels, FGPLG's flow estimator, the output stride if known,
    and, for a converted file, the source's name and SHA-256."""
    kind = checkpoint_kind(state_dict)
    if kind == "unknown" and "flownetc.conv1.0.weight" in state_dict:
        kind = "flownet2"
    metadata = {"format": "pt", "kind": kind}
    stem = state_dict.get(STEM_KEY)
    if stem is not None and stem.dim() == 4:
        metadata["input_channels"] = str(stem.shape[1])
    if kind == "fgplg":
        metadata["flow"] = checkpoint_flow(state_dict)
    if output_stride is not None:
        metadata["output_stride"] = str(output_stride)
    if source is not None:
        metadata["source_file"] = Path(source).name
        metadata["source_sha256"] = sha256_of(source)
    return metadata


def sha256_of(path: PathLike) -> str:
    """The SHA-256 of the file at `path`, in hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _own_storage(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors as safetensors can store them: contiguous, each with storage of its own (a
    tensor sharing storage with an earlier one, or a view into a larger one, is copied)."""
    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage()
        whole = tensor.is_contiguous() and storage.nbytes() == tensor.numel() * tensor.element_size()
        if storage.nbytes() and (storage.data_ptr() in seen or not whole):
            tensor = tensor.contiguous().clone()
        if storage.nbytes():
            seen.add(tensor.untyped_storage().data_ptr())
        tensors[key] = tensor
    return tensors


def save_weights(obj: nn.Module | Mapping[str, object], path: PathLike,
                 metadata: Mapping[str, str] | None = None) -> None:
    """Save a module's state dict (or any state dict / resume dict) to `path` atomically.

    A path ending in `.safetensors` gets a safetensors file (a state dict only: tensors, no
    other values) whose metadata is `weights_metadata` of it (the output stride from a module),
    the key order, and then `metadata`. Any other path gets a `torch.save` file.
    """
    output_stride = None
    if isinstance(obj, nn.Module):
        backbone = getattr(obj, "backbone", obj)
        output_stride = getattr(backbone, "output_stride", None)
        obj = obj.state_dict()
    if Path(path).suffix != SAFETENSORS_SUFFIX:
        save_torch(obj, Path(path))
        return
    not_tensors = [str(k) for k, v in obj.items()
                   if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"cannot save {path} as safetensors: it holds tensors only, and "
                              f"{', '.join(not_tensors[:5])} are not tensors (use a .pth file)")
    tensors = _own_storage(obj)
    header = weights_metadata(tensors, output_stride)
    header[KEY_ORDER] = json.dumps(list(tensors))
    header.update(metadata or {})
    data = safetensors.torch.save(tensors, metadata=header)
    write_atomic(path, lambda handle: handle.write(data))
