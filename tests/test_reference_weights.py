"""The reference weights made in the tests (`reference_weights.py`): the rule, and the same tensors,
bit for bit, as the project's shared reference module `../shared/reference/refweights.py`."""
from __future__ import annotations

import importlib.util
import math
import zlib

import pytest
import torch
from conftest import SHARED
from reference_weights import KEY_LISTS, key_list, read_key_list, weight_for, weights_for

SHARED_MODULE = SHARED / "reference" / "refweights.py"


@pytest.fixture(scope="module")
def shared_refweights():
    """The shared reference module, or skip where this checkout has none beside it."""
    if not SHARED_MODULE.is_file():
        pytest.skip(f"needs the shared reference module at {SHARED_MODULE} to compare with")
    spec = importlib.util.spec_from_file_location("shared_refweights", SHARED_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", KEY_LISTS)
def test_same_tensors_as_the_shared_module(name, shared_refweights):
    """Every key list: same keys in the same order, and each tensor equal in dtype, shape and bits."""
    path = SHARED_MODULE.parent / "keys" / f"{name}.tsv"
    assert key_list(name) == shared_refweights.read_keys(path)  # the copy in tests/reference is current
    expected = shared_refweights.reference_state_dict(shared_refweights.read_keys(path))
    ours = weights_for(key_list(name))
    assert list(ours) == list(expected)
    for key, tensor in expected.items():
        assert ours[key].dtype == tensor.dtype and ours[key].shape == tensor.shape, key
        assert torch.equal(ours[key], tensor), key


def test_rule_by_key_and_shape():
    """Each branch of the rule on keys of its own: the values' ranges and scales, and the seed."""
    shapes = key_list("video_model")
    kinds = {
        "int64": [k for k, (_, d) in shapes.items() if d == "int64"],
        "running_var": [k for k in shapes if k.endswith("running_var")],
        "running_mean": [k for k in shapes if k.endswith("running_mean")],
        "conv": [k for k, (s, _) in shapes.items() if len(s) >= 2],
        "scale": [k for k, (s, d) in shapes.items() if len(s) < 2 and d != "int64"
                  and k.endswith("weight")],
        "bias": [k for k in shapes if k.endswith("bias")],
    }
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    weights = weights_for(shapes)
    assert all(weights[k].dtype == torch.int64 and not weights[k].any() for k in kinds["int64"])
    variances = torch.cat([weights[k] for k in kinds["running_var"]])
    assert variances.min() >= 0.5 and variances.max() < 1.5
    scales = torch.cat([weights[k] - 1 for k in kinds["scale"]])
    for name, values, std in (("running_mean", torch.cat([weights[k] for k in kinds["running_mean"]]), 0.1),
                              ("scale", scales, 0.1),
                              ("bias", torch.cat([weights[k] for k in kinds["bias"]]), 0.1)):
        assert abs(values.std().item() - std) < 0.1 * std, name
        assert abs(values.mean().item()) < 0.01, name
    conv = max(kinds["conv"], key=lambda k: weights[k].numel())
    fan_in = math.prod(shapes[conv][0][1:])
    assert abs(weights[conv].std().item() * math.sqrt(fan_in) - 1) < 0.01
    # one generator per key, seeded with its CRC-32
    key = kinds["bias"][0]
    drawn = torch.randn(shapes[key][0], generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))
    assert torch.equal(weights[key], 0.1 * drawn)
    # the order of the keys does not matter
    reversed_weights = weights_for(dict(reversed(list(shapes.items()))))
    assert all(torch.equal(reversed_weights[k], weights[k]) for k in shapes)


def test_key_list_format(tmp_path):
    path = tmp_path / "keys.tsv"
    path.write_text("# key\tshape\tdtype\n\na.weight\t2x3\tfloat32\nb.num_batches_tracked\t\tint64\n")
    assert read_key_list(path) == {"a.weight": ((2, 3), "float32"), "b.num_batches_tracked": ((), "int64")}
    assert weight_for("b.num_batches_tracked", (), "int64").shape == ()
    path.write_text("a.weight 2x3 float32\n")
    with pytest.raises(ValueError, match=r"keys.tsv:1: expected key<TAB>shape<TAB>dtype"):
        read_key_list(path)
