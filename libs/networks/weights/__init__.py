"""Every checkpoint this project reads or writes: read once, kind detected, loaded strictly.

- `formats`: the files (PyTorch's, read with `weights_only=True`, and safetensors): reading
  them into state dicts that name their file, telling what they hold, writing them atomically.
- `loading`: loading a file into the model it holds, strictly, with every tensor's dtype and
  finiteness checked; every error names the file and the key.
- `init`: initialising a model from another model's weights (ImageModel -> VideoModel backbone,
  ImageNet ResNet-50 -> RCRNet, ImageModel -> FGPLG), as the release's training scripts do.
"""
from .formats import (
    BACKBONE_PREFIX,
    DATA_PARALLEL_PREFIX,
    FLOWNET_PREFIX,
    IMAGENET_UNUSED_PREFIXES,
    KEY_ORDER,
    RELEASE_UNUSED_PREFIXES,
    SAFETENSORS_SUFFIX,
    STEM_KEY,
    CheckpointError,
    PathLike,
    StateDict,
    Weights,
    checkpoint_flow,
    checkpoint_kind,
    is_safetensors,
    read_safetensors_metadata,
    read_state_dict,
    save_weights,
    sha256_of,
    weights_metadata,
)
from .init import init_backbone_from_imagenet, init_fgplg, init_video_from_image
from .loading import (
    check_values,
    load_fgplg,
    load_flownet2,
    load_state_dict_strict,
    load_weights,
    model_from_checkpoint,
)

__all__ = [
    "BACKBONE_PREFIX",
    "DATA_PARALLEL_PREFIX",
    "FLOWNET_PREFIX",
    "IMAGENET_UNUSED_PREFIXES",
    "KEY_ORDER",
    "RELEASE_UNUSED_PREFIXES",
    "SAFETENSORS_SUFFIX",
    "STEM_KEY",
    "CheckpointError",
    "PathLike",
    "StateDict",
    "Weights",
    "check_values",
    "checkpoint_flow",
    "checkpoint_kind",
    "init_backbone_from_imagenet",
    "init_fgplg",
    "init_video_from_image",
    "is_safetensors",
    "load_fgplg",
    "load_flownet2",
    "load_state_dict_strict",
    "load_weights",
    "model_from_checkpoint",
    "read_safetensors_metadata",
    "read_state_dict",
    "save_weights",
    "sha256_of",
    "weights_metadata",
]
