"""Loading weights into models strictly: the only keys ever dropped are named ones.

Those are the release's unused ImageNet classifier `backbone.resnet.fc.*`, torchvision's `fc.*`,
and an FGPLG file's `flownet.*` when forced onto DIS; any other difference is one
`CheckpointError` naming the file and listing every missing key, unexpected key and shape
mismatch. Every tensor's values are checked too (`check_values`): a tensor of integers where
the model holds floating point numbers (a file of int32 tensors loads into constant maps), or a
NaN or infinite weight (all-black maps), is refused with the file and the key. The model is left
untouched by a refused load.

Each loader takes `Weights`: a path, or a state dict already read with `read_state_dict`, so
that a caller which must look at a file's keys first (`checkpoint_kind`) reads it only once
(and the errors still name the file).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from flownet2.checkpoint import CheckpointError as FlowNetCheckpointError
from flownet2.checkpoint import check_fits, read_flownet2_state_dict

from ..fgplg import FGPLG
from ..models import ImageModel, VideoModel
from .formats import (
    BACKBONE_PREFIX,
    FLOWNET_PREFIX,
    RELEASE_UNUSED_PREFIXES,
    STEM_KEY,
    CheckpointError,
    PathLike,
    Weights,
    checkpoint_flow,
    checkpoint_kind,
    describe_source,
    is_safetensors,
    read_state_dict,
)

KIND_NAMES = {"fgplg": "an FGPLG checkpoint", "video": "a VideoModel checkpoint",
              "image": "an ImageModel checkpoint", "imagenet": "an ImageNet ResNet-50 checkpoint"}


def _read(weights: Weights) -> tuple[Mapping[str, torch.Tensor], str]:
    """(state dict, name for messages) of a path or an already-read state dict."""
    if isinstance(weights, Mapping):
        return weights, describe_source(weights)
    return read_state_dict(weights), f"checkpoint {weights}"


def check_values(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                 source: str) -> None:
    """Refuse tensors of `given` whose values cannot be what the model's tensor of the same key
    holds: integers or booleans where it holds floating point numbers (or the reverse), complex
    numbers, and NaN or infinite values. One CheckpointError names `source` and the first key."""
    for key, tensor in given.items():
        wanted = expected.get(key)
        if wanted is None:
            continue
        if tensor.is_complex() or tensor.is_floating_point() != wanted.is_floating_point():
            raise CheckpointError(f"{source}: key {key!r} holds {str(tensor.dtype).removeprefix('torch.')} "
                                  f"values where the model holds {str(wanted.dtype).removeprefix('torch.')}; "
                                  "not weights this model was trained with")
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: key {key!r} holds {bad} NaN or infinite value(s); the file is "
                                  "damaged or its training diverged")


def _fits(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str,
          target: str) -> None:
    """Raise one CheckpointError naming `source` unless `given` loads into `target`'s `expected`
    keys strictly and every value passes `check_values`."""
    try:
        check_fits(expected, given, source, target)
    except FlowNetCheckpointError as error:
        raise CheckpointError(str(error)) from None
    check_values(expected, given, source)


def refuse_other_kind(state_dict: Mapping[str, torch.Tensor], source: str, refused: Iterable[str],
                      wanted: str) -> None:
    """Name the kind of a file that holds another model's weights (`checkpoint_kind` in
    `refused`), rather than listing the keys and shapes that do not fit: "<source> is an FGPLG
    checkpoint, not <wanted>"."""
    kind = checkpoint_kind(state_dict)
    if kind in tuple(refused):
        raise CheckpointError(f"{source} is {KIND_NAMES[kind]}, not {wanted}")


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                           ignore_prefixes: Iterable[str] = (), source: str | None = None) -> None:
    """Load `state_dict` into `model`, dropping only keys that start with one of `ignore_prefixes`.

    Any other difference raises one CheckpointError naming `source` (default: the file the
    state dict was read from) and listing the missing keys, unexpected keys and shape
    mismatches; so does a tensor `check_values` refuses.
    """
    source = source or describe_source(state_dict)
    prefixes = tuple(ignore_prefixes)
    kept = {k: v for k, v in state_dict.items() if not (prefixes and k.startswith(prefixes))}
    _fits(model.state_dict(), kept, source, type(model).__name__)
    model.load_state_dict(kept, strict=True)


def load_weights(model: nn.Module, weights: Weights) -> None:
    """Load an ImageModel or VideoModel checkpoint (the release's files as they are) strictly.

    The release's unused ImageNet classifier `backbone.resnet.fc.*` is dropped. A file of
    another kind (an FGPLG, the other model, an ImageNet ResNet-50) is named as such.
    """
    state_dict, source = _read(weights)
    wanted = {VideoModel: "video", ImageModel: "image"}.get(type(model))
    if wanted is not None:
        refuse_other_kind(state_dict, source, set(KIND_NAMES) - {wanted}, f"{KIND_NAMES[wanted]} "
                          f"(the weights of {type(model).__name__})")
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


def model_from_checkpoint(path: PathLike, output_stride: int = 16, decoder: str = "release",
                          parallel_frames: int = 1) -> tuple[nn.Module, str]:
    """The model a checkpoint holds (VideoModel or ImageModel, with `decoder` "release" or
    "factored"; a VideoModel with `parallel_frames`), loaded strictly, and its kind."""
    state_dict = read_state_dict(path)
    kind = checkpoint_kind(state_dict)
    classes = {"video": VideoModel, "image": ImageModel}
    if kind not in classes:
        held = {"fgplg": "an FGPLG", "imagenet": "an ImageNet ResNet-50"}.get(kind, "no RCRNet weights")
        raise CheckpointError(f"checkpoint {path}: holds {held}, not an ImageModel or VideoModel")
    # built without its random initialisation: the strict load below fills every parameter and
    # buffer. Allocated by torch.empty rather than `to_empty`, whose empty_like of meta tensors
    # imports sympy
    with torch.device("meta"):
        options = {"parallel_frames": parallel_frames} if kind == "video" else {}
        model: nn.Module = classes[kind](output_stride=output_stride, decoder=decoder, **options)
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
