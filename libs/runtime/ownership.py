"""Runs own their outputs: a run refuses a folder that holds another run's results.

Two kinds of output folder:

- A training save folder (`prepare_save_folder`) holds one run per file prefix
  (`<prefix>_current_best_model.pth`, `<prefix>_epoch-N.pth`, `<prefix>_resume.pth`,
  `<prefix>_log.csv`, ...). A new run into a folder that already holds such files is refused
  before anything there is touched, unless it continues that run (`--resume`) or is told to
  replace it (`--overwrite`, which deletes those files first, so no backup of the earlier
  run is left to be mistaken for one of the new run).
- A generated-output folder (`claim_generated_folder`, used for pseudo-labels) records the
  settings its files were made with in a small JSON file beside them. A rerun with the same
  settings continues where the last one stopped; a rerun with other settings, or into a folder
  of outputs whose settings are not recorded, is refused. `--overwrite` deletes the earlier
  outputs (files with the caller's name ending, nothing else) before recording the new
  settings. Outputs made under two settings never mix.

Temporary files that killed runs left are removed only when their owner process is dead
(`libs.runtime.files.remove_stale_temporaries`), so two runs writing to one folder at once do
not delete each other's files.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UserError
from .files import FileWriteError, remove_stale_temporaries, write_atomic

SETTINGS_FORMAT = "rcrnet-output-settings-1"
# the names of what a training run writes under its prefix (libs.engine: weights, resume file, logs)
RUN_RESULT_NAMES = r"{prefix}_(current_best_model|epoch-[0-9]+)\.(pth|safetensors)|{prefix}_resume\.pth" \
    r"|{prefix}_log\.(csv|png)"


def _names(paths: list[Path], shown: int = 4) -> str:
    names = [p.name for p in paths[:shown]]
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(names) + more


def _create(folder: Path, flag: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder}: a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {folder}: cannot create it: {exc.strerror or exc}") from None


def _delete(paths: list[Path], flag: str) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise FileWriteError(f"{flag} --overwrite: cannot delete {path}: {exc.strerror or exc}") from None


def run_results(folder: str | Path, prefix: str) -> list[Path]:
    """The files of a training run with file prefix `prefix` in `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = re.compile(RUN_RESULT_NAMES.format(prefix=re.escape(prefix)))
    return sorted(p for p in folder.iterdir() if names.fullmatch(p.name) and p.is_file())


def prepare_save_folder(folder: str | Path, prefix: str, *, continuing: bool, overwrite: bool,
                        keep: Sequence[str | Path | None] = (), is_main: bool = True,
                        log: Callable[[str], None] = print) -> None:
    """Make `folder` ready for a training run writing files `<prefix>_*`, or refuse.

    A folder holding an earlier run's files is refused (one `UserError` naming the folder and
    the files) unless `continuing` (this run continues it: `--resume`, or the release's
    `--start-epoch`) or `overwrite` (its files are deleted here, except those in `keep`, such
    as the `--checkpoint` this run starts from). Dead processes' temporary files are removed;
    the folder itself is created by the training loop, once the data and model are ready. Only
    the main process (`is_main`) looks and acts: the other processes of a torchrun job would
    otherwise see the main process's first files as another run's.
    """
    if continuing and overwrite:
        raise UserError("--overwrite replaces the run in --save-folder: it does not go with --resume or "
                        "--start-epoch, which continue it")
    if not is_main:
        return
    folder = Path(folder)
    earlier = run_results(folder, prefix)
    if earlier and not (continuing or overwrite):
        raise UserError(f"--save-folder {folder} holds the results of an earlier run ({_names(earlier)}): "
                        "pass --resume to continue it, --overwrite to replace it, or another --save-folder")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--save-folder {folder}: a file, not a folder")
    if overwrite and earlier:
        kept = {Path(p).resolve() for p in keep if p}
        doomed = [p for p in earlier if p.resolve() not in kept]
        _delete(doomed, "--save-folder")
        log(f"--overwrite: deleted the earlier run's {len(doomed)} file(s) in {folder}"
            + (f" (kept {len(earlier) - len(doomed)} this run reads)" if len(doomed) < len(earlier) else ""))
    for stale in remove_stale_temporaries(folder):
        log(f"removed {stale}, a temporary file left by a killed run")


def _plain(value: Any) -> Any:
    """`value` as JSON holds it (paths and other objects as text, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def read_settings(path: Path) -> dict[str, Any] | None:
    """The settings recorded in `path`, or None when the file is not one of ours."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != SETTINGS_FORMAT or not isinstance(
            data.get("settings"), dict):
        return None
    return data["settings"]


def generated_files(folder: Path, suffix: str) -> list[Path]:
    """The regular files below `folder` whose names end with `suffix`, sorted (links not followed)."""
    found = []
    for parent, _, names in os.walk(folder):
        paths = (Path(parent) / name for name in names if name.endswith(suffix))
        found += [path for path in paths if not path.is_symlink()]
    return sorted(found)


def claim_generated_folder(folder: str | Path, settings: Mapping[str, Any], *, overwrite: bool,
                           output_suffix: str, flag: str, settings_name: str = "settings.json",
                           log: Callable[[str], None] = print) -> None:
    """Make `folder` ready for outputs made with `settings`, or refuse to mix them with others.

    `output_suffix`: the file name ending (e.g. `.png`) of the files a generator writes below
    `folder` (symbolic links are not followed); `flag` names the folder's flag in messages. The settings are
    recorded in `folder/settings_name` before anything is generated, so an interrupted run
    resumes under the same record. Dead processes' temporary files below `folder` are removed.
    """
    folder = Path(folder)
    record = folder / settings_name
    wanted = _plain(dict(settings))
    if folder.is_dir():
        earlier = generated_files(folder, output_suffix)
        recorded = read_settings(record) if record.is_file() else None
        if recorded is None and record.exists():
            raise UserError(f"{flag} {folder}: {record} is not a settings record written by this program; "
                            "move it away or choose another folder")
        if overwrite:
            _delete(earlier, flag)
            if earlier:
                log(f"--overwrite: deleted {len(earlier)} earlier output file(s) in {folder}")
        elif recorded != wanted and (earlier or recorded is not None):
            if recorded is None:
                why = f"holds {len(earlier)} output file(s) whose settings are not recorded"
            else:
                changed = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
                why = "holds outputs made with other settings (" + "; ".join(
                    f"{k}: {recorded.get(k)!r} there, {wanted.get(k)!r} now" for k in changed) + ")"
            raise UserError(f"{flag} {folder} {why}: pass --overwrite to replace them, or choose "
                            "another folder")
    _create(folder, flag)
    for stale in remove_stale_temporaries(folder, recursive=True):
        log(f"removed {stale}, a temporary file left by a killed run")
    document = {"format": SETTINGS_FORMAT, "settings": wanted}
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if not record.is_file() or read_settings(record) != wanted:
        write_atomic(record, lambda handle: handle.write(text.encode("utf-8")))

