"""Checkpoint reading, strict loading, model initialisation and atomic saving."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from libs.networks import ImageModel, RCRNet, VideoModel
from libs.networks.weights import (
    CheckpointError,
    init_backbone_from_imagenet,
    init_video_from_image,
    load_state_dict_strict,
    load_weights,
    read_state_dict,
    save_weights,
)

FC_PREFIX = "backbone.resnet.fc."


@pytest.fixture(scope="module")
def image_weights(reference_state_dict) -> dict[str, torch.Tensor]:
    """The release-style ImageModel state dict: reference weights, fc keys included."""
    return reference_state_dict("image_model")


@pytest.fixture(scope="module")
def image_model() -> ImageModel:
    return ImageModel()


def assert_loaded(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == {k for k in weights if not k.startswith(FC_PREFIX)}
    assert all(torch.equal(state[k], weights[k]) for k in state)


def test_release_style_file_loads(tmp_path, image_weights, image_model):
    path = tmp_path / "image_pretrained_model.pth"
    # a plain state dict with the classifier, in the pre-1.6 format PyTorch 0.4.1 wrote
    torch.save(image_weights, path, _use_new_zipfile_serialization=False)
    load_weights(image_model, path)
    assert_loaded(image_model, image_weights)


def test_release_style_video_file_loads(tmp_path, reference_state_dict):
    weights = reference_state_dict("video_model")
    path = tmp_path / "video_best_model.pth"
    torch.save(weights, path)
    model = VideoModel()
    load_weights(model, path)
    assert_loaded(model, weights)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapper_and_module_prefix_are_removed(tmp_path, image_weights, wrapper):
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: {f"module.{k}": v for k, v in image_weights.items()}, "epoch": 3}, path)
    state_dict = read_state_dict(path)
    assert list(state_dict) == list(image_weights)
    assert all(torch.equal(state_dict[k], image_weights[k]) for k in image_weights)


def test_broken_checkpoint_lists_every_problem(tmp_path, image_weights, image_model):
    broken = dict(image_weights)
    del broken["backbone.aspp.stages.c1.bn.running_var"]
    broken["backbone.extra.weight"] = torch.zeros(3)
    broken["backbone.decoder.conv2.weight"] = torch.zeros(2, 256, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    before = {k: v.clone() for k, v in image_model.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        load_weights(image_model, path)
    message = str(error.value)
    assert str(path) in message
    assert "backbone.aspp.stages.c1.bn.running_var" in message
    assert "backbone.extra.weight" in message
    assert "backbone.decoder.conv2.weight (checkpoint 2x256x1x1, model 1x256x1x1)" in message
    assert FC_PREFIX not in message
    assert all(torch.equal(v, image_model.state_dict()[k]) for k, v in before.items())


def test_only_the_named_prefixes_are_dropped(image_weights, image_model):
    with pytest.raises(CheckpointError, match="unexpected keys: backbone.resnet.fc.weight"):
        load_state_dict_strict(image_model, image_weights, source="release file")
    load_state_dict_strict(image_model, image_weights, ignore_prefixes=(FC_PREFIX,), source="release file")


def test_files_that_are_not_state_dicts(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    mixed = tmp_path / "mixed.pth"
    torch.save({"weight": torch.zeros(1), "epoch": 3}, mixed)
    pickled_module = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), pickled_module)
    for path in (text, listing, mixed, pickled_module, tmp_path / "missing.pth", tmp_path):
        with pytest.raises(CheckpointError) as error:
            read_state_dict(path)
        message = str(error.value)
        assert str(path) in message and "\n" not in message


def test_init_video_from_image(tmp_path, image_weights):
    path = tmp_path / "image_pretrained_model.pth"
    torch.save(image_weights, path)
    model = VideoModel()
    fresh = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    init_video_from_image(model, path)
    state = model.state_dict()
    for key, value in image_weights.items():
        if not key.startswith(FC_PREFIX):
            assert torch.equal(state[key], value), key
    assert all(torch.equal(state[k], v) for k, v in fresh.items())

    incomplete = {k: v for k, v in image_weights.items() if k != "backbone.refinement2.refine.conv.weight"}
    torch.save(incomplete, path)
    with pytest.raises(CheckpointError, match="missing keys: backbone.refinement2.refine.conv.weight"):
        init_video_from_image(VideoModel(), path)


def test_init_backbone_from_imagenet_file(tmp_path):
    imagenet = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save(imagenet, path)
    model = RCRNet(input_channels=7)
    stem_before = model.resnet.conv1.weight.detach().clone()
    aspp_before = {k: v.clone() for k, v in model.aspp.state_dict().items()}
    init_backbone_from_imagenet(model, path)
    resnet = model.resnet.state_dict()
    assert set(resnet) == {k for k in imagenet if not k.startswith("fc.")}
    for key, value in resnet.items():
        if key != "conv1.weight":
            assert torch.equal(value, imagenet[key]), key
    assert torch.equal(resnet["conv1.weight"][:, :3], imagenet["conv1.weight"])
    assert torch.equal(resnet["conv1.weight"][:, 3:], stem_before[:, 3:])
    assert all(torch.equal(v, model.aspp.state_dict()[k]) for k, v in aspp_before.items())


def test_init_backbone_from_imagenet_without_network(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CheckpointError, match="local path"):
        init_backbone_from_imagenet(RCRNet())


def test_save_weights_is_atomic(tmp_path):
    path = tmp_path / "runs" / "exp" / "model.pth"
    save_weights({"weight": torch.ones(2)}, path)
    save_weights({"weight": torch.zeros(3)}, path)
    assert torch.equal(read_state_dict(path)["weight"], torch.zeros(3))
    assert [p.name for p in path.parent.iterdir()] == ["model.pth"]

    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_weights({"weight": lambda: None}, path)
    assert torch.equal(read_state_dict(path)["weight"], torch.zeros(3))
    assert [p.name for p in path.parent.iterdir()] == ["model.pth"]


def test_saved_model_round_trip(tmp_path, image_model):
    path = tmp_path / "image.pth"
    save_weights(image_model, path)
    other = ImageModel()
    load_weights(other, path)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in image_model.state_dict().items())


@pytest.mark.parametrize("fault", ["int32", "nan", "inf"])
def test_weights_of_the_wrong_dtype_or_not_finite_are_refused(tmp_path, image_weights, image_model, fault):
    key = "backbone.decoder.conv2.weight"
    bad = dict(image_weights)
    if fault == "int32":
        bad = {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in bad.items()}
        expected = "key 'backbone.resnet.conv1.weight' holds int32 values where the model holds float32"
    else:
        bad[key] = bad[key].clone()
        bad[key].view(-1)[7] = float(fault)
        expected = f"key {key!r} holds 1 NaN or infinite value(s)"
    path = tmp_path / f"{fault}.pth"
    torch.save(bad, path)
    before = {k: v.clone() for k, v in image_model.state_dict().items()}
    for weights in (path, read_state_dict(path)):  # a path, or a state dict the caller read first
        with pytest.raises(CheckpointError) as error:
            load_weights(image_model, weights)
        assert str(error.value).startswith(f"checkpoint {path}: ") and expected in str(error.value)
    assert all(torch.equal(v, image_model.state_dict()[k]) for k, v in before.items())


def test_errors_name_the_file_when_the_caller_read_it_first(tmp_path, image_weights):
    path = tmp_path / "image.pth"
    torch.save({k: v for k, v in image_weights.items() if "aspp" not in k}, path)
    state_dict = read_state_dict(path)
    with pytest.raises(CheckpointError, match=f"(?s)^checkpoint {path} does not fit ImageModel: .*"
                                              "missing keys: backbone.aspp"):
        load_state_dict_strict(ImageModel(), state_dict)
    with pytest.raises(CheckpointError, match=f"(?s)^checkpoint {path} does not fit VideoModel.backbone: .*"
                                              "missing keys: backbone.aspp"):
        init_video_from_image(VideoModel(), state_dict)
    # the state dict remembers its file but is saved as a plain one (loadable with weights_only)
    save_weights(state_dict, tmp_path / "copy.pth")
    assert type(torch.load(tmp_path / "copy.pth", weights_only=True)).__name__ == "OrderedDict"


@pytest.mark.slow
def test_an_fgplg_checkpoint_is_named_as_one(tmp_path, image_weights):
    fgplg = dict(image_weights)
    fgplg["backbone.resnet.conv1.weight"] = torch.zeros(64, 7, 7, 7)
    path = tmp_path / "fgplg_current_best_model.pth"
    torch.save(fgplg, path)
    for load in (lambda w: init_video_from_image(VideoModel(), w), lambda w: load_weights(VideoModel(), w),
                 lambda w: load_weights(ImageModel(), w), lambda w: init_backbone_from_imagenet(RCRNet(), w)):
        for weights in (path, read_state_dict(path)):
            with pytest.raises(CheckpointError, match=f"^checkpoint {path} is an FGPLG checkpoint, not "):
                load(weights)
