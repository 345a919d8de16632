"""Per-run training logs: a CSV file (always) and TensorBoard scalars (when installed).

The CSV, `<save-folder>/<prefix>_log.csv`, has one row per phase per epoch with the
columns of `LOG_COLUMNS`; metrics a phase does not compute are left empty. Every row is
written by rewriting the whole (small) file atomically (`libs.runtime.files.write_atomic`),
so a full disk or a kill mid-row leaves the previous complete file, never a broken row. A
run that continues after epoch E (`--resume`, `--start-epoch E`) first drops the rows of
the epochs after E, which a killed run may have logged, so no row is ever there twice.
"""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

from libs.runtime.errors import UserError
from libs.runtime.files import write_atomic

LOG_COLUMNS = ("time", "epoch", "phase", "loss", "MAE", "S", "maxF", "lr", "frames", "seconds")


def log_path(save_folder: str | Path, prefix: str) -> Path:
    """Where a run's CSV log lives."""
    return Path(save_folder) / f"{prefix}_log.csv"


def _csv_text(rows: list[list[Any]]) -> str:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


def _kept_rows(path: Path, after: int, revalidate: bool) -> list[list[str]]:
    """The data rows of an existing log up to epoch `after` (its val row too, unless `revalidate`)."""
    if after <= 0 or not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(rows[0]) != LOG_COLUMNS:
        raise UserError(f"training log {path}: its first row is not the header {','.join(LOG_COLUMNS)}")
    kept = []
    for row in rows[1:]:
        if len(row) != len(LOG_COLUMNS) or not row[1].isdigit():
            continue  # a row cut short by a crash of an older version, which appended
        epoch, phase = int(row[1]), row[2]
        if epoch < after or (epoch == after and not (revalidate and phase == "val")):
            kept.append(row)
    return kept


class RunLogger:
    """Writes epoch rows to the CSV log and, when TensorBoard is installed, to `<save-folder>/tb`.

    `after`: the last finished epoch of the run being continued (0: a new run, which starts
    a new log); rows of later epochs are dropped, and with `revalidate` (the first
    validation of this run is logged at epoch `after`) that epoch's val row too.
    """

    def __init__(self, save_folder: str | Path, prefix: str, tensorboard: bool = True, after: int = 0,
                 revalidate: bool = False) -> None:
        self.path = log_path(save_folder, prefix)
        self._rows = [list(LOG_COLUMNS), *_kept_rows(self.path, after, revalidate)]
        self._save()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(Path(save_folder) / "tb"))

    def write(self, epoch: int, phase: str, values: dict[str, Any]) -> None:
        """Append one row (and the TensorBoard scalars `phase/metric` at step `epoch`)."""
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "epoch": epoch, "phase": phase}
        for column in LOG_COLUMNS[3:]:
            value = values.get(column)
            row[column] = "" if value is None else (f"{value:.6g}" if isinstance(value, float) else value)
        self._rows.append([row[c] for c in LOG_COLUMNS])
        self._save()
        if self._tb is not None:
            for column in ("loss", "MAE", "S", "maxF", "lr"):
                value = values.get(column)
                if isinstance(value, float) and math.isfinite(value):
                    self._tb.add_scalar(f"{phase}/{column}", value, epoch)
            self._tb.flush()

    def _save(self) -> None:
        data = _csv_text(self._rows).encode()
        write_atomic(self.path, lambda handle: handle.write(data))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a CSV log as dicts (numbers parsed, empty cells None), last row per (epoch, phase)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training log not found: {path}")
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key in ("time", "phase"):
                    row[key] = value
                elif value in ("", None):
                    row[key] = None
                else:
                    row[key] = int(value) if key in ("epoch", "frames") else float(value)
            rows[(row["epoch"], row["phase"])] = row
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] != "train"))]
