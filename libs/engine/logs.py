"""Per-run training logs: a CSV file (always) and TensorBoard scalars (when installed).

The CSV, `<save-folder>/<prefix>_log.csv`, has one row per phase per epoch with the
columns of `LOG_COLUMNS`; metrics a phase does not compute are left empty. A resumed run
appends to the same file, so an epoch that was cut short and redone appears twice;
`read_log` keeps the last row of each (epoch, phase).
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

LOG_COLUMNS = ("time", "epoch", "phase", "loss", "MAE", "S", "maxF", "lr", "frames", "seconds")


def log_path(save_folder: str | Path, prefix: str) -> Path:
    """Where a run's CSV log lives."""
    return Path(save_folder) / f"{prefix}_log.csv"


class RunLogger:
    """Appends epoch rows to the CSV log and, when TensorBoard is installed, to `<save-folder>/tb`."""

    def __init__(self, save_folder: str | Path, prefix: str, tensorboard: bool = True) -> None:
        self.path = log_path(save_folder, prefix)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(LOG_COLUMNS)
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
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([row[c] for c in LOG_COLUMNS])
        if self._tb is not None:
            for column in ("loss", "MAE", "S", "maxF", "lr"):
                value = values.get(column)
                if isinstance(value, float) and math.isfinite(value):
                    self._tb.add_scalar(f"{phase}/{column}", value, epoch)
            self._tb.flush()

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
