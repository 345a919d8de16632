"""Say what a checkpoint file holds and whether it loads strictly, in one line.

    python -m libs.networks.inspect models/video_best_model.pth
    models/video_best_model.pth: VideoModel (RCRNet+NER) weights, PyTorch file, 484 tensors,
    53.8 M values (float32), output stride not recorded (the release's is 16): loads strictly

The kind comes from the tensors' names and shapes (`checkpoint_kind`, `weights_metadata`): an
ImageModel (RCRNet, the release's `image_pretrained_model.pth`), a VideoModel (RCRNet+NER,
`video_best_model.pth`), an FGPLG (`pseudo_label_generator_5.pth`; its flow estimator from
its keys), NVIDIA's FlowNet 2.0 (`FlowNet2_checkpoint.pth.tar`) or torchvision's ImageNet
ResNet-50. The file is then loaded into that model with the loader the scripts use (strict:
every key and shape must fit). A safetensors file written by this project records its output
stride; a `.pth` does not, and the weights fit output stride 8 and 16 alike (dilation has no
parameters). Exit status: 0 when the file loads strictly, 1 when it is a known kind that does
not fit, 2 when it cannot be read or holds no model this project knows.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from flownet2.models import FlowNet2
from libs.runtime.arguments import ArgumentParser
from libs.runtime.errors import UserError, one_line

from .fgplg import FGPLG
from .models import ImageModel, VideoModel
from .weights import (
    CheckpointError,
    PathLike,
    checkpoint_flow,
    init_backbone_from_imagenet,
    is_safetensors,
    load_fgplg,
    load_flownet2,
    load_weights,
    read_safetensors_metadata,
    read_state_dict,
    weights_metadata,
)

PROG = "python -m libs.networks.inspect"
KIND_DESCRIPTIONS = {
    "image": "ImageModel (RCRNet) weights",
    "video": "VideoModel (RCRNet+NER) weights",
    "fgplg": "FGPLG (pseudo-label generator) weights",
    "flownet2": "FlowNet 2.0 weights (NVIDIA's)",
    "imagenet": "ImageNet ResNet-50 weights (torchvision's)",
}


@dataclass(frozen=True)
class Inspection:
    """What `inspect_checkpoint` found: the file's kind, format and size, and whether it loads."""

    path: Path
    kind: str
    file_format: str
    tensors: int
    parameters: int
    dtypes: tuple[str, ...]
    output_stride: str | None
    flow: str | None
    error: str | None

    @property
    def loads(self) -> bool:
        return self.error is None

    def line(self) -> str:
        """The one-line report `python -m libs.networks.inspect` prints."""
        what = KIND_DESCRIPTIONS[self.kind]
        if self.flow is not None:
            what += f", flow estimator {self.flow}"
        parts = [f"{self.path}: {what}", self.file_format, f"{self.tensors} tensors",
                 f"{self.parameters / 1e6:.1f} M values ({', '.join(self.dtypes)})"]
        if self.kind in ("image", "video", "fgplg"):
            parts.append(f"output stride {self.output_stride}" if self.output_stride
                         else "output stride not recorded (the release's is 16)")
        verdict = "loads strictly" if self.loads else f"does NOT load strictly: {self.error}"
        return ", ".join(parts) + ": " + verdict


def _load(kind: str, state_dict: Mapping[str, torch.Tensor], output_stride: int) -> None:
    """Load `state_dict` into a fresh model of `kind` as the scripts do (strict); CheckpointError if not."""
    if kind == "video":
        load_weights(VideoModel(output_stride=output_stride), state_dict)
    elif kind == "image":
        load_weights(ImageModel(output_stride=output_stride), state_dict)
    elif kind == "fgplg":
        load_fgplg(FGPLG(output_stride=output_stride, flow=checkpoint_flow(state_dict)), state_dict)
    elif kind == "flownet2":
        load_flownet2(FlowNet2(), state_dict)
    elif kind == "imagenet":
        init_backbone_from_imagenet(ImageModel(output_stride=output_stride).backbone, state_dict)


def inspect_checkpoint(path: PathLike) -> Inspection:
    """Read the checkpoint at `path`, name its kind and format, and try to load it strictly.

    Raises CheckpointError when the file cannot be read or holds no model this project knows;
    a known kind that does not fit is reported in the result (`error`), not raised.
    """
    path = Path(path)
    state_dict = read_state_dict(path)
    kind = weights_metadata(state_dict)["kind"]
    if kind not in KIND_DESCRIPTIONS:
        shown = ", ".join(list(state_dict)[:3])
        raise CheckpointError(f"checkpoint {path}: holds no model this project knows ({len(state_dict)} "
                              f"tensors, first keys {shown}); expected an ImageModel, VideoModel, FGPLG, "
                              "FlowNet 2.0 or ImageNet ResNet-50 state dict")
    stride = None
    file_format = "PyTorch file"
    if is_safetensors(path):
        stride = read_safetensors_metadata(path).get("output_stride")
        file_format = "safetensors file"
    try:
        _load(kind, state_dict, int(stride) if stride in ("8", "16") else 16)
        error = None
    except CheckpointError as exc:
        error = one_line(exc)
    floating = [t for t in state_dict.values() if t.is_floating_point()]
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in floating})
    parameters = sum(t.numel() for t in floating)
    return Inspection(path=path, kind=kind, file_format=file_format, tensors=len(state_dict),
                      parameters=parameters, dtypes=tuple(dtypes) or ("no floating-point tensors",),
                      output_stride=stride, flow=checkpoint_flow(state_dict) if kind == "fgplg" else None,
                      error=error)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: one line per FILE; exit 0 if all load strictly, 1 if one does not fit,
    2 if one cannot be read."""
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="checkpoint files (.pth, .pth.tar or .safetensors)")
    args = parser.parse_args(argv)
    status = 0
    for name in args.files:
        try:
            found = inspect_checkpoint(name)
        except UserError as exc:
            print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
            status = 2
            continue
        print(found.line(), flush=True)
        if not found.loads:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
