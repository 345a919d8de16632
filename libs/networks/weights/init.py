"""Initialising a model from another model's weights, as the release's training scripts do.

A VideoModel's backbone from an ImageModel file (the NER layers keep their fresh init); an
RCRNet's ResNet-50 from torchvision's ImageNet weights; an FGPLG's backbone from an ImageModel
file, its stem widened from 3 to 7 input channels. Each is strict (`loading`): every tensor of
the part it fills must come from the file, and a file of another kind is named as such.
"""
from __future__ import annotations

import torch

from libs.runtime.errors import first_line

from ..fgplg import FGPLG
from ..models import VideoModel
from ..rcrnet import RCRNet
from .formats import (
    IMAGENET_UNUSED_PREFIXES,
    RELEASE_UNUSED_PREFIXES,
    STEM_KEY,
    CheckpointError,
    PathLike,
    Weights,
)
from .loading import _fits, _load_backbone, _read, load_flownet2, refuse_other_kind


def init_video_from_image(video_model: VideoModel, weights: Weights) -> None:
    """Initialise a VideoModel's backbone from an ImageModel checkpoint; the NER layers keep their init.

    Every `backbone.*` tensor of the file must load (the classifier `backbone.resnet.fc.*`
    excepted), and the file may hold nothing else.
    """
    state_dict, source = _read(weights)
    refuse_other_kind(state_dict, source, ("fgplg", "imagenet"), "an ImageModel checkpoint (the backbone "
                      "a VideoModel starts from, e.g. image_pretrained_model.pth)")
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
        refuse_other_kind(state_dict, source, ("fgplg",), "torchvision's ResNet-50 (resnet50-0676ba61.pth)")
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
