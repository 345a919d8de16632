"""The files a training run writes to `--save-folder`: the release's weight files and the
resume file, their names, and finding the file `--resume` names."""
from __future__ import annotations

from pathlib import Path

from libs.runtime.errors import UserError

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
