"""FGPLG: reference keys, golden output, batching, frozen flow, estimators and checkpoints."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error
from torch import nn

import train_fgplg as train_fgplg_script
from libs.datasets.synthetic import generate_synthetic
from libs.networks import FGPLG, ImageModel
from libs.networks.fgplg import IMAGENET_MEAN, IMAGENET_STD, flow_magnitude
from libs.networks.flow import DISFlowEstimator, FlowNet2Estimator
from libs.networks.weights import CheckpointError, checkpoint_flow, init_fgplg, load_fgplg, save_weights

FC_KEYS = {"backbone.resnet.fc.weight", "backbone.resnet.fc.bias"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fgplg_weights(reference_state_dict) -> dict[str, torch.Tensor]:
    """The release-style FGPLG state dict (FlowNet2 and the unused classifier included)."""
    return reference_state_dict("fgplg")


@pytest.fixture(scope="module")
def image_weights(reference_state_dict) -> dict[str, torch.Tensor]:
    """The release-style ImageModel state dict (with the unused classifier)."""
    return reference_state_dict("image_model")


@pytest.fixture(scope="module")
def files(tmp_path_factory, fgplg_weights, image_weights) -> dict[str, object]:
    """Release-style files, written once: the FGPLG, NVIDIA's FlowNet2 and the ImageModel checkpoints."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {"fgplg": folder / "pseudo_label_generator_5.pth",
             "flownet": folder / "FlowNet2_checkpoint.pth.tar",
             "image": folder / "image_pretrained_model.pth"}
    # the release's files were written by PyTorch 0.4.1, before the zip format
    torch.save(fgplg_weights, paths["fgplg"], _use_new_zipfile_serialization=False)
    flownet = {k[len("flownet."):]: v for k, v in fgplg_weights.items() if k.startswith("flownet.")}
    torch.save({"epoch": 0, "best_EPE": 0.0, "state_dict": flownet}, paths["flownet"])
    torch.save(image_weights, paths["image"])
    return paths


@pytest.fixture(scope="module")
def reference_fgplg(fgplg_weights) -> FGPLG:
    model = FGPLG()
    model.load_state_dict({k: v for k, v in fgplg_weights.items() if k not in FC_KEYS}, strict=True)
    return model.eval()


def _normalised(batch: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random frames, ImageNet-normalised."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.nn.functional.interpolate(torch.rand(batch, 3, size // 8, size // 8, generator=g),
                                          size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb - mean) / std


def _inputs(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed + 100)
    labels = [(torch.rand(batch, 1, size, size, generator=g) > 0.5).float() for _ in range(2)]
    frames = [_normalised(batch, size, seed + k) for k in range(3)]
    return (*frames, *labels)


def test_dis_model_has_no_flownet_keys(reference_keys):
    keys = list(FGPLG(flow="dis").state_dict())
    assert keys == [k for k in reference_keys("fgplg") if k.startswith("backbone.") and k not in FC_KEYS]


@pytest.fixture(scope="module")
def golden_case(golden, reference_fgplg) -> tuple[dict, torch.Tensor]:
    case = golden("fgplg")
    with torch.no_grad():
        output = reference_fgplg.generate_pseudo_label(
            case["frame"], case["frame_l"], case["frame_r"], case["label_l"], case["label_r"])
    return case, output


def test_golden_output(golden_case, reference_fgplg):
    case, output = golden_case
    assert case["output_stride"] == reference_fgplg.backbone.output_stride
    assert output.dtype == torch.float32
    assert output.shape == case["output"].shape
    error = (output - case["output"]).abs().max().item()
    assert error <= 1e-4 * case["output"].abs().max().item(), error


def test_forward_takes_the_middle_of_a_clip(reference_fgplg):
    frame, frame_l, frame_r, label_l, label_r = _inputs(batch=1, size=48, seed=7)
    label_m = torch.zeros_like(label_l)
    with torch.no_grad():
        expected = reference_fgplg.generate_pseudo_label(frame, frame_l, frame_r, label_l, label_r)
        logits, target = reference_fgplg([frame_l, frame, frame_r], [label_l, label_m, label_r])
        as_tensor, _ = reference_fgplg(torch.stack([frame_l, frame, frame_r], 1),
                                       torch.stack([label_l, label_m, label_r], 1))
    assert target is label_m
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(as_tensor, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="3 frames"):
        reference_fgplg([frame_l, frame], [label_l, label_m])


def test_batch_equals_per_sample(reference_fgplg):
    """Each sample gets its own flow (the release used the first sample's for the whole batch)."""
    inputs = _inputs(batch=2, size=64, seed=3)
    with torch.no_grad():
        batched = reference_fgplg.generate_pseudo_label(*inputs)
        second = reference_fgplg.generate_pseudo_label(*(x[1:] for x in inputs))
    assert batched.shape == (2, 1, 64, 64)
    torch.testing.assert_close(batched[1:], second, rtol=0, atol=1e-4 * second.abs().max().item())
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_flow_is_frozen_and_bn_stays_frozen():
    flownet2 = FGPLG(flow="flownet2").train()
    assert not flownet2.flownet.training
    assert all(not p.requires_grad for p in flownet2.flownet.parameters())
    model = FGPLG(flow="dis")
    model.train()
    assert all(p.requires_grad for p in model.backbone.parameters())
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    dropouts = [m for m in model.backbone.modules() if isinstance(m, nn.Dropout2d)]
    assert norms and all(not m.training for m in norms)
    assert dropouts and all(m.training for m in dropouts)
    running = model.backbone.resnet.bn1.running_mean.clone()
    frames = [f.requires_grad_() for f in _inputs(batch=1, size=32)[:3]]
    logits = model.generate_pseudo_label(*frames, *_inputs(batch=1, size=32)[3:])
    logits.mean().backward()
    assert model.backbone.resnet.conv1.weight.grad is not None
    assert torch.equal(model.backbone.resnet.bn1.running_mean, running)
    model.eval()
    assert not any(m.training for m in model.modules())


def test_flow_magnitude_is_normalised_by_size():
    flow = torch.zeros(1, 2, 4, 8)
    flow[:, 0] = 8.0  # one frame width
    flow[:, 1] = 4.0 * 0.75  # three quarters of the height
    torch.testing.assert_close(flow_magnitude(flow), torch.full((1, 1, 4, 8), 1.25))


def test_dis_flow_convention():
    """DIS flow maps frame 0's pixels to frame 1 like FlowNet2: warping frame 1 by it gives frame 0."""
    from flownet2.resample2d import resample2d

    g = torch.Generator().manual_seed(0)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(96, 96),
                                          mode="bicubic", align_corners=False).clamp(0, 1)
    frame0 = big[..., 16:80, 16:80]
    frame1 = big[..., 16:80, 13:77]  # content moves 3 pixels right
    flow = DISFlowEstimator().estimate(torch.cat([frame0, frame0]), torch.cat([frame1, frame1]))
    assert flow.shape == (2, 2, 64, 64) and flow.dtype == torch.float32
    interior = flow[0, :, 12:-12, 12:-12]
    assert abs(interior[0].median().item() - 3.0) < 0.5
    assert abs(interior[1].median().item()) < 0.5
    warped = resample2d(frame1, flow[:1])
    assert (warped - frame0)[..., 12:-12, 12:-12].abs().mean() < 0.02


def test_dis_generator_runs_and_differs_from_flownet2():
    model = FGPLG(flow="dis").eval()
    assert model.flow_name == "dis" and isinstance(model.flownet, DISFlowEstimator)
    assert isinstance(FGPLG().flownet, FlowNet2Estimator)
    with torch.no_grad():
        logits = model.generate_pseudo_label(*_inputs(batch=2, size=48))
    assert logits.shape == (2, 1, 48, 48) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="unknown flow estimator"):
        FGPLG(flow="farneback")


def test_bad_input_shapes_are_one_clear_error():
    model = FGPLG(flow="dis").eval()
    frame, frame_l, frame_r, label_l, label_r = _inputs(batch=1, size=32)
    with pytest.raises(ValueError, match="label_r must be"):
        model.generate_pseudo_label(frame, frame_l, frame_r, label_l, label_r[..., :16])


# ---------------------------------------------------------------------------- checkpoints


def test_release_checkpoint_loads(files, fgplg_weights):
    model = FGPLG()
    assert load_fgplg(model, files["fgplg"]) == "flownet2"
    state = model.state_dict()
    assert all(torch.equal(state[k], fgplg_weights[k]) for k in state)


@pytest.mark.slow
def test_estimator_is_recorded_and_checked(tmp_path, files, fgplg_weights):
    dis_model = FGPLG(flow="dis")
    dis_file = tmp_path / "fgplg_dis.pth"
    save_weights(dis_model, dis_file)
    assert checkpoint_flow(torch.load(dis_file, weights_only=True)) == "dis"
    assert checkpoint_flow(fgplg_weights) == "flownet2"

    with pytest.raises(CheckpointError, match=r"trained with the 'dis' flow estimator.*--flow dis"):
        load_fgplg(FGPLG(flow="flownet2"), dis_file)
    with pytest.raises(CheckpointError, match=r"trained with the 'flownet2' flow estimator.*--force-flow"):
        load_fgplg(FGPLG(flow="dis"), files["fgplg"])

    forced = FGPLG(flow="dis")
    assert load_fgplg(forced, files["fgplg"], force_flow=True) == "flownet2"
    assert torch.equal(forced.backbone.resnet.conv1.weight, fgplg_weights["backbone.resnet.conv1.weight"])
    with pytest.raises(CheckpointError, match="--flownet-checkpoint"):
        load_fgplg(FGPLG(flow="flownet2"), dis_file, force_flow=True)
    forced2 = FGPLG(flow="flownet2")
    load_fgplg(forced2, dis_file, force_flow=True, flownet_checkpoint=files["flownet"])
    assert torch.equal(forced2.backbone.resnet.conv1.weight, dis_model.backbone.resnet.conv1.weight)
    flownet_conv1 = forced2.flownet.flownetc.conv1[0].weight
    assert torch.equal(flownet_conv1, fgplg_weights["flownet.flownetc.conv1.0.weight"])


def test_an_image_checkpoint_is_not_an_fgplg(files):
    with pytest.raises(CheckpointError, match="not an FGPLG checkpoint.*3-channel stem"):
        load_fgplg(FGPLG(flow="dis"), files["image"])


@pytest.mark.slow
def test_init_widens_the_stem(files, image_weights, fgplg_weights):
    model = FGPLG()
    fresh_stem = model.backbone.resnet.conv1.weight.detach().clone()
    init_fgplg(model, files["image"], files["flownet"])

    stem = model.backbone.resnet.conv1.weight
    assert stem.shape == (64, 7, 7, 7)
    assert torch.equal(stem[:, :3], image_weights["backbone.resnet.conv1.weight"])
    assert torch.equal(stem[:, 3:], fresh_stem[:, 3:])
    for key, value in model.state_dict().items():
        if key.startswith("flownet."):
            assert torch.equal(value, fgplg_weights[key]), key
        elif key != "backbone.resnet.conv1.weight":
            assert torch.equal(value, image_weights[key]), key
    # with the four extra channels at zero the backbone is the image model
    image_model = ImageModel().eval()
    image_model.load_state_dict({k: v for k, v in image_weights.items() if k not in FC_KEYS})
    frames = _normalised(1, 32, 5)
    with torch.no_grad():
        expected = image_model(frames)
        got = model.eval().backbone(torch.cat([frames, torch.zeros(1, 4, 32, 32)], 1))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    with pytest.raises(CheckpointError, match="--flownet-checkpoint"):
        init_fgplg(FGPLG(), files["image"])
    init_fgplg(FGPLG(flow="dis"), files["image"])  # no FlowNet2 needed
    with pytest.raises(CheckpointError, match="already an FGPLG checkpoint"):
        init_fgplg(FGPLG(flow="dis"), files["fgplg"])


# ---------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory) -> Path:
    """One short synthetic video per split (every DAVIS2016/FBMS frame annotated)."""
    root = tmp_path_factory.mktemp("videos")
    generate_synthetic(root, seed=2, height=40, width=48, videos=1, frames=7, vos_frames=20, images=2)
    return root


def _data_flags(root: Path) -> list[str]:
    return ["--data", str(root), "--dataset-config", str(root / "datasets.yaml"), "-j", "0",
            "--device", "cpu", "--label_interval", "3", "--seed", "0", "--flow", "dis", "--size", "32"]


@pytest.mark.slow
def test_train_fgplg_with_dis_from_an_image_model(tmp_path, tiny_videos, files, capsys):
    save = tmp_path / "run"
    status = train_fgplg_script.main([*_data_flags(tiny_videos), "--checkpoint", str(files["image"]),
                                      "--epochs", "1", "--lr", "1e-4", "--save-folder", str(save)])
    assert status == 0
    out = capsys.readouterr().out
    assert "stem widened from 3 to 7 channels" in out
    for name in ("fgplg_current_best_model.pth", "fgplg_epoch-1.pth", "fgplg_resume.pth", "fgplg_log.csv"):
        assert (save / name).is_file(), name
    weights = torch.load(save / "fgplg_epoch-1.pth", weights_only=True)
    assert checkpoint_flow(weights) == "dis" and "backbone.resnet.conv1.weight" in weights
    # the release's restore and the shared loop's resume both continue the run
    status = train_fgplg_script.main([*_data_flags(tiny_videos), "--epochs", "2", "--lr", "1e-4",
                                      "--save-folder", str(save), "--resume"])
    assert status == 0 and (save / "fgplg_epoch-2.pth").is_file()
    status = train_fgplg_script.main([*_data_flags(tiny_videos), "--epochs", "3", "--start-epoch", "2",
                                      "--checkpoint", str(save / "fgplg_epoch-2.pth"),
                                      "--save-folder", str(save)])
    assert status == 0 and (save / "fgplg_epoch-3.pth").is_file()


@pytest.mark.slow
def test_train_fgplg_with_flownet2_keeps_it_frozen(tmp_path, tiny_videos):
    from libs.engine import RECIPES, RecipeOptions, TrainConfig, build_model, train
    from libs.runtime.session import setup_runtime

    torch.manual_seed(0)
    recipe = RECIPES["fgplg"]
    options = RecipeOptions(data=tiny_videos, dataset_config=tiny_videos / "datasets.yaml", size=64,
                            label_interval=3, flow="flownet2", checkpoint="none", flownet_checkpoint="none")
    model = build_model(recipe, options, log=False)
    flownet_before = {k: v.clone() for k, v in model.flownet.state_dict().items()}
    stem_before = model.backbone.resnet.conv1.weight.detach().clone()
    config = TrainConfig(save_folder=tmp_path, epochs=1, lr=1e-4, num_workers=0, steps_per_epoch=1,
                         progress=False, tensorboard=False)
    result = train(recipe, setup_runtime("cpu", 0), config, options, model=model)
    assert result.last_epoch == 1
    assert all(torch.equal(v, flownet_before[k]) for k, v in model.flownet.state_dict().items())
    assert not torch.equal(model.backbone.resnet.conv1.weight, stem_before)
    saved = torch.load(tmp_path / "fgplg_epoch-1.pth", weights_only=True)
    assert checkpoint_flow(saved) == "flownet2" and len([k for k in saved if k.startswith("flownet.")]) == 220


@pytest.mark.parametrize(("flags", "message"), [
    (["--clip_len", "4"], "argument --clip-len/--clip_len: invalid choice: 4 (choose from 3)"),
    (["--checkpoint", "missing.pth"], "checkpoint missing.pth: no such file"),
    (["--flow", "flownet2", "--checkpoint", "none", "--flownet-checkpoint", "missing.tar"],
     "FlowNet2 checkpoint missing.tar: no such file"),
    (["--flow", "raft"], "argument --flow: invalid choice"),
    (["--label_interval", "0"], "argument --label-interval/--label_interval: must be at least 1"),
])
def test_train_fgplg_bad_inputs_are_one_line(tmp_path, tiny_videos, capsys, flags, message):
    argv = [*_data_flags(tiny_videos), "--epochs", "1", "--save-folder", str(tmp_path), *flags]
    assert_one_line_error(train_fgplg_script.main, argv, capsys, message)
