"""Rendering evaluation results: Markdown tables, JSON, CSV and precision-recall plots.

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
from .metrics import METRIC_NAMES, PAPER_METRICS
from .protocol import Protocol

# Scalars in tables: the paper's metrics first, then the rest.
TABLE_METRICS: tuple[str, ...] = PAPER_METRICS + tuple(m for m in METRIC_NAMES if m not in PAPER_METRICS)
# Keys of one dataset's entry in the JSON output.
JSON_KEYS: tuple[str, ...] = METRIC_NAMES + ("frames",)
_HEADERS = {
    "maxF": "max F", "S": "S", "MAE": "MAE", "meanF": "mean F", "adpF": "adp F",
    "maxE": "max E", "meanE": "mean E", "adpE": "adp E", "wF": "wF",
}



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


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _rows(table: dict[str, dict[str, dict]], per_video: bool) -> list[tuple[str, str, str, str, dict]]:
    """(dataset, split, method, video, scores) rows: datasets in order, then methods, then videos."""
    keys = list(dict.fromkeys(k for by_dataset in table.values() for k in by_dataset))
    rows = []
    for key in keys:
        for method, by_dataset in table.items():
            if key not in by_dataset:
                continue
            result = by_dataset[key]
            name, split = result["dataset"], result["split"]
            rows.append((name, split, method, "", result))
            if per_video:
                rows += [(name, split, method, video, s) for video, s in result["videos"].items()]
    return rows


def markdown_table(table: dict[str, dict[str, dict]], per_video: bool = False, caption: bool = False) -> str:
    """A Markdown table of `{method: {dataset key: result}}`, the paper's metrics first.

    With `caption`, a line after the table names the protocol(s) of the results.
    """
    metrics = [m for m in TABLE_METRICS if any(m in r for d in table.values() for r in d.values())]
    header = ["dataset", "split", "method"] + (["video"] if per_video else []) + ["frames"]
    header += [_HEADERS[m] for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for dataset, split, method, video, scores in _rows(table, per_video):
        cells = [dataset, split, method] + ([video or "(all)"] if per_video else []) + [str(scores["frames"])]
        cells += [_fmt(scores.get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if caption:
        protocols = {Protocol(**r["protocol"]) for d in table.values() for r in d.values() if "protocol" in r}
        lines += ["", *sorted(p.caption() for p in protocols)]
    return "\n".join(lines)


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
    """Write `{method: {dataset key: {metric: value, ..., "frames": n, "protocol": {...}}}}`
    (plus "videos" if per_video); "protocol" names the conventions behind the numbers."""
    out: dict = {}
    for method, by_dataset in table.items():
        out[method] = {}
        for key, result in by_dataset.items():
            entry = {k: result[k] for k in JSON_KEYS if k in result}
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
    for dataset, split, method, video, scores in _rows(table, per_video):
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
