"""`python -m libs.networks.inspect`: a checkpoint's kind, format and strict fit, in one line."""
from __future__ import annotations

import pytest
import torch

from libs.networks import FGPLG, ImageModel, VideoModel
from libs.networks.inspect import inspect_checkpoint, main
from libs.networks.weights import save_weights


def _release_style(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict as the release saved it: with the unused ImageNet classifier."""
    state_dict = dict(model.state_dict())
    state_dict["backbone.resnet.fc.weight"] = torch.zeros(1000, 2048)
    state_dict["backbone.resnet.fc.bias"] = torch.zeros(1000)
    return state_dict


def test_release_video_file_and_its_safetensors_conversion(tmp_path, capsys):
    state_dict = _release_style(VideoModel())
    torch.save(state_dict, tmp_path / "video_best_model.pth")
    save_weights(VideoModel(output_stride=8), tmp_path / "video.safetensors")

    found = inspect_checkpoint(tmp_path / "video_best_model.pth")
    assert (found.kind, found.file_format, found.tensors, found.loads) == ("video", "PyTorch file", 484, True)
    assert found.output_stride is None and found.dtypes == ("float32",)

    assert main([str(tmp_path / "video_best_model.pth"), str(tmp_path / "video.safetensors")]) == 0
    first, second = capsys.readouterr().out.splitlines()
    name = tmp_path / "video_best_model.pth"
    assert first.startswith(f"{name}: VideoModel (RCRNet+NER) weights, PyTorch file")
    assert "output stride not recorded" in first and first.endswith(": loads strictly")
    assert "safetensors file" in second and "output stride 8" in second
    assert second.endswith(": loads strictly")


def test_image_and_dis_fgplg_files_are_named(tmp_path, capsys):
    torch.save({"state_dict": _release_style(ImageModel())}, tmp_path / "image.pth")
    torch.save(FGPLG(flow="dis").state_dict(), tmp_path / "fgplg_dis.pth")
    assert main([str(tmp_path / "image.pth"), str(tmp_path / "fgplg_dis.pth")]) == 0
    image, fgplg = capsys.readouterr().out.splitlines()
    assert ": ImageModel (RCRNet) weights, PyTorch file, 454 tensors" in image
    assert ": FGPLG (pseudo-label generator) weights, flow estimator dis, PyTorch file" in fgplg
    assert fgplg.endswith(": loads strictly")


def test_a_file_that_does_not_fit_names_the_keys_and_exits_1(tmp_path, capsys):
    state_dict = _release_style(VideoModel())
    del state_dict["convgru_forward.reset_gate.weight"]
    state_dict["backbone.aspp.extra.weight"] = torch.zeros(3)
    torch.save(state_dict, tmp_path / "damaged.pth")
    assert main([str(tmp_path / "damaged.pth")]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert "VideoModel (RCRNet+NER) weights" in line and "does NOT load strictly" in line
    assert "missing keys: convgru_forward.reset_gate.weight" in line
    assert "unexpected keys: backbone.aspp.extra.weight" in line


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    (b"not a checkpoint", "checkpoint"),
    ({"a": torch.zeros(2)}, "holds no model this project knows"),
])
def test_unreadable_or_unknown_files_are_one_line_errors(tmp_path, capsys, content, expected):
    path = tmp_path / "file.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    assert main([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("python -m libs.networks.inspect: error: ") and expected in line


def test_bad_usage_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
