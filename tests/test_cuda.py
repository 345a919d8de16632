"""The CUDA path against the CPU's: golden outputs in float64, FlowNet 2.0's ops, inference.py's maps,
training steps of each recipe and precision, pseudo-labels with FlowNet 2.0, and DDP over NCCL with
one process per GPU.

Every test but the probe's CPU run is marked `cuda` and skipped, with the reason, where no GPU is
present (`python -m pytest -m cuda` runs them on a GPU machine). RCRNET_CUDA_TESTS_ON_CPU=1 runs
them with the CPU standing in for the GPU: that checks the tests themselves, not CUDA.
The speed of the CUDA path is measured by benchmarks/cuda_speed.py.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image

from libs.runtime.precision import tf32

FC_KEYS = ("backbone.resnet.fc.weight", "backbone.resnet.fc.bias")
FGPLG_INPUTS = ("frame", "frame_l", "frame_r", "label_l", "label_r")
CUDA = pytest.mark.cuda


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, in float64 on the CPU."""
    expected = expected.detach().double().cpu()
    return ((actual.detach().double().cpu() - expected).abs().max() / expected.abs().max()).item()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """A Python process in the checkout, its output captured."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def gpus(device: torch.device) -> int:
    """Processes for the DDP tests: one per GPU (two on the CPU standing in)."""
    return torch.cuda.device_count() if device.type == "cuda" else 2


def same_maps(first: Path, second: Path) -> None:
    """The 8-bit PNGs of two runs are within the inference tolerance: at most 0.1% of the pixels
    differ, none by more than 2 levels."""
    names = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert names and names == sorted(p.relative_to(second) for p in second.rglob("*.png"))
    differing = total = 0
    for name in names:
        a = np.asarray(Image.open(first / name), dtype=np.int16)
        b = np.asarray(Image.open(second / name), dtype=np.int16)
        assert a.shape == b.shape, name
        assert np.abs(a - b).max() <= 2, name
        differing, total = differing + int((a != b).sum()), total + a.size
    assert differing <= 1e-3 * total, f"{differing} of {total} pixels differ"


# ---------------------------------------------------------------------------- golden outputs


@pytest.fixture(scope="module")
def reference_model(reference_state_dict, golden):
    """`reference_model(name)` -> the network `name` with the reference weights, in eval mode on the CPU."""
    from flownet2.models import FlowNet2
    from libs.networks import FGPLG, ImageModel, VideoModel

    def build(name: str) -> torch.nn.Module:
        constructors = {"image_model": ImageModel, "video_model": VideoModel, "fgplg": FGPLG,
                        "flownet2": lambda: FlowNet2(rgb_max=golden("flownet2")["rgb_max"])}
        model = constructors[name]()
        model.load_state_dict({k: v for k, v in reference_state_dict(name).items() if k not in FC_KEYS},
                              strict=True)
        return model.eval()

    return build


@CUDA
@pytest.mark.parametrize(("name", "dtype", "tolerance"), [
    ("image_model", torch.float64, 1e-6), ("video_model", torch.float64, 1e-6),
    ("flownet2", torch.float64, 1e-6), ("image_model", torch.float32, 1e-4),
    ("video_model", torch.float32, 1e-4), ("fgplg", torch.float32, 1e-4),
], ids=str)
def test_golden_output(name, dtype, tolerance, cuda_device, golden, reference_model):
    """The release's outputs for the reference weights (float32: TF32 off; FGPLG's golden output is
    float32, the release casting the flow input to float32)."""
    case = golden(name)
    model = reference_model(name).to(cuda_device, dtype)
    with torch.no_grad(), tf32(False):
        if name == "fgplg":
            output = model.generate_pseudo_label(*(case[k].to(cuda_device, dtype) for k in FGPLG_INPUTS))
        else:
            output = model(case["input"].to(cuda_device, dtype))
    assert output.dtype == dtype and output.shape == case["output"].shape
    assert relative_error(output, case["output"]) <= tolerance


# ---------------------------------------------------------------------------- FlowNet 2.0's ops


@CUDA
@pytest.mark.parametrize("name", ["correlation", "resample2d", "channel_norm"])
def test_flownet2_op_matches_the_cpu(name, cuda_device):
    """Forward and backward in float64 on the device against the CPU."""
    from flownet2.channelnorm import channel_norm
    from flownet2.correlation import correlation
    from flownet2.resample2d import resample2d

    g = torch.Generator().manual_seed(0)
    inputs = {"correlation": [torch.randn(2, 8, 12, 14, generator=g, dtype=torch.float64) for _ in range(2)],
              "resample2d": [torch.randn(2, 3, 10, 12, generator=g, dtype=torch.float64),
                             4 * torch.randn(2, 2, 10, 12, generator=g, dtype=torch.float64)],
              "channel_norm": [torch.randn(2, 6, 9, 11, generator=g, dtype=torch.float64)]}[name]
    op = {"correlation": correlation, "resample2d": resample2d, "channel_norm": channel_norm}[name]

    def forward_backward(device: torch.device, grad: torch.Tensor | None = None) -> list[torch.Tensor]:
        xs = [x.to(device).requires_grad_() for x in inputs]
        out = op(*xs)
        grads = torch.autograd.grad(out, xs, grad.to(device)) if grad is not None else []
        return [out.detach().cpu(), *(x.cpu() for x in grads)]

    grad = torch.randn(forward_backward(torch.device("cpu"))[0].shape, generator=g, dtype=torch.float64)
    expected = forward_backward(torch.device("cpu"), grad)
    found = forward_backward(cuda_device, grad)
    assert len(found) == len(expected) == len(inputs) + 1
    for a, b in zip(found, expected):
        assert relative_error(a, b) <= 1e-10


# ---------------------------------------------------------------------------- the scripts on the device


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """Tiny synthetic datasets; returns the data root (its datasets.yaml beside the dataset folders)."""
    from libs.datasets.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, seed=4, height=48, width=64, videos=1, frames=7, vos_frames=16, images=4)
    return root


@pytest.fixture(scope="module")
def release_files(tmp_path_factory, reference_state_dict) -> dict[str, Path]:
    """The reference weights as the release's files (plain state dicts, the unused classifier kept)."""
    folder = tmp_path_factory.mktemp("models")
    paths = {"video": folder / "video_best_model.pth", "fgplg": folder / "pseudo_label_generator_5.pth"}
    torch.save(reference_state_dict("video_model"), paths["video"])
    torch.save(reference_state_dict("fgplg"), paths["fgplg"])
    return paths


@CUDA
def test_inference_maps_match_the_cpu(synthetic, release_files, cuda_device, tmp_path):
    """inference.py --precision fp32 on a folder of frames: the device's maps against the CPU's."""
    import inference

    frames = next((synthetic / "DAVIS2016" / "JPEGImages" / "480p").iterdir())
    common = ["--input", str(frames), "--checkpoint", str(release_files["video"]), "--size", "64",
              "--clip-len", "4", "-j", "0", "--precision", "fp32", "--compile", "off"]
    with tf32(False):  # inference.py turns TF32 off for fp32 itself; restored for the other tests
        for device in ("cpu", str(cuda_device)):
            out = ["--device", device, "--results-folder", str(tmp_path / device)]
            assert inference.main([*common, *out]) == 0
    same_maps(tmp_path / "cpu", tmp_path / str(cuda_device))


@CUDA
def test_pseudo_labels_with_flownet2_match_the_cpu(synthetic, release_files, cuda_device, tmp_path):
    """generate_pseudo_labels.py with the release's FGPLG file (FlowNet 2.0 inside), fp32: the
    device's labels against the CPU's."""
    import generate_pseudo_labels

    common = ["--data", str(synthetic), "--dataset-config", str(synthetic / "datasets.yaml"), "--datasets",
              "DAVIS2016:train", "--label_interval", "3", "--size", "64", "-j", "0", "--flow", "flownet2",
              "--checkpoint", str(release_files["fgplg"]), "--precision", "fp32"]
    with tf32(False):
        for device in ("cpu", str(cuda_device)):
            out = ["--device", device, "--pseudo-label-folder", str(tmp_path / device)]
            assert generate_pseudo_labels.main([*common, *out]) == 0
    same_maps(tmp_path / "cpu", tmp_path / str(cuda_device))


def finite_run(folder: Path, prefix: str) -> None:
    """A training run's logged loss and saved weights are finite."""
    from libs.engine import read_log

    rows = read_log(folder / f"{prefix}_log.csv")
    assert rows and all(math.isfinite(r["loss"]) for r in rows if r["phase"] == "train"), rows
    weights = torch.load(folder / f"{prefix}_epoch-1.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


@CUDA
@pytest.mark.parametrize(("script", "recipe", "precision"), [
    ("train", "image", "fp32"), ("train", "video", "fp32"), ("train", "video", "bf16"),
    ("train", "video", "fp16"), ("train_fgplg", "fgplg", "fp32"), ("train_fgplg", "fgplg", "bf16"),
])
def test_training_epoch(script, recipe, precision, synthetic, cuda_device, tmp_path):
    """One epoch of train.py's stages and train_fgplg.py (FlowNet 2.0, fresh weights) on the device."""
    if precision == "bf16" and cuda_device.type == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name(cuda_device)} has no bfloat16")
    if precision == "fp16" and cuda_device.type == "cpu":
        pytest.skip("fp16 training on the CPU standing in for the GPU: emulated, too slow to run")
    main = __import__(script).main
    argv = ["--data", str(synthetic), "--dataset-config", str(synthetic / "datasets.yaml"), "--save-folder",
            str(tmp_path), "--size", "64", "-j", "0", "--device", str(cuda_device), "--seed", "0", "--epochs",
            "1", "--precision", precision, "--checkpoint", "none"]
    if recipe == "image":
        argv += ["--stage", "image", "--batch-size", "2"]
    if recipe == "fgplg":
        argv += ["--flow", "flownet2", "--flownet-checkpoint", "none", "--label_interval", "3"]
    assert main(argv) == 0
    finite_run(tmp_path, recipe)


# ---------------------------------------------------------------------------- DDP


def run_probe(out: Path, device_type: str, processes: int) -> dict:
    proc = run(["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                str(ROOT / "tests" / "ddp_probe.py"), str(out), device_type], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@CUDA
def test_ddp_step_over_nccl(cuda_device, tmp_path):
    """An all-reduce and a DDP step with NCCL, one process per GPU."""
    processes = gpus(cuda_device)
    found = run_probe(tmp_path / "probe.json", cuda_device.type, processes)
    assert found["backend"] == ("nccl" if cuda_device.type == "cuda" else "gloo")
    assert found["world_size"] == processes
    assert found["all_reduce"] and found["ddp_gradients_averaged"] and found["same_on_every_rank"], found


def test_ddp_probe_with_gloo(tmp_path, monkeypatch):
    """The probe itself, in this process on the CPU (gloo, one process)."""
    from ddp_probe import probe

    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    probe(tmp_path / "probe.json", "cpu")
    assert json.loads((tmp_path / "probe.json").read_text()) == {
        "backend": "gloo", "world_size": 1, "all_reduce": True, "ddp_gradients_averaged": True,
        "same_on_every_rank": True, "nccl": None}


def flat(path: Path, keys: list[str] | None = None) -> tuple[torch.Tensor, list[str]]:
    """The floating-point tensors of a weights file as one float64 vector (and their keys)."""
    state = {k: v for k, v in torch.load(path, weights_only=True).items() if k not in FC_KEYS}
    keys = keys or [k for k, v in state.items() if v.is_floating_point()]
    return torch.cat([state[k].double().flatten() for k in keys]), keys


@CUDA
def test_train_under_torchrun_matches_one_process(synthetic, release_files, cuda_device, tmp_path):
    """train.py under torchrun (one process per GPU, one clip each) against one process with as many
    clips per batch, from the same weights. One process under torchrun is the same computation: the
    weights agree to 1% of the update (cuDNN's atomics may differ). With several, each process draws
    its own clip reversals, so only the update's direction and size are compared."""
    processes = gpus(cuda_device)
    device = "cuda" if cuda_device.type == "cuda" else "cpu"
    common = ["train.py", "--data", str(synthetic), "--dataset-config", str(synthetic / "datasets.yaml"),
              "--size", "64", "-j", "0", "--device", device, "--seed", "0", "--epochs", "1", "--precision",
              "fp32", "--checkpoint", str(release_files["video"])]
    single = run([*common, "--batch-size", str(processes), "--save-folder", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr[-3000:]
    parallel = run(["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *common,
                    "--batch-size", "1", "--save-folder", str(tmp_path / "many")])
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    initial, keys = flat(release_files["video"])
    one, _ = flat(tmp_path / "one" / "video_epoch-1.pth", keys)
    many, _ = flat(tmp_path / "many" / "video_epoch-1.pth", keys)
    update, other = one - initial, many - initial
    assert update.norm() > 0
    if processes == 1:
        assert (many - one).norm() <= 1e-2 * update.norm()
    else:
        assert torch.dot(update, other) / (update.norm() * other.norm()) >= 0.3
        assert 0.5 <= other.norm() / update.norm() <= 2.0
