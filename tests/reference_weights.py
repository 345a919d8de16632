"""Deterministic weights for a state dict, made from its keys and shapes alone.

The golden outputs under `tests/reference/golden/` were computed by the 2019 release with these
weights, so the golden tests need the same tensors bit for bit. Each tensor is drawn from its own
`torch.Generator`, seeded with the CRC-32 of its key, so the weights do not depend on the order in
which modules are built. The rule, by key and shape:

- int64 tensors (BatchNorm's `num_batches_tracked`): zeros;
- `running_var`: U[0, 1) + 0.5, always positive;
- `running_mean`: 0.1 N(0, 1);
- tensors of two or more dimensions (convolutions, linear layers): N(0, 1) sqrt(1 / fan_in), fan_in
  being the product of every dimension but the first, so activations keep their scale with depth;
- any other `weight` (a normalisation layer's scale): 1 + 0.1 N(0, 1);
- the rest (biases): 0.1 N(0, 1).

`tests/test_reference_weights.py` checks that this reproduces the project's shared reference
module tensor for tensor, wherever that module is beside the checkout.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch

REFERENCE = Path(__file__).resolve().parent / "reference"
KEY_LISTS = ("fgplg", "flownet2", "image_model", "video_model")

Shapes = dict[str, tuple[tuple[int, ...], str]]


def read_key_list(path: Path) -> Shapes:
    """A key list (`keys/<name>.tsv`): `{key: (shape, dtype name)}` in file order.

    One tensor a line, `key<TAB>shape<TAB>dtype`, the shape's sizes joined by `x` (empty for a
    scalar); blank lines and lines starting with `#` are skipped.
    """
    shapes: Shapes = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected key<TAB>shape<TAB>dtype, got {line!r}")
        key, shape, dtype = fields
        shapes[key] = (tuple(int(size) for size in shape.split("x")) if shape else (), dtype)
    return shapes


def key_list(name: str) -> Shapes:
    """The key list `name` (one of `KEY_LISTS`) kept in tests/reference/keys/."""
    return read_key_list(REFERENCE / "keys" / f"{name}.tsv")


def weight_for(key: str, shape: tuple[int, ...], dtype: str = "float32") -> torch.Tensor:
    """The tensor of `key` (see the module's docstring for the rule)."""
    if dtype == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))

    def normal() -> torch.Tensor:
        return torch.randn(shape, generator=generator)

    if key.endswith("running_var"):
        return torch.rand(shape, generator=generator) + 0.5
    if key.endswith("running_mean"):
        return normal() * 0.1
    if len(shape) >= 2:
        return normal() * math.sqrt(1.0 / math.prod(shape[1:]))
    if key.endswith("weight"):
        return 1.0 + 0.1 * normal()
    return 0.1 * normal()


def weights_for(shapes: Shapes) -> dict[str, torch.Tensor]:
    """`{key: weight_for(key, shape, dtype)}` for a key list, in its order."""
    return {key: weight_for(key, shape, dtype) for key, (shape, dtype) in shapes.items()}
