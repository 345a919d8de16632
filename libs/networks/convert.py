"""Convert checkpoints between PyTorch's format and safetensors, losslessly.

    python -m libs.networks.convert models/video_best_model.pth models/video_best_model.safetensors
    python -m libs.networks.convert models/video_best_model.safetensors back.pth

The input is read with `read_state_dict` (wrappers such as NVIDIA's `{"epoch", "state_dict",
"best_EPE"}` and `module.` prefixes removed); the output is that state dict, the format
chosen by the output's suffix (`.safetensors`, anything else `torch.save`). A safetensors
output records the model kind, input channels, FGPLG's flow estimator, the output stride,
the key order and the source's name and SHA-256 (`weights_metadata`). The written file is read
back and every tensor compared with the input (names, order, dtype, shape, `torch.equal`).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from libs.runtime.arguments import ArgumentParser, run_command

from .weights import (
    KEY_ORDER,
    SAFETENSORS_SUFFIX,
    CheckpointError,
    PathLike,
    checkpoint_kind,
    is_safetensors,
    read_safetensors_metadata,
    read_state_dict,
    save_weights,
    weights_metadata,
)

RCRNET_KINDS = ("image", "video", "fgplg")


def check_identical(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                    source: str) -> None:
    """CheckpointError unless `given` has `expected`'s keys in its order and bit-identical tensors."""
    if list(expected) != list(given):
        raise CheckpointError(f"{source}: keys differ from the input's (names or order)")
    for key, tensor in expected.items():
        other = given[key]
        if other.dtype != tensor.dtype or other.shape != tensor.shape or not torch.equal(other, tensor):
            raise CheckpointError(f"{source}: tensor {key!r} differs from the input's")


def convert(source: PathLike, target: PathLike, output_stride: int | None = 16) -> dict[str, str]:
    """Write the state dict of `source` to `target` (format from its suffix), check it, and return
    the target's safetensors metadata (empty for a `torch.save` target)."""
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise CheckpointError(f"convert {source}: the output must be another file")
    state_dict = read_state_dict(source)
    if target.suffix == SAFETENSORS_SUFFIX:
        kind = checkpoint_kind(state_dict)
        stride = output_stride if kind in RCRNET_KINDS else None
        recorded = weights_metadata(state_dict, stride, source)
        save_weights(state_dict, target, metadata=recorded)
    else:
        save_weights(dict(state_dict), target)
    check_identical(state_dict, read_state_dict(target), f"converted file {target}")
    return read_safetensors_metadata(target) if is_safetensors(target) else {}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: IN OUT [--os N]; prints the tensors' count and the metadata written."""
    parser = ArgumentParser(prog="python -m libs.networks.convert", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="checkpoint to read (.pth, .pth.tar or .safetensors)")
    parser.add_argument("target", help="file to write: .safetensors, or any other name for torch.save")
    parser.add_argument("--os", dest="output_stride", type=int, choices=(8, 16), default=16,
                        help="output stride recorded for RCRNet checkpoints (the release's is 16)")
    args = parser.parse_args(argv)

    def run() -> None:
        metadata = convert(args.source, args.target, args.output_stride)
        count = len(read_state_dict(args.target))
        print(f"{args.target}: {count} tensors, bit-identical to {args.source}")
        for key, value in metadata.items():
            shown = f"{len(value.split(','))} names" if key == KEY_ORDER else value
            print(f"  {key}: {shown}")

    return run_command(run, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
