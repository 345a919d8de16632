"""Every checkpoint this project reads or writes: read once, kind detected, loaded strictly.

The release's files are plain state dicts saved by PyTorch 0.4.1 (`image_pretrained_model.pth`,
`video_best_model.pth`, `pseudo_label_generator_5.pth`); others wrap them in a `state_dict`
(or `model`) entry or carry DataParallel's `module.` prefixes. All are read with
`weights_only=True`, so no pickled code ever runs. Loading is strict: the only keys ever
dropped are named ones (the release's unused ImageNet classifier `backbone.resnet.fc.*`,
torchvision's `fc.*`, and an FGPLG file's `flownet.*` when forced onto DIS), and any other
difference is one `CheckpointError` listing every missing key, unexpected key and shape
mismatch; the model is then left untouched.

Each loader takes `Weights`: a path, or a state dict already read with `read_state_dict`, so
that a caller which must look at a file's keys first (`checkpoint_kind`) reads it only once.

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
from collections.abc import Iterable, Mapping
from pathlib import Path

import safetensors.torch
import torch
from safetensors import safe_open
from torch import nn

from flownet2.checkpoint import CheckpointError as FlowNetCheckpointError
from flownet2.checkpoint import check_fits, read_flownet2_state_dict
from libs.runtime.errors import UserError, first_line
from libs.runtime.files import FileReadError, read_torch_file, save_torch, write_atomic

from .fgplg import FGPLG
from .models import ImageModel, VideoModel
from .rcrnet import RCRNet

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


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """The state dict stored at `path`, on the CPU, with wrappers and `module.` prefixes removed.

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
    state_dict: dict[str, torch.Tensor] = {}
    for key, tensor in obj.items():
        name = key
        while name.startswith(DATA_PARALLEL_PREFIX):
            name = name[len(DATA_PARALLEL_PREFIX):]
        if name in state_dict:
            raise CheckpointError(f"checkpoint {path}: key {name!r} appears both with and without 'module.'")
        state_dict[name] = tensor
    return state_dict


def _read(weights: Weights) -> tuple[Mapping[str, torch.Tensor], str]:
    """(state dict, name for messages) of a path or an already-read state dict."""
    if isinstance(weights, Mapping):
        return weights, "state dict"
    return read_state_dict(weights), f"checkpoint {weights}"


def _fits(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str,
          target: str) -> None:
    try:
        check_fits(expected, given, source, target)
    except FlowNetCheckpointError as error:
        raise CheckpointError(str(error)) from None


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


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                           ignore_prefixes: Iterable[str] = (), source: str = "") -> None:
    """Load `state_dict` into `model`, dropping only keys that start with one of `ignore_prefixes`.

    Any other difference raises one CheckpointError naming `source` and listing the missing
    keys, unexpected keys and shape mismatches.
    """
    prefixes = tuple(ignore_prefixes)
    kept = {k: v for k, v in state_dict.items() if not (prefixes and k.startswith(prefixes))}
    _fits(model.state_dict(), kept, source, type(model).__name__)
    model.load_state_dict(kept, strict=True)


def load_weights(model: nn.Module, weights: Weights) -> None:
    """Load an ImageModel or VideoModel checkpoint (the release's files as they are) strictly.

    The release's unused ImageNet classifier `backbone.resnet.fc.*` is dropped.
    """
    state_dict, source = _read(weights)
    load_state_dict_strict(model, state_dict, ignore_prefixes=RELEASE_UNUSED_PREFIXES, source=source)


def _load_backbone(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load every `backbone.*` tensor (the classifier excepted) into `model.backbone`; nothing else may
    be in the file."""
    kept = {k: v for k, v in state_dict.items() if not k.startswith(RELEASE_UNUSED_PREFIXES)}
    backbone = model.backbone
    expected = {BACKBONE_PREFIX + k: v for k, v in backbone.state_dict().items()}
    _fits(expected, kept, source, f"{type(model).__name__}.backbone")
    backbone.load_state_dict({k[len(BACKBONE_PREFIX):]: v for k, v in kept.items()}, strict=True)


def init_video_from_image(video_model: VideoModel, weights: Weights) -> None:
    """Initialise a VideoModel's backbone from an ImageModel checkpoint; the NER layers keep their init.

    Every `backbone.*` tensor of the file must load (the classifier `backbone.resnet.fc.*`
    excepted), and the file may hold nothing else.
    """
    state_dict, source = _read(weights)
    _load_backbone(video_model, state_dict, source)


def _download_imagenet_resnet50() -> dict[str, torch.Tensor]:
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot fetch torchvision's ResNet50_Weights.IMAGENET1K_V1 from {weights.url} "
            f"({first_line(exc)}); download that file elsewhere and pass its local path instead"
        ) from exc


def init_backbone_from_imagenet(rcrnet: RCRNet, weights: Weights | None = None) -> None:
    """Load ImageNet ResNet-50 weights into `rcrnet.resnet`; the other layers keep their fresh init.

    `weights`: None fetches torchvision's `ResNet50_Weights.IMAGENET1K_V1` (the weights the
    release used; cached under TORCH_HOME), or a local `.pth` of torchvision's resnet50 state
    dict. The classifier `fc.*` is dropped. When the stem takes more than 3 input channels
    (FGPLG), its first 3 come from the file and the others keep their fresh init.
    """
    if not isinstance(rcrnet, RCRNet):
        raise TypeError(f"init_backbone_from_imagenet expects an RCRNet, got {type(rcrnet).__name__}")
    if weights is None:
        state_dict, source = _download_imagenet_resnet50(), "torchvision ResNet50_Weights.IMAGENET1K_V1"
    else:
        state_dict, source = _read(weights)
    kept = {k: v for k, v in state_dict.items() if not k.startswith(IMAGENET_UNUSED_PREFIXES)}
    resnet = rcrnet.resnet
    stem = resnet.conv1.weight
    given_stem = kept.get("conv1.weight")
    rgb_stem_shape = (stem.shape[0], 3, *stem.shape[2:])
    if given_stem is not None and stem.shape[1] > 3 and given_stem.shape == rgb_stem_shape:
        merged = stem.detach().clone()
        merged[:, :3] = given_stem
        kept["conv1.weight"] = merged
    _fits(resnet.state_dict(), kept, source, f"{type(rcrnet).__name__}.resnet")
    resnet.load_state_dict(kept, strict=True)


def checkpoint_flow(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The flow estimator of an FGPLG state dict: "flownet2" if it holds `flownet.*` keys, else "dis".

    An FGPLG with FlowNet 2.0 always saves the frozen `flownet.*` weights (the release's
    `pseudo_label_generator_5.pth` does too); one with DIS has none.
    """
    return "flownet2" if any(k.startswith(FLOWNET_PREFIX) for k in state_dict) else "dis"


def load_fgplg(model: FGPLG, weights: Weights, *, force_flow: bool = False,
               flownet_checkpoint: PathLike | None = None) -> str:
    """Load an FGPLG checkpoint (e.g. the release's `pseudo_label_generator_5.pth`) strictly.

    Returns the estimator the checkpoint was trained with. A generator is a pair (backbone,
    flow estimator): a backbone trained on DIS flow sees other warped labels and flow
    magnitudes under FlowNet2 and vice versa, so if the estimators differ this raises
    CheckpointError unless `force_flow`: then a FlowNet2 checkpoint's `flownet.*` weights are
    dropped (DIS model), or a DIS checkpoint's backbone is loaded and FlowNet2's weights come
    from `flownet_checkpoint` (NVIDIA's file; required). The release's unused classifier
    `backbone.resnet.fc.*` is dropped.
    """
    state_dict, source = _read(weights)
    if checkpoint_kind(state_dict) != "fgplg":
        stem = state_dict.get(STEM_KEY)
        found = "no backbone stem" if stem is None else f"a {stem.shape[1]}-channel stem"
        raise CheckpointError(f"{source}: not an FGPLG checkpoint ({found}; FGPLG's stem takes 7 channels)")
    trained = checkpoint_flow(state_dict)
    wanted = model.flow_name
    if trained != wanted and not force_flow:
        raise CheckpointError(
            f"{source} is an FGPLG trained with the {trained!r} flow estimator, but {wanted!r} was "
            f"asked for; use --flow {trained} (or --force-flow to run it with {wanted} anyway)"
        )
    if trained == wanted or wanted == "dis":
        ignore = RELEASE_UNUSED_PREFIXES + ((FLOWNET_PREFIX,) if wanted == "dis" else ())
        load_state_dict_strict(model, state_dict, ignore_prefixes=ignore, source=source)
        return trained
    if flownet_checkpoint is None:
        raise CheckpointError(f"{source} holds no FlowNet2 weights (trained with 'dis'); pass "
                              "--flownet-checkpoint to run it with flownet2")
    _load_backbone(model, state_dict, source)
    load_flownet2(model.flownet, flownet_checkpoint)
    return trained


def init_fgplg(model: FGPLG, image_weights: Weights, flownet_checkpoint: PathLike | None = None) -> None:
    """Initialise an FGPLG for training, as the release's train_fgplg.py does.

    The backbone comes from an ImageModel checkpoint (e.g. `image_pretrained_model.pth`):
    every tensor loads as it is except the stem conv, whose first 3 input channels come from
    the file while the other 4 (warped labels, flow magnitudes) keep their fresh init.
    FlowNet2's weights come from NVIDIA's `flownet_checkpoint` (required for flownet2,
    unused for DIS).
    """
    if model.flow_name == "flownet2" and flownet_checkpoint is None:
        raise CheckpointError("an FGPLG with flownet2 needs FlowNet2's weights: pass --flownet-checkpoint")
    state_dict, source = _read(image_weights)
    kept = {k: v for k, v in state_dict.items() if not k.startswith(RELEASE_UNUSED_PREFIXES)}
    stem = model.backbone.resnet.conv1.weight
    given = kept.get(STEM_KEY)
    if given is not None and given.dim() == 4 and given.shape[1] == 3 and given.shape[0] == stem.shape[0] \
            and given.shape[2:] == stem.shape[2:]:
        widened = stem.detach().clone()
        widened[:, :3] = given.to(widened.dtype)
        kept[STEM_KEY] = widened
    elif given is not None and given.shape == stem.shape:
        raise CheckpointError(
            f"{source}: already an FGPLG checkpoint (7-channel stem); to continue from it, load it as "
            "an FGPLG (--resume, or --start-epoch N with it as --checkpoint)"
        )
    _load_backbone(model, kept, source)
    if model.flow_name == "flownet2":
        load_flownet2(model.flownet, flownet_checkpoint)


def model_from_checkpoint(path: PathLike, output_stride: int = 16,
                          decoder: str = "release") -> tuple[nn.Module, str]:
    """The model a checkpoint holds (VideoModel or ImageModel, with `decoder` "release" or
    "factored"), loaded strictly, and its kind."""
    state_dict = read_state_dict(path)
    kind = checkpoint_kind(state_dict)
    classes = {"video": VideoModel, "image": ImageModel}
    if kind not in classes:
        held = {"fgplg": "an FGPLG", "imagenet": "an ImageNet ResNet-50"}.get(kind, "no RCRNet weights")
        raise CheckpointError(f"checkpoint {path}: holds {held}, not an ImageModel or VideoModel")
    # built without its random initialisation (0.6 s of a VideoModel on a CPU): the strict load
    # below fills every parameter and buffer. Allocated by torch.empty rather than `to_empty`,
    # whose empty_like of meta tensors imports sympy (0.3 s)
    with torch.device("meta"):
        model: nn.Module = classes[kind](output_stride=output_stride, decoder=decoder)
    model._apply(lambda t: torch.empty(t.shape, dtype=t.dtype))
    load_weights(model, state_dict)
    return model, kind


def load_flownet2(model: nn.Module, weights: Weights) -> None:
    """Load FlowNet 2.0 weights into `model` (a `FlowNet2`) strictly: NVIDIA's
    `FlowNet2_checkpoint.pth.tar` as it is, a bare state dict, or a safetensors file.

    flownet2/ imports only torch, so its own loader reads `torch.save` files only; safetensors
    files are read here and handed over as a state dict.
    """
    if isinstance(weights, Mapping):
        state_dict, source = weights, "state dict"
    elif is_safetensors(weights):
        state_dict, source = read_state_dict(weights), f"FlowNet2 checkpoint {weights}"
    else:
        try:
            state_dict = read_flownet2_state_dict(weights)
        except FlowNetCheckpointError as error:
            raise CheckpointError(str(error)) from None
        source = f"FlowNet2 checkpoint {weights}"
    load_state_dict_strict(model, state_dict, source=source)


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
