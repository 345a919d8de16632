"""Export ImageModel or VideoModel to ONNX and check it under onnxruntime on the CPU.

    python -m libs.inference.export_onnx --checkpoint models/video_best_model.pth --kind video \\
        --clip-len 4 --size 448 video.onnx

The graph takes ImageNet-normalised frames, `frames` [B, 3, H, W] (image) or `clip`
[B, T, 3, H, W] (video), and returns saliency probabilities (the sigmoid of the logits),
`saliency` [B, 1, H, W] or [B, T, 1, H, W]. It is exported with `torch.onnx.export`'s
TorchScript tracer (`dynamo=False`) at opset `OPSET`. B, H and W are dynamic axes; T is fixed
at `--clip-len`, since tracing unrolls the NER's ConvGRU over the clip's frames. The decoder is
exported in the release's resize-then-conv form (the factored form's bands depend on the frame
size as Python numbers, which tracing would freeze). The check runs
the exported file under onnxruntime's CPU provider and PyTorch on the same random inputs
(at the export size and at other sizes and batches) and compares their 8-bit maps
(`libs.evaluation.maps.probabilities_to_uint8`): the share of differing pixels and the
largest difference, in levels of 255.

The file is written atomically (`libs.runtime.files.write_atomic`): a failed export (a full
disk, Ctrl-C) leaves an existing file at the output path as it was. The output path is
checked before the model is built: a folder there, or a folder that cannot be written, is
reported as one line.
"""
from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from libs.evaluation.maps import probabilities_to_uint8
from libs.networks.builders import image_model, video_model
from libs.networks.sizes import MIN_FRAME_SIZE, WHY_MIN_FRAME_SIZE
from libs.runtime.arguments import ArgumentParser, int_at_least, positive_int, run_command
from libs.runtime.errors import UserError
from libs.runtime.files import write_atomic

OPSET = 17
KINDS = ("image", "video")
frame_size = int_at_least(MIN_FRAME_SIZE, "frame_size", WHY_MIN_FRAME_SIZE)


class Saliency(nn.Module):
    """A model's sigmoid probabilities: what the exported graph returns."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(frames))


@dataclass(frozen=True)
class Deviation:
    """How far onnxruntime's 8-bit maps are from PyTorch's for one input shape."""

    shape: tuple[int, ...]
    differing: float  # share of pixels whose 8-bit values differ
    largest: int  # largest absolute difference, in levels of 255

    def __str__(self) -> str:
        return (f"input {'x'.join(map(str, self.shape))}: {100 * self.differing:.4f}% of pixels differ, "
                f"largest difference {self.largest}/255")


def input_shape(kind: str, batch: int, clip_len: int, height: int, width: int) -> tuple[int, ...]:
    """The input shape of `kind`'s graph."""
    return (batch, 3, height, width) if kind == "image" else (batch, clip_len, 3, height, width)


def build_model(kind: str, checkpoint: str | Path, output_stride: int = 16) -> nn.Module:
    """The ImageModel or VideoModel of `checkpoint` (strictly loaded), in eval mode, with sigmoid."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    builder = image_model if kind == "image" else video_model
    # the release's decoder (the builders' default): the factored decoder's interpolation bands
    # depend on the frame size as Python numbers, which a traced graph would freeze
    model = builder(checkpoint, output_stride, decoder="release")
    return Saliency(model).eval()


def export(model: nn.Module, kind: str, path: str | Path, clip_len: int = 4, size: int = 448) -> None:
    """Write `model` (from `build_model`) to `path` as ONNX, traced on one input of `size` x `size`.

    Atomic: the graph is written to a temporary file beside `path` and renamed over it when
    complete; on any failure `path` keeps its old content (a write error is a `FileWriteError`).
    """
    require_onnx("onnx")
    name = "frames" if kind == "image" else "clip"
    first = 2 if kind == "image" else 3
    spatial = {0: "batch", first: "height", first + 1: "width"}
    example = torch.zeros(input_shape(kind, 1, clip_len, size, size))

    def write(handle: BinaryIO) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is chosen on purpose (see the module's docstring)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example,), handle, input_names=[name], output_names=["saliency"],
                              dynamic_axes={name: spatial, "saliency": spatial}, opset_version=OPSET,
                              dynamo=False)

    write_atomic(path, write)


def require_onnx(package: str) -> None:
    """UserError naming the install command unless `package` (onnx or onnxruntime) is importable."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise UserError(f"ONNX export and its check need the {package} package: "
                        "pip install -r requirements-dev.txt (or pip install -e '.[onnx]')")


def check_output(path: str | Path) -> None:
    """UserError unless a file can be written at `path`: it is no folder, and its folder (or
    the nearest existing folder above it) accepts new files."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"output {path} is a folder; give the name of the .onnx file to write")
    folder = next((p for p in path.parents if p.exists()), Path("."))
    if not folder.is_dir():
        raise UserError(f"output {path}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"output {path}: cannot write in {folder}: {exc.strerror or exc}") from exc


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session of the file at `path`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare(model: nn.Module, session, shape: tuple[int, ...], seed: int = 0) -> Deviation:
    """The 8-bit deviation of onnxruntime's `session` from `model` on one random input of `shape`."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(shape, generator=generator)
    with torch.no_grad():
        expected = probabilities_to_uint8(model(frames)).numpy().astype(np.int16)
    name = session.get_inputs()[0].name
    given = session.run(None, {name: frames.numpy()})[0]
    found = probabilities_to_uint8(torch.from_numpy(given)).numpy().astype(np.int16)
    if found.shape != expected.shape:
        raise RuntimeError(f"onnxruntime returned shape {found.shape}, PyTorch {expected.shape}")
    difference = np.abs(found - expected)
    return Deviation(shape, float((difference > 0).mean()), int(difference.max()))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: export, then check at the export size and at a second batch and size."""
    parser = ArgumentParser(prog="python -m libs.inference.export_onnx", description=__doc__.split("\n")[0])
    parser.add_argument("output", help="the .onnx file to write (replaced atomically if it exists)")
    parser.add_argument("--checkpoint", required=True, metavar="FILE",
                        help="ImageModel or VideoModel weights (.pth or .safetensors)")
    parser.add_argument("--kind", choices=KINDS, default="video", help="which model the checkpoint holds")
    parser.add_argument("--clip-len", type=positive_int, default=4, metavar="T",
                        help="frames per clip T (video; fixed in the graph)")
    parser.add_argument("--size", type=frame_size, default=448, metavar="N",
                        help="export (trace) size: size x size frames")
    parser.add_argument("--os", dest="output_stride", type=int, choices=(8, 16), default=16,
                        help="output stride of the backbone")
    parser.add_argument("--check-size", type=frame_size, default=None, metavar="N",
                        help="also check at this size with batch 2 (default: size + 32)")
    args = parser.parse_args(argv)

    def run() -> None:
        check_output(args.output)
        require_onnx("onnx")
        require_onnx("onnxruntime")
        model = build_model(args.kind, args.checkpoint, args.output_stride)
        export(model, args.kind, args.output, args.clip_len, args.size)
        session = onnx_session(args.output)
        other = args.check_size or args.size + 32
        print(f"wrote {args.output} (opset {OPSET}; dynamic: batch, height, width"
              + (f"; clip length fixed at {args.clip_len})" if args.kind == "video" else ")"))
        for batch, size in ((1, args.size), (2, other)):
            shape = input_shape(args.kind, batch, args.clip_len, size, size)
            print(f"onnxruntime vs PyTorch, {compare(model, session, shape)}")

    return run_command(run, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
