"""torch.hub entry points (hubconf.py, source="local") and the builders' named release files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from libs.networks import FGPLGWeights, ImageModelWeights, VideoModelWeights, video_model
from libs.networks.weights import CheckpointError, save_weights

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("two_threads")


def _hub(entry: str, **kwargs):
    return torch.hub.load(str(ROOT), entry, source="local", trust_repo=True, **kwargs)


def _assert_loaded(model: torch.nn.Module, expected: dict[str, torch.Tensor], dropped: str = "") -> None:
    state = model.state_dict()
    kept = {k: v for k, v in expected.items() if not (dropped and k.startswith(dropped))}
    assert list(state) == list(kept)
    for key, tensor in kept.items():
        assert torch.equal(state[key], tensor), key


def test_hubconf_declares_importable_dependencies_and_the_builders():
    import importlib.util

    import hubconf

    assert all(importlib.util.find_spec(name) is not None for name in hubconf.dependencies)
    assert set(hubconf.__all__) == {"image_model", "video_model", "fgplg", "flownet2"}


@pytest.mark.parametrize("name,entry,suffix", [
    ("image_model", "image_model", ".pth"),
    ("video_model", "video_model", ".safetensors"),
])
def test_hub_builds_rcrnet_from_files(name, entry, suffix, reference_state_dict, tmp_path):
    expected = reference_state_dict(name)
    path = tmp_path / f"{name}{suffix}"
    save_weights(expected, path)
    model = _hub(entry, weights=str(path))
    assert type(model).__name__ == {"image_model": "ImageModel", "video_model": "VideoModel"}[name]
    _assert_loaded(model, expected, "backbone.resnet.fc.")


@pytest.mark.slow
def test_hub_builds_flownet2_and_fgplg(reference_state_dict, tmp_path):
    flow = reference_state_dict("flownet2")
    flow_file = tmp_path / "FlowNet2_checkpoint.pth.tar"
    torch.save({"epoch": 0, "state_dict": flow, "best_EPE": 1e10}, flow_file)
    _assert_loaded(_hub("flownet2", weights=str(flow_file)), flow)
    generator = reference_state_dict("fgplg")
    save_weights(generator, tmp_path / "pseudo_label_generator_5.safetensors")
    model = _hub("fgplg", weights="RELEASE", folder=str(tmp_path))
    _assert_loaded(model, generator, "backbone.resnet.fc.")
    dis = _hub("fgplg", weights=FGPLGWeights.RELEASE, flow="dis", force_flow=True, folder=str(tmp_path))
    assert not any(k.startswith("flownet.") for k in dis.state_dict())
    fresh = _hub("fgplg", flownet_weights="RELEASE", folder=str(tmp_path))
    assert torch.equal(fresh.flownet.state_dict()["flownetc.conv1.0.weight"], flow["flownetc.conv1.0.weight"])


def test_named_release_file_missing_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RCRNET_MODELS", str(tmp_path))
    with pytest.raises(CheckpointError) as info:
        video_model(VideoModelWeights.DEFAULT)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "video_best_model.pth") in message
    assert "https://drive.google.com/open?id=1TSmi1DyKIvuzuXE1aw7t_ygmcUmjYnN_" in message
    assert "6pi3" in message and "RCRNET_MODELS" in message


def test_named_release_file_found_in_env_folder(reference_state_dict, tmp_path, monkeypatch):
    expected = reference_state_dict("image_model")
    torch.save(expected, tmp_path / ImageModelWeights.RELEASE.value.file_name)
    monkeypatch.setenv("RCRNET_MODELS", str(tmp_path))
    _assert_loaded(_hub("image_model", weights="RELEASE"), expected, "backbone.resnet.fc.")


def test_builder_refuses_another_models_file(reference_state_dict, tmp_path):
    path = tmp_path / "image.pth"
    torch.save(reference_state_dict("image_model"), path)
    with pytest.raises(CheckpointError, match=r"image.pth: holds an ImageModel, but video_model\(\) needs a"):
        video_model(str(path))
