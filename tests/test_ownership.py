"""Runs own their outputs: a training save folder or a pseudo-label folder holding another run's
results is refused (one line, nothing touched) unless the run continues it or is told to replace it."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from conftest import assert_one_line_error

import generate_pseudo_labels as pseudo_script
import train as train_script
from libs.datasets.synthetic import generate_synthetic
from libs.runtime.errors import UserError
from libs.runtime.ownership import claim_generated_folder, prepare_save_folder, run_results


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _earlier_run(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("video_current_best_model.pth", "video_epoch-1.pth", "video_epoch-2.safetensors",
                 "video_resume.pth", "video_log.csv", "image_log.csv", "notes.txt"):
        (folder / name).write_bytes(name.encode())


def test_a_save_folder_with_an_earlier_run_is_refused_untouched(tmp_path):
    _earlier_run(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match="holds the results of an earlier run .*pass --resume to continue it, "
                                        "--overwrite to replace it"):
        prepare_save_folder(tmp_path, "video", continuing=False, overwrite=False)
    assert _snapshot(tmp_path) == before
    # continuing it, another prefix, another process of the job: nothing refused, nothing deleted
    prepare_save_folder(tmp_path, "video", continuing=True, overwrite=False)
    prepare_save_folder(tmp_path, "fgplg", continuing=False, overwrite=False)
    prepare_save_folder(tmp_path, "video", continuing=False, overwrite=False, is_main=False)
    assert _snapshot(tmp_path) == before
    with pytest.raises(UserError, match="does not go with --resume"):
        prepare_save_folder(tmp_path, "video", continuing=True, overwrite=True)


def test_overwrite_deletes_the_earlier_runs_files_only(tmp_path):
    _earlier_run(tmp_path)
    said = []
    prepare_save_folder(tmp_path, "video", continuing=False, overwrite=True,
                        keep=[tmp_path / "video_epoch-1.pth", None], log=said.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_log.csv", "notes.txt", "video_epoch-1.pth"]
    assert said == [f"--overwrite: deleted the earlier run's 4 file(s) in {tmp_path} (kept 1 this run reads)"]
    assert run_results(tmp_path, "video") == [tmp_path / "video_epoch-1.pth"]


def test_a_save_folder_that_is_a_file_or_not_there_yet(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="a file, not a folder"):
        prepare_save_folder(tmp_path / "file", "video", continuing=False, overwrite=False)
    prepare_save_folder(tmp_path / "new", "video", continuing=False, overwrite=False)
    assert not (tmp_path / "new").exists()  # created once the run is ready to write there


SETTINGS = {"checkpoint": "a.pth", "size": 448, "flow": "dis"}


def _labels(folder: Path) -> list[Path]:
    made = [folder / "DAVIS2016" / "bear" / "00000.png", folder / "FBMS" / "cars1" / "00004.png"]
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"label")
    return made


def test_generated_folders_record_their_settings_and_refuse_to_mix(tmp_path):
    out = tmp_path / "1_5"
    claim = dict(output_suffix=".png", flag="--pseudo-label-folder", log=lambda _: None)
    claim_generated_folder(out, SETTINGS, overwrite=False, **claim)
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded == {"format": "rcrnet-output-settings-1", "settings": SETTINGS}
    labels = _labels(out)
    (out / "README.txt").write_text("the user's own notes")
    # the same settings: the run continues, nothing deleted
    claim_generated_folder(out, dict(SETTINGS), overwrite=False, **claim)
    assert all(p.exists() for p in labels)
    before = _snapshot(out)
    with pytest.raises(UserError, match=r"holds outputs made with other settings "
                                        r"\(size: 448 there, 64 now\): pass --overwrite"):
        claim_generated_folder(out, {**SETTINGS, "size": 64}, overwrite=False, **claim)
    assert _snapshot(out) == before
    # --overwrite deletes the generated files (and only those) and records the new settings
    claim_generated_folder(out, {**SETTINGS, "size": 64}, overwrite=True, **claim)
    assert not any(p.exists() for p in labels) and (out / "README.txt").exists()
    assert json.loads((out / "settings.json").read_text())["settings"]["size"] == 64


def test_generated_folders_without_a_record(tmp_path):
    claim = dict(output_suffix=".png", flag="--pseudo-label-folder", log=lambda _: None)
    out = tmp_path / "old"
    labels = _labels(out)
    with pytest.raises(UserError, match="holds 2 output file\\(s\\) whose settings are not recorded"):
        claim_generated_folder(out, SETTINGS, overwrite=False, **claim)
    assert all(p.exists() for p in labels) and not (out / "settings.json").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "settings.json").write_text("{\"mine\": 1}")
    with pytest.raises(UserError, match="is not a settings record written by this program"):
        claim_generated_folder(foreign, SETTINGS, overwrite=True, **claim)
    assert (foreign / "settings.json").read_text() == "{\"mine\": 1}"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    return generate_synthetic(out, seed=5, height=32, width=40, videos=1, frames=6, vos_frames=16, images=4)


@pytest.mark.slow
def test_train_twice_into_one_save_folder(synthetic, tmp_path, capsys):
    save = tmp_path / "run"
    argv = ["--stage", "image", "--data", str(synthetic.parent), "--dataset-config", str(synthetic),
            "--save-folder", str(save), "--size", "32", "-j", "0", "--device", "cpu", "--seed", "0",
            "--checkpoint", "none", "--batch-size", "2", "--epochs", "1"]
    assert train_script.main(argv) == 0
    capsys.readouterr()
    before = _snapshot(save)
    assert {"image_current_best_model.pth", "image_resume.pth", "image_log.csv"} <= set(before)
    assert_one_line_error(train_script.main, argv, capsys, f"--save-folder {save} holds the results of an "
                                                           "earlier run (image_current_best_model.pth")
    assert_one_line_error(train_script.main, [*argv, "--resume", "--overwrite"], capsys,
                          "does not go with --resume")
    assert _snapshot(save) == before
    assert train_script.main([*argv, "--overwrite"]) == 0
    assert "--overwrite: deleted the earlier run's" in capsys.readouterr().out


@pytest.mark.slow
def test_pseudo_labels_rerun_with_other_settings(synthetic, tmp_path, capsys):
    argv = ["--data", str(synthetic.parent), "--dataset-config", str(synthetic),
            "--datasets", "DAVIS2016:train", "--warp-only", "--flow", "dis",
            "--pseudo-label-folder", str(tmp_path), "--size", "32", "-j", "0", "--device", "cpu",
            "--label-interval", "2"]
    assert pseudo_script.main(argv) == 0
    out = tmp_path / "1_2"
    before = _snapshot(out)
    assert "settings.json" in before and any(name.endswith(".png") for name in before)
    assert pseudo_script.main(argv) == 0  # the same settings: everything is there already
    assert "0 written" in capsys.readouterr().out
    assert_one_line_error(pseudo_script.main, [*argv, "--rgb-max", "255"], capsys,
                          "holds outputs made with other settings (rgb_max: 1.0 there, 255.0 now)")
    assert _snapshot(out) == before
    assert pseudo_script.main([*argv, "--rgb-max", "255", "--overwrite"]) == 0
    assert json.loads((out / "settings.json").read_text())["settings"]["rgb_max"] == 255.0
    # an image dataset has no clips to label: one line, not a TypeError
    images = [*argv[:4], "--datasets", "MSRA-B:train", *argv[6:10], str(tmp_path / "images"), *argv[11:]]
    assert_one_line_error(pseudo_script.main, images, capsys, "dataset 'MSRA-B' is an image dataset")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_or_read_only_folder_is_one_line_and_loses_nothing(tmp_path, monkeypatch, code):
    claim = dict(output_suffix=".png", flag="--pseudo-label-folder", log=lambda _: None)
    out = tmp_path / "1_5"
    claim_generated_folder(out, SETTINGS, overwrite=False, **claim)
    labels = _labels(out)
    before = _snapshot(out)

    def fail(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("libs.runtime.files.os.replace", fail)
    with pytest.raises(UserError, match=f"cannot write {out / 'settings.json'}: {os.strerror(code)}$"):
        claim_generated_folder(out, {**SETTINGS, "size": 64}, overwrite=True, **claim)
    monkeypatch.undo()
    assert json.loads((out / "settings.json").read_text())["settings"] == SETTINGS
    assert not [p for p in out.iterdir() if p.name.endswith(".rcrnet-tmp")]
    # deleting the earlier outputs fails: the first file that cannot go is named, the record stays
    claim_generated_folder(out, SETTINGS, overwrite=False, **claim)
    labels = _labels(out)
    monkeypatch.setattr(Path, "unlink", fail)
    with pytest.raises(UserError, match=f"--overwrite: cannot delete {labels[0]}: {os.strerror(code)}$"):
        claim_generated_folder(out, {**SETTINGS, "size": 64}, overwrite=True, **claim)
    monkeypatch.undo()
    assert _snapshot(out) == before
    _earlier_run(tmp_path / "run")
    monkeypatch.setattr(Path, "unlink", fail)
    with pytest.raises(UserError, match="--save-folder --overwrite: cannot delete .*_current_best_model.pth"):
        prepare_save_folder(tmp_path / "run", "video", continuing=False, overwrite=True)
