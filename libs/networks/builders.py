"""Model builders in torchvision's style: `video_model(weights=VideoModelWeights.RELEASE)`.

Each builder makes a network and, when `weights` is given, loads it strictly through
`libs.networks.weights`. `weights` is a path (a `.pth` file as released, or a `.safetensors`
file, e.g. written by `python -m libs.networks.convert`), a member of the builder's enum
naming a released file (`ImageModelWeights`, `VideoModelWeights`, `FGPLGWeights`,
`FlowNet2Weights`; `DEFAULT` is `RELEASE`), or that member's name as a string ("RELEASE").

A named file is looked for in `folder`, else in `$RCRNET_MODELS`, else in this checkout's
`models/` folder, under the release's file name or its converted `.safetensors` name.
Nothing is downloaded: the authors host their files on Google Drive and Baidu Pan (see the
release's README), behind pages that need a browser, so a missing file is a
`CheckpointError` saying where to download it and where to put it. Builders return the model
in training mode, as torchvision's do; call `.eval()` for inference.
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from flownet2.models import FlowNet2
from libs.modules import RELEASE_DECODER

from .fgplg import FGPLG
from .models import ImageModel, VideoModel
from .weights import (
    SAFETENSORS_SUFFIX,
    CheckpointError,
    PathLike,
    checkpoint_kind,
    load_fgplg,
    load_flownet2,
    load_weights,
    read_state_dict,
)

MODELS_ENV = "RCRNET_MODELS"
CHECKOUT_MODELS = Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True)
class ReleasedFile:
    """A checkpoint file the authors published: its name, what it holds, and where it is hosted."""

    file_name: str
    kind: str  # checkpoint_kind of its tensors, or "flownet2"
    description: str
    links: tuple[str, ...]

    def candidates(self, folder: PathLike | None = None) -> list[Path]:
        """Where the file is looked for: the release's name, then its `.safetensors` conversion."""
        base = Path(folder) if folder is not None else Path(os.environ.get(MODELS_ENV) or CHECKOUT_MODELS)
        stem = self.file_name.removesuffix(".tar").rsplit(".", 1)[0]
        return [base / self.file_name, base / (stem + SAFETENSORS_SUFFIX)]

    def resolve(self, folder: PathLike | None = None) -> Path:
        """The local copy of the file; CheckpointError saying where to get it if there is none."""
        found = [path for path in self.candidates(folder) if path.is_file()]
        if found:
            return found[0]
        wanted = self.candidates(folder)
        raise CheckpointError(
            f"{wanted[0]} not found (nor {wanted[1].name}): download {self.file_name} "
            f"({self.description}) from {' or '.join(self.links)} and put it in {wanted[0].parent}/ "
            f"(or pass folder=..., or set {MODELS_ENV} to the folder holding it)"
        )


class ImageModelWeights(enum.Enum):
    """Released ImageModel (RCRNet) weights."""

    RELEASE = ReleasedFile(
        "image_pretrained_model.pth", "image",
        "RCRNet pretrained on MSRA-B + HKU-IS, the release's starting point for video training",
        ("Google Drive https://drive.google.com/open?id=1S7nao9WEhIiTmTC-E0nujMxm5Emypti9",
         "Baidu Pan https://pan.baidu.com/s/196cUbTInWJKd8FmiP9Jv_A (password j839)"),
    )
    DEFAULT = RELEASE


class VideoModelWeights(enum.Enum):
    """Released VideoModel (RCRNet+NER) weights."""

    RELEASE = ReleasedFile(
        "video_best_model.pth", "video",
        "RCRNet+NER trained on DAVIS2016 + FBMS + VOS, the paper's model",
        ("Google Drive https://drive.google.com/open?id=1TSmi1DyKIvuzuXE1aw7t_ygmcUmjYnN_",
         "Baidu Pan https://pan.baidu.com/s/1PLoajL6X_s29I-4mreSuSQ (password 6pi3)"),
    )
    DEFAULT = RELEASE


class FGPLGWeights(enum.Enum):
    """Released FGPLG (flow-guided pseudo-label generator) weights."""

    RELEASE = ReleasedFile(
        "pseudo_label_generator_5.pth", "fgplg",
        "FGPLG trained with 20% of the labels (l = 5), FlowNet 2.0 weights included",
        ("Baidu Pan https://pan.baidu.com/s/1dw8O2Ua5pKmOKYVgKRyADQ (password hbsu)",),
    )
    DEFAULT = RELEASE


class FlowNet2Weights(enum.Enum):
    """NVIDIA's FlowNet 2.0 weights, converted from Caffe (what FGPLG training starts from)."""

    RELEASE = ReleasedFile(
        "FlowNet2_checkpoint.pth.tar", "flownet2",
        "NVIDIA's FlowNet 2.0 converted from Caffe, 620 MB",
        ("the 'Converted Caffe Pre-trained Models' list of "
         "https://github.com/NVIDIA/flownet2-pytorch#converted-caffe-pre-trained-models",),
    )
    DEFAULT = RELEASE


KIND_NAMES = {"image": "an ImageModel", "video": "a VideoModel", "fgplg": "an FGPLG",
              "imagenet": "an ImageNet ResNet-50"}
WeightsArg = PathLike | enum.Enum | None


def resolve_weights(weights: WeightsArg, choices: type[enum.Enum],
                    folder: PathLike | None = None) -> Path | None:
    """The file `weights` names: None, a path, a member of `choices`, or a member's name."""
    if weights is None:
        return None
    if isinstance(weights, str) and weights in choices.__members__:
        weights = choices[weights]
    if isinstance(weights, enum.Enum):
        if not isinstance(weights, choices):
            raise ValueError(f"{weights} are not {choices.__name__}")
        return weights.value.resolve(folder)
    return Path(weights)


def _read_kind(path: Path, expected: str, builder: str) -> dict[str, torch.Tensor]:
    """The state dict at `path`, which must hold a model of kind `expected`."""
    state_dict = read_state_dict(path)
    kind = checkpoint_kind(state_dict)
    if kind != expected:
        raise CheckpointError(f"checkpoint {path}: holds {KIND_NAMES.get(kind, 'no RCRNet weights')}, "
                              f"but {builder}() needs {KIND_NAMES[expected]}")
    return state_dict


def image_model(weights: WeightsArg = None, output_stride: int = 16, *,
                folder: PathLike | None = None, decoder: str = RELEASE_DECODER) -> ImageModel:
    """RCRNet on single frames (`ImageModel`), with `weights` (a path or `ImageModelWeights`) loaded;
    `decoder` "release" (the default) or "factored" (the factored decoder)."""
    model = ImageModel(output_stride=output_stride, decoder=decoder)
    path = resolve_weights(weights, ImageModelWeights, folder)
    if path is not None:
        load_weights(model, _read_kind(path, "image", "image_model"))
    return model


def video_model(weights: WeightsArg = None, output_stride: int = 16, *, ner_init: str = "spec",
                folder: PathLike | None = None, decoder: str = RELEASE_DECODER) -> VideoModel:
    """RCRNet+NER on clips (`VideoModel`), with `weights` (a path or `VideoModelWeights`) loaded;
    `decoder` "release" (the default) or "factored" (the factored decoder)."""
    model = VideoModel(output_stride=output_stride, ner_init=ner_init, decoder=decoder)
    path = resolve_weights(weights, VideoModelWeights, folder)
    if path is not None:
        load_weights(model, _read_kind(path, "video", "video_model"))
    return model


def fgplg(weights: WeightsArg = None, flow: str = "flownet2", flownet_weights: WeightsArg = None,
          output_stride: int = 16, *, rgb_max: float = 1.0, fp16: bool = False, force_flow: bool = False,
          folder: PathLike | None = None, decoder: str = RELEASE_DECODER) -> FGPLG:
    """The flow-guided pseudo-label generator (`FGPLG`) with its flow estimator ("flownet2" or "dis").

    `weights` (a path or `FGPLGWeights`) is loaded with `load_fgplg` (strict; the flow estimator
    must be the one it was trained with unless `force_flow`). `flownet_weights` (a path or
    `FlowNet2Weights`) then loads FlowNet 2.0's weights over those of `weights`, if any: needed
    without `weights`, or for a DIS-trained file forced onto flownet2. `decoder`: "release" (the
    default) or "factored" (the factored decoder).
    """
    model = FGPLG(output_stride=output_stride, flow=flow, rgb_max=rgb_max, fp16=fp16, decoder=decoder)
    flownet_path = resolve_weights(flownet_weights, FlowNet2Weights, folder)
    if flownet_path is not None and model.flow_name != "flownet2":
        raise ValueError(f"flownet_weights are FlowNet 2.0's, but this FGPLG uses flow={flow!r}")
    path = resolve_weights(weights, FGPLGWeights, folder)
    loaded_flownet = False
    if path is not None:
        state_dict = _read_kind(path, "fgplg", "fgplg")
        trained = load_fgplg(model, state_dict, force_flow=force_flow, flownet_checkpoint=flownet_path)
        loaded_flownet = trained != model.flow_name
    if flownet_path is not None and not loaded_flownet:
        load_flownet2(model.flownet, flownet_path)
    return model


def flownet2(weights: WeightsArg = None, rgb_max: float = 1.0, div_flow: float = 20.0, *,
             folder: PathLike | None = None) -> FlowNet2:
    """FlowNet 2.0 (`flownet2.models.FlowNet2`), with `weights` (a path or `FlowNet2Weights`) loaded."""
    model = FlowNet2(rgb_max=rgb_max, div_flow=div_flow)
    path = resolve_weights(weights, FlowNet2Weights, folder)
    if path is not None:
        load_flownet2(model, path)
    return model


__all__ = [
    "FGPLGWeights",
    "FlowNet2Weights",
    "ImageModelWeights",
    "ReleasedFile",
    "VideoModelWeights",
    "fgplg",
    "flownet2",
    "image_model",
    "resolve_weights",
    "video_model",
]
