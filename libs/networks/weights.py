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
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from flownet2.checkpoint import CheckpointError as FlowNetCheckpointError
from flownet2.checkpoint import check_fits, load_flownet2_checkpoint
from libs.runtime.errors import UserError, first_line
from libs.runtime.files import FileReadError, read_torch_file, save_torch

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


class CheckpointError(UserError, FlowNetCheckpointError):
    """A checkpoint file cannot be read, or its tensors do not fit the model."""


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """The state dict stored at `path`, on the CPU, with wrappers and `module.` prefixes removed.

    Accepts a plain state dict or a dict holding one under `state_dict` or `model`.
    """
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
    load_flownet2_checkpoint(model.flownet, flownet_checkpoint)
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
        load_flownet2_checkpoint(model.flownet, flownet_checkpoint)


def model_from_checkpoint(path: PathLike, output_stride: int = 16) -> tuple[nn.Module, str]:
    """The model a checkpoint holds (VideoModel or ImageModel), loaded strictly, and its kind."""
    state_dict = read_state_dict(path)
    kind = checkpoint_kind(state_dict)
    if kind == "video":
        model: nn.Module = VideoModel(output_stride=output_stride)
    elif kind == "image":
        model = ImageModel(output_stride=output_stride)
    else:
        held = {"fgplg": "an FGPLG", "imagenet": "an ImageNet ResNet-50"}.get(kind, "no RCRNet weights")
        raise CheckpointError(f"checkpoint {path}: holds {held}, not an ImageModel or VideoModel")
    load_weights(model, state_dict)
    return model, kind


def save_weights(obj: nn.Module | Mapping[str, object], path: PathLike) -> None:
    """Save a module's state dict (or any state dict / resume dict) to `path` atomically."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    save_torch(obj, Path(path))
