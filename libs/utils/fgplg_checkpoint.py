"""Loading FGPLG checkpoints and initialising an FGPLG for training.

Which flow estimator a checkpoint was trained with is read from its keys: an FGPLG with
FlowNet 2.0 always saves the frozen `flownet.*` weights (the release's
`pseudo_label_generator_5.pth` does too), one with DIS has none. A generator is a pair
(backbone, flow estimator): a backbone trained on DIS flow sees other warped labels and
flow magnitudes under FlowNet2 and vice versa, so loading a checkpoint into a generator
with the other estimator is an error unless forced.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from flownet2.checkpoint import load_flownet2_checkpoint
from libs.networks.fgplg import FGPLG

from .checkpoint import (
    RELEASE_UNUSED_PREFIXES,
    CheckpointError,
    _check_fits,
    load_state_dict_strict,
    read_state_dict,
)

PathLike = str | os.PathLike[str]
FLOWNET_PREFIX = "flownet."
BACKBONE_PREFIX = "backbone."
STEM_KEY = "backbone.resnet.conv1.weight"


def checkpoint_flow(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The flow estimator of an FGPLG state dict: "flownet2" if it holds `flownet.*` keys, else "dis"."""
    return "flownet2" if any(k.startswith(FLOWNET_PREFIX) for k in state_dict) else "dis"


def is_fgplg_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is an FGPLG's (a 7-channel stem) rather than an ImageModel's (3 channels)."""
    stem = state_dict.get(STEM_KEY)
    return stem is not None and stem.dim() == 4 and stem.shape[1] == 7


def load_fgplg(model: FGPLG, path: PathLike, *, force_flow: bool = False,
               flownet_checkpoint: PathLike | None = None) -> str:
    """Load an FGPLG checkpoint (e.g. the release's `pseudo_label_generator_5.pth`) strictly.

    Returns the estimator the checkpoint was trained with. If it differs from `model`'s,
    raises CheckpointError unless `force_flow`: then a FlowNet2 checkpoint's `flownet.*`
    weights are dropped (DIS model), or a DIS checkpoint's backbone is loaded and FlowNet2's
    weights come from `flownet_checkpoint` (NVIDIA's file; required). The release's unused
    classifier `backbone.resnet.fc.*` is dropped.
    """
    state_dict = read_state_dict(path)
    if not is_fgplg_state_dict(state_dict):
        stem = state_dict.get(STEM_KEY)
        found = "no backbone stem" if stem is None else f"a {stem.shape[1]}-channel stem"
        raise CheckpointError(
            f"checkpoint {path}: not an FGPLG checkpoint ({found}; FGPLG's stem takes 7 channels)"
        )
    trained = checkpoint_flow(state_dict)
    wanted = model.flow_name
    if trained != wanted and not force_flow:
        raise CheckpointError(
            f"checkpoint {path} is an FGPLG trained with the {trained!r} flow estimator, but {wanted!r} was "
            f"asked for; use --flow {trained} (or --force-flow to run it with {wanted} anyway)"
        )
    if trained == wanted or wanted == "dis":
        ignore = RELEASE_UNUSED_PREFIXES + ((FLOWNET_PREFIX,) if wanted == "dis" else ())
        load_state_dict_strict(model, state_dict, ignore_prefixes=ignore, source=str(path))
        return trained
    if flownet_checkpoint is None:
        raise CheckpointError(
            f"checkpoint {path} holds no FlowNet2 weights (trained with 'dis'); pass --flownet-checkpoint "
            "to run it with flownet2"
        )
    _load_backbone(model, state_dict, str(path))
    load_flownet2_checkpoint(model.flownet, flownet_checkpoint)
    return trained


def _load_backbone(model: FGPLG, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    kept = {k: v for k, v in state_dict.items() if not k.startswith(RELEASE_UNUSED_PREFIXES)}
    expected = {BACKBONE_PREFIX + k: v for k, v in model.backbone.state_dict().items()}
    _check_fits(expected, kept, source, "FGPLG.backbone")
    model.backbone.load_state_dict({k[len(BACKBONE_PREFIX):]: v for k, v in kept.items()}, strict=True)


def init_fgplg(model: FGPLG, image_checkpoint: PathLike, flownet_checkpoint: PathLike | None = None) -> None:
    """Initialise an FGPLG for training (SPEC §6).

    The backbone comes from an ImageModel checkpoint (e.g. `image_pretrained_model.pth`):
    every tensor loads as it is except the stem conv, whose first 3 input channels come from
    the file while the other 4 (warped labels, flow magnitudes) keep their fresh init.
    FlowNet2's weights come from NVIDIA's `flownet_checkpoint` (required for flownet2,
    unused for DIS).
    """
    if model.flow_name == "flownet2" and flownet_checkpoint is None:
        raise CheckpointError("an FGPLG with flownet2 needs FlowNet2's weights: pass --flownet-checkpoint")
    state_dict = read_state_dict(image_checkpoint)
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
            f"checkpoint {image_checkpoint}: already an FGPLG checkpoint (7-channel stem); to continue "
            "from it, load it as an FGPLG (--resume, or --start-epoch N with it as --checkpoint)"
        )
    _load_backbone(model, kept, str(image_checkpoint))
    if model.flow_name == "flownet2":
        load_flownet2_checkpoint(model.flownet, flownet_checkpoint)
