"""The files a training run writes to `--save-folder`: the release's weight files and the
resume file, their names, finding and reading the file `--resume` names, and the settings a
resume must keep."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libs.runtime.errors import UserError
from libs.runtime.files import FileReadError, read_torch_file

RESUME_FORMAT = "rcrnet-resume-1"


WEIGHTS_FORMATS = ("pth", "safetensors")


def best_model_path(save_folder: str | Path, prefix: str, weights_format: str = "pth") -> Path:
    """`<save-folder>/<prefix>_current_best_model.pth` (the release's name; `.safetensors` if asked)."""
    return Path(save_folder) / f"{prefix}_current_best_model.{weights_format}"


def backup_path(save_folder: str | Path, prefix: str, epoch: int, weights_format: str = "pth") -> Path:
    """`<save-folder>/<prefix>_epoch-N.pth` (the release's name; `.safetensors` if asked)."""
    return Path(save_folder) / f"{prefix}_epoch-{epoch}.{weights_format}"


def resume_path(save_folder: str | Path, prefix: str) -> Path:
    """`<save-folder>/<prefix>_resume.pth`: everything `--resume` needs."""
    return Path(save_folder) / f"{prefix}_resume.pth"


def find_resume_file(resume: str | Path | None, save_folder: str | Path, prefix: str) -> Path | None:
    """The file `--resume` names (`auto`: the run's own in `save_folder`), checked to exist; None
    without `--resume`."""
    if resume is None:
        return None
    path = Path(resume)
    if str(resume) == "auto":
        path = resume_path(save_folder, prefix)
    if not path.is_file():
        raise UserError(f"--resume: no resume file at {path} (it is written after every epoch "
                        f"as {resume_path('<save-folder>', prefix).name})")
    return path


def read_resume_state(path: Path, prefix: str) -> dict[str, Any]:
    """The state a resume file holds, checked to be this loop's format and a `prefix` run's."""
    try:
        state = read_torch_file(path, "resume file")
    except FileReadError as error:
        raise UserError(f"--resume: {error}") from None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise UserError(f"--resume: {path} is not a resume file written by this training loop")
    if state.get("prefix") != prefix:
        raise UserError(f"--resume: {path} belongs to a {state.get('prefix')!r} run, not {prefix!r}")
    return state


def check_resume_settings(path: Path, saved: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Refuse a resume whose model settings (what the model is trained on) differ from the run's."""
    changed = {flag: value for flag, value in settings.items() if flag in saved and saved[flag] != value}
    if changed:
        theirs = ", ".join(f"{flag} {saved[flag]}" for flag in changed)
        ours = ", ".join(f"{flag} {value}" for flag, value in changed.items())
        raise UserError(f"--resume: {path} was trained with {theirs}, this run asks for {ours}; resume "
                        "with the run's values, or start a new run in another --save-folder")
