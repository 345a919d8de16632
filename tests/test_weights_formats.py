"""safetensors as a checkpoint format: release-style files converted both ways bit-identically,
metadata, detection by header, shared and non-contiguous tensors, one-line errors."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from libs.engine.trainer import TrainConfig, backup_path, best_model_path
from libs.networks.convert import convert, main
from libs.networks.weights import (
    CheckpointError,
    is_safetensors,
    load_flownet2,
    read_safetensors_metadata,
    read_state_dict,
    save_weights,
)
from libs.runtime.errors import UserError

pytestmark = pytest.mark.usefixtures("two_threads")


def _release_file(name: str, state_dict: dict[str, torch.Tensor], folder):
    """The reference weights saved as the release saved them (NVIDIA's FlowNet2 file wrapped)."""
    path = folder / f"{name}.pth"
    obj = {"epoch": 0, "state_dict": state_dict, "best_EPE": 1e10} if name == "flownet2" else state_dict
    torch.save(obj, path)
    return path


def _assert_identical(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> None:
    assert list(given) == list(expected)
    for key, tensor in expected.items():
        assert given[key].dtype == tensor.dtype, key
        assert given[key].shape == tensor.shape, key
        assert torch.equal(given[key], tensor), key


@pytest.mark.parametrize("name,kind", [
    ("image_model", "image"),
    ("video_model", "video"),
    pytest.param("fgplg", "fgplg", marks=pytest.mark.slow),
    pytest.param("flownet2", "flownet2", marks=pytest.mark.slow),
])
def test_release_files_round_trip_bit_identically(name, kind, reference_state_dict, tmp_path):
    expected = reference_state_dict(name)
    source = _release_file(name, expected, tmp_path)
    converted = tmp_path / f"{name}.safetensors"
    metadata = convert(source, converted)
    _assert_identical(expected, read_state_dict(converted))
    back = tmp_path / f"{name}_back.pth"
    convert(converted, back)
    _assert_identical(expected, torch.load(back, weights_only=True))
    assert metadata == read_safetensors_metadata(converted)
    assert metadata["kind"] == kind
    assert metadata["source_file"] == source.name
    assert metadata["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert json.loads(metadata["key_order"]) == list(expected)
    if kind == "flownet2":
        assert "output_stride" not in metadata and "input_channels" not in metadata
    else:
        assert metadata["output_stride"] == "16"
        assert metadata["input_channels"] == ("7" if kind == "fgplg" else "3")
    assert metadata.get("flow") == ("flownet2" if kind == "fgplg" else None)


def test_converter_prints_metadata_and_reports_errors_in_one_line(reference_state_dict, tmp_path, capsys):
    source = _release_file("image_model", reference_state_dict("image_model"), tmp_path)
    assert main([str(source), str(tmp_path / "image.safetensors"), "--os", "8"]) == 0
    out = capsys.readouterr().out
    assert "bit-identical" in out and "kind: image" in out and "output_stride: 8" in out
    assert main([str(tmp_path / "absent.pth"), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "absent.pth: no such file" in err


def test_key_order_survives_safetensors(tmp_path):
    state_dict = {"z.weight": torch.ones(2), "a.weight": torch.zeros(3), "m.bias": torch.arange(4)}
    path = tmp_path / "w.safetensors"
    save_weights(state_dict, path)
    assert list(read_state_dict(path)) == ["z.weight", "a.weight", "m.bias"]


def test_shared_and_non_contiguous_tensors_are_saved(tmp_path):
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    state_dict = {"a": base, "tied": base, "t": base.t(), "row": base[1], "scalar": torch.tensor(3)}
    path = tmp_path / "w.safetensors"
    save_weights(state_dict, path)
    _assert_identical(state_dict, read_state_dict(path))


def test_module_metadata_and_extra_metadata(tmp_path):
    from libs.networks import ImageModel

    path = tmp_path / "image.safetensors"
    save_weights(ImageModel(output_stride=8), path, metadata={"note": "test"})
    metadata = read_safetensors_metadata(path)
    assert (metadata["kind"], metadata["output_stride"], metadata["note"]) == ("image", "8", "test")


def test_safetensors_detected_by_header_without_the_suffix(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights({"x": torch.ones(2)}, path)
    renamed = tmp_path / "weights.bin"
    path.rename(renamed)
    assert is_safetensors(renamed)
    assert torch.equal(read_state_dict(renamed)["x"], torch.ones(2))
    pth = tmp_path / "w.pth"
    save_weights({"x": torch.ones(2)}, pth)
    assert not is_safetensors(pth)


def test_damaged_safetensors_is_one_line_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights({"x": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="w.safetensors: not a valid safetensors file") as info:
        read_state_dict(path)
    assert "\n" not in str(info.value)


def test_safetensors_refuses_non_tensors(tmp_path):
    with pytest.raises(CheckpointError, match="epoch are not tensors"):
        save_weights({"x": torch.ones(1), "epoch": 3}, tmp_path / "resume.safetensors")
    assert not (tmp_path / "resume.safetensors").exists()


def test_flownet2_loader_reads_safetensors_and_checks_fit(tmp_path):
    from flownet2.models import FlowNetS

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.flownets_1 = FlowNetS(input_channels=12)

    source = Wrapper()
    path = tmp_path / "flow.safetensors"
    save_weights(source, path)
    target = Wrapper()
    load_flownet2(target, path)
    _assert_identical(source.state_dict(), target.state_dict())
    save_weights({"flownets_1.conv1.0.weight": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="flow.safetensors does not fit Wrapper"):
        load_flownet2(target, path)


def test_training_weights_format(tmp_path):
    assert best_model_path(tmp_path, "video", "safetensors").name == "video_current_best_model.safetensors"
    assert backup_path(tmp_path, "video", 3).name == "video_epoch-3.pth"
    with pytest.raises(UserError, match="--weights-format"):
        TrainConfig(save_folder=tmp_path, weights_format="onnx").check()
