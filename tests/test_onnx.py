"""ONNX export of ImageModel and VideoModel, checked under onnxruntime against PyTorch."""
from __future__ import annotations

import pytest
import torch

from libs.inference.export_onnx import OPSET, build_model, compare, export, input_shape, main, onnx_session

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_threads")]


@pytest.mark.parametrize("kind,name", [("image", "image_model"), ("video", "video_model")])
def test_onnx_matches_pytorch_with_dynamic_batch_and_size(kind, name, reference_state_dict, tmp_path):
    import onnx

    checkpoint = tmp_path / f"{name}.pth"
    torch.save(reference_state_dict(name), checkpoint)
    model = build_model(kind, checkpoint)
    path = tmp_path / f"{kind}.onnx"
    export(model, kind, path, clip_len=2, size=64)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == OPSET
    # the stem's max pooling stays a MaxPool node a frame (not the eager path's strided slices)
    assert [node.op_type for node in graph.graph.node].count("MaxPool") == (1 if kind == "image" else 2)
    session = onnx_session(path, threads=2)
    for batch, size in ((1, 64), (2, 96)):
        deviation = compare(model, session, input_shape(kind, batch, 2, size, size))
        assert deviation.largest <= 1 and deviation.differing < 1e-3, deviation


def test_export_command_reports_bad_checkpoint(tmp_path, capsys):
    argv = ["--checkpoint", str(tmp_path / "absent.pth"), "--kind", "image", str(tmp_path / "x.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "absent.pth: no such file" in err
