"""ONNX export of ImageModel and VideoModel, checked under onnxruntime against PyTorch."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch

from libs.inference.export_onnx import (
    OPSET,
    Saliency,
    build_model,
    compare,
    export,
    input_shape,
    main,
    onnx_session,
)
from libs.runtime.files import FileWriteError

pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.mark.slow
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


def _tiny() -> torch.nn.Module:
    return Saliency(torch.nn.Conv2d(3, 1, 3, padding=1)).eval()


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
def test_failed_export_leaves_the_existing_file_intact(tmp_path, monkeypatch, error):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the previous export")
    real_export = torch.onnx.export

    def full_disk(model, args, f, **kwargs):
        real_export(model, args, f, **kwargs)  # the graph is written, then the disk fills
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(torch.onnx, "export", full_disk)
    with pytest.raises(FileWriteError, match=os.strerror(error)):
        export(_tiny(), "image", path, size=32)
    assert path.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left


def test_export_replaces_the_file_when_complete(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the previous export")
    export(_tiny(), "image", path, size=32)
    session = onnx_session(path, threads=1)
    assert compare(_tiny(), session, input_shape("image", 1, 1, 32, 32)).shape == (1, 3, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def _one_line_error(capsys, argv: list[str]) -> str:
    """stderr of the command, checked to be one line with exit status 2."""
    try:
        status = main(argv)
    except SystemExit as stop:  # a usage error, reported by the parser
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_export_command_one_line_errors(tmp_path, capsys, monkeypatch):
    checkpoint = ["--checkpoint", str(tmp_path / "absent.pth"), "--kind", "image"]
    # an output path that is a folder: named before any checkpoint is read
    assert "is a folder" in _one_line_error(capsys, [*checkpoint, str(tmp_path)])
    assert "must be at least 1, got 0" in _one_line_error(capsys, [*checkpoint, "--clip-len", "0", "x.onnx"])
    # a read-only output folder (faked: tests may run as root, whom permissions do not stop)
    real = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    err = _one_line_error(capsys, [*checkpoint, str(tmp_path / "model.onnx")])
    assert f"cannot write in {tmp_path}: Read-only file system" in err
