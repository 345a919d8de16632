"""Writing evaluation results: JSON, CSV and precision-recall plots (tables: `tables`).

Files are written atomically (`libs.runtime.files.write_atomic`): a failed write (full disk,
read-only folder) is one `EvaluationError` naming the flag, the file and the reason, and
leaves any earlier file of that name as it was.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from libs.runtime.files import FileWriteError, write_atomic

from .errors import EvaluationError
from .metrics import METRIC_NAMES
from .tables import TABLE_METRICS, table_rows

# Keys of one dataset's entry in the JSON output.
JSON_KEYS: tuple[str, ...] = METRIC_NAMES + ("frames",)


def method_names(results_dirs: Sequence[str | Path]) -> list[str]:
    """Names for results folders: their folder names, with parent folders added where two clash."""
    parts = [Path(p).resolve().parts for p in results_dirs]
    if len(set(parts)) < len(parts):
        seen = [p for i, p in enumerate(parts) if p in parts[:i]][0]
        raise EvaluationError(f"results folder {Path(*seen)} given twice (--results-folder)")
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]).lstrip("/") for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(Path(*p)) for p in parts]


def dataset_keys(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Output keys for (dataset, split) pairs: the name, or "name/split" if a name has several splits."""
    names = Counter(name for name, _ in dict.fromkeys(pairs))
    return [name if names[name] == 1 else f"{name}/{split}" for name, split in pairs]


def _write(path: str | Path, flag: str, data: bytes | None = None, figure: object = None) -> Path:
    """Write `data` (or save the matplotlib `figure` as PNG) to `path` atomically."""
    path = Path(path)

    def write(handle) -> None:
        if figure is not None:
            figure.savefig(handle, format="png")
        else:
            handle.write(data)

    try:
        write_atomic(path, write)
    except FileWriteError as err:
        raise EvaluationError(f"{flag}: {err}") from None
    return path


def write_json(table: dict[str, dict[str, dict]], path: str | Path, per_video: bool = False) -> Path:
    """Write `{method: {dataset key: {"dataset", "split", metric: value, ..., "frames": n,
    "protocol": {...}}}}` (plus "videos" if per_video); "protocol" names the conventions
    behind the numbers. `merge.read_results` reads it back."""
    out: dict = {}
    for method, by_dataset in table.items():
        out[method] = {}
        for key, result in by_dataset.items():
            entry = {"dataset": result["dataset"], "split": result["split"]}
            entry.update({k: result[k] for k in JSON_KEYS if k in result})
            if "protocol" in result:
                entry["protocol"] = result["protocol"]
            if per_video:
                videos = result["videos"].items()
                entry["videos"] = {v: {k: s[k] for k in JSON_KEYS if k in s} for v, s in videos}
            out[method][key] = entry
    return _write(path, "--json", (json.dumps(out, indent=2) + "\n").encode())


def write_csv(table: dict[str, dict[str, dict]], path: str | Path, per_video: bool = False) -> Path:
    """Write one row per (dataset, method[, video]); `video` is empty on a dataset's overall row."""
    columns = ["dataset", "split", "method", "video", "frames", *TABLE_METRICS]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    for _, dataset, split, method, video, scores in table_rows(table, per_video):
        values = ["" if scores.get(m) is None else scores[m] for m in TABLE_METRICS]
        writer.writerow([dataset, split, method, video, scores["frames"], *values])
    return _write(path, "--csv", text.getvalue().encode())


def plot_curves(by_method: dict[str, dict], path: str | Path, title: str) -> Path:
    """Write one PNG: precision-recall curves and F-measure vs threshold, one line per method.

    Methods without curves (no frame scored, or no max/mean F computed) are left out.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    pr_ax, f_ax = fig.subplots(1, 2)
    for method, result in by_method.items():
        curves = result.get("curves") or {}
        if "precision" not in curves:
            continue
        label = f"{method} (max F {result['maxF']:.3f})" if result.get("maxF") is not None else method
        (line,) = pr_ax.plot(curves["recall"], curves["precision"], linewidth=1.8, label=label)
        f_ax.plot(curves["threshold"], curves["F"], linewidth=1.8, color=line.get_color(), label=label)
        best = int(np.argmax(curves["F"]))
        f_ax.plot([best], [curves["F"][best]], marker="o", color=line.get_color())
    pr_ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall")
    f_ax.set(
        xlabel="Threshold", ylabel="F-measure (β² = 0.3)", xlim=(0, 255), ylim=(0, 1.02),
        title="F-measure vs threshold",
    )
    for ax in (pr_ax, f_ax):
        ax.grid(True, linestyle=":", linewidth=0.7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _write(path, "--plot", figure=fig)
