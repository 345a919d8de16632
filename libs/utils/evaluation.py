"""Evaluating folders of saliency maps against the ground truth of a dataset split.

A results folder is laid out as `inference.py` writes it: `<results>/<dataset>/<video>/
<frame>.png` for video datasets (`<frame>` = the label file's name without its
extension) and `<results>/<dataset>/<id>.png` for image datasets. The ground truth of a
split is its annotated frames only: the label files of the split's videos (VOS labels
every 15th frame), or the labels of the ids in `<split_dir>/<split>_id.txt`.

Each prediction is paired with its label, read as 8-bit grey, resized to the label's size
when they differ, and scored with `SaliencyMetrics` (PySODMetrics) in worker processes;
worker results are merged in frame order, so any `workers` gives the same numbers. Every
departure from the clean case (missing or extra files, resized or converted maps,
converted or all-black labels) is counted and reported rather than silently absorbed.

The module also renders results (Markdown, CSV, JSON, PR and F-measure curves); it knows
nothing about models.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from libs.datasets.config import (
    DEFAULT_CONFIG,
    DatasetConfigError,
    DatasetSpec,
    get_spec,
    load_dataset_config,
)
from libs.utils.metrics import METRIC_NAMES, PAPER_METRICS, SaliencyMetrics

# Prediction file types looked for, in order of preference when a frame has several.
PREDICTION_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Scalars in tables: the paper's metrics first, then the rest.
TABLE_METRICS: tuple[str, ...] = PAPER_METRICS + tuple(m for m in METRIC_NAMES if m not in PAPER_METRICS)
# Keys of one dataset's entry in the JSON output.
JSON_KEYS: tuple[str, ...] = METRIC_NAMES + ("frames",)
# What `evaluate_pairing` counts; see `describe_counts` for the meaning of each.
COUNT_KEYS: tuple[str, ...] = (
    "labelled", "missing", "extra", "resized", "converted", "gt_converted", "empty_gt",
)
_HEADERS = {
    "maxF": "max F", "S": "S", "MAE": "MAE", "meanF": "mean F", "adpF": "adp F",
    "maxE": "max E", "meanE": "mean E", "adpE": "adp E", "wF": "wF",
}
_EXAMPLES = 3  # example file names kept per counted case
_MAX_CHUNK = 32  # frames per worker task


class EvaluationError(ValueError):
    """Inputs to an evaluation are not as expected; the message is one line."""


@dataclass(frozen=True)
class GroundTruthFrame:
    """One annotated frame: `key` is where its prediction lives, without extension."""

    key: str
    video: str
    path: Path


@dataclass
class Pairing:
    """The ground-truth frames of a split matched with the files of a results folder."""

    results_dir: Path
    dataset: str
    split: str
    is_video: bool
    frames: list[GroundTruthFrame]
    predictions: dict[str, Path]
    extra: int = 0
    extra_examples: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """Keys of the frames that have no prediction, in frame order."""
        return [f.key for f in self.frames if f.key not in self.predictions]


# --------------------------------------------------------------------------- listing


def list_ground_truth(data_root: str | Path, spec: DatasetSpec, split: str) -> list[GroundTruthFrame]:
    """The annotated frames of `split`, in video order then file-name order."""
    root = Path(data_root)
    if not (root / spec.name).is_dir():
        raise EvaluationError(f"dataset folder not found: {root / spec.name} (--data {root})")
    frames: list[GroundTruthFrame] = []
    ext = spec.label_ext
    if not spec.is_video:
        ids = spec.image_ids(root, split)
        folder = spec.label_folder(root)
        paths = [folder / f"{i}{ext}" for i in ids]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise EvaluationError(
                f"{len(absent)} of {len(paths)} ground-truth files of {spec.name}/{split} not found, "
                f"first: {absent[0]}"
            )
        return [GroundTruthFrame(key=i, video="", path=p) for i, p in zip(ids, paths)]
    for video in spec.videos(split, root):
        folder = spec.video_label_folder(root, video)
        if not folder.is_dir():
            raise EvaluationError(f"ground-truth folder not found: {folder} (video {video!r} of {spec.name})")
        names = sorted(n for n in os.listdir(folder) if n.endswith(ext) and not n.startswith("."))
        if not names:
            raise EvaluationError(f"no ground-truth files *{ext} in {folder} (video {video!r})")
        frames += [GroundTruthFrame(f"{video}/{n[: -len(ext)]}", video, folder / n) for n in names]
    return frames


def _index_predictions(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """{key: image file} under `folder` (PREDICTION_EXTS order breaks ties), and every file there."""
    found: dict[str, Path] = {}
    files: list[Path] = []
    rank = {ext: i for i, ext in enumerate(PREDICTION_EXTS)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        base = Path(dirpath)
        rel = base.relative_to(folder).as_posix()
        for name in sorted(filenames):
            files.append(base / name)
            stem, ext = os.path.splitext(name)
            if ext.lower() not in rank or name.startswith("."):
                continue
            key = stem if rel == "." else f"{rel}/{stem}"
            if key not in found or rank[ext.lower()] < rank[found[key].suffix.lower()]:
                found[key] = base / name
    return found, files


def pair_results(
    results_dir: str | Path,
    data_root: str | Path,
    spec: DatasetSpec,
    split: str,
    *,
    allow_missing: bool = False,
) -> Pairing:
    """Match the split's ground-truth frames with the maps under `<results_dir>/<dataset>`.

    A frame without a prediction is an error naming the first missing files, unless
    `allow_missing` (then it is skipped and counted). Files that match no frame are
    ignored and counted.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise EvaluationError(f"results folder not found: {results_dir} (--results)")
    frames = list_ground_truth(data_root, spec, split)
    folder = results_dir / spec.name
    index, files = _index_predictions(folder) if folder.is_dir() else ({}, [])
    wanted = {f.key for f in frames}
    predictions = {k: p for k, p in index.items() if k in wanted}
    used = set(predictions.values())
    unused = [p for p in files if p not in used]
    pairing = Pairing(
        results_dir=results_dir,
        dataset=spec.name,
        split=split,
        is_video=spec.is_video,
        frames=frames,
        predictions=predictions,
        extra=len(unused),
        extra_examples=[p.relative_to(folder).as_posix() for p in unused[:_EXAMPLES]],
    )
    missing = pairing.missing
    if missing and not allow_missing:
        layout = "<video>/<frame>.png" if spec.is_video else "<id>.png"
        where = f"{folder}" if folder.is_dir() else f"{folder} (folder not found)"
        raise EvaluationError(
            f"{len(missing)} of {len(frames)} predictions missing in {where}, expected {layout}; first: "
            f"{', '.join(m + '.png' for m in missing[:_EXAMPLES])} (--allow-missing skips them)"
        )
    return pairing


# --------------------------------------------------------------------------- reading


def _open(path: Path, what: str) -> Image.Image:
    """The decoded image, its file closed; an unreadable file is an EvaluationError naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise EvaluationError(f"cannot read {what} {path}: {err}") from None


def _grey8(image: Image.Image) -> tuple[np.ndarray, bool]:
    """An image as uint8 grey, and whether it had to be converted (colour, alpha, 16-bit...)."""
    if image.mode == "L":
        return np.asarray(image), False
    if image.mode == "1":
        return np.asarray(image.convert("L")), False
    if image.mode.startswith("I"):
        deep = np.asarray(image).astype(np.float64)
        return np.round(np.clip(deep, 0, 65535) / 257.0).astype(np.uint8), True
    return np.asarray(image.convert("L")), True


def read_prediction(path: str | Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, bool, bool]:
    """A saliency map as uint8 HxW grey, resized bilinearly to `size` (H, W) if it differs.

    Colour, palette, alpha and 16-bit maps are converted to 8-bit grey (luma, ITU-R 601).
    Returns (map, converted, resized).
    """
    image = _open(Path(path), "prediction")
    pred, converted = _grey8(image)
    resized = size is not None and pred.shape != tuple(size)
    if resized:
        height, width = size
        pred = np.asarray(Image.fromarray(pred).resize((width, height), Image.BILINEAR))
    return np.ascontiguousarray(pred), converted, resized


def read_ground_truth(path: str | Path) -> tuple[np.ndarray, bool]:
    """A label as uint8 HxW with salient pixels 255, and whether it had to be converted.

    Grey labels are used as they are (PySODMetrics binarises at > 128). Palette labels
    (DAVIS style) count every non-zero index as salient; colour labels are converted to
    grey; 0/1 labels are scaled to 0/255, the release's reading rule.
    """
    image = _open(Path(path), "ground truth")
    if image.mode == "P":
        return (np.asarray(image) != 0).astype(np.uint8) * 255, True
    gt, converted = _grey8(image)
    if gt.max() == 1:
        return gt * np.uint8(255), True
    return np.ascontiguousarray(gt), converted


# --------------------------------------------------------------------------- scoring


@dataclass
class _Task:
    video: str
    frames: list[tuple[str, str, str]]  # (key, ground-truth path, prediction path)
    metrics: tuple[str, ...]
    skip_empty_gt: bool


@dataclass
class _Outcome:
    video: str
    metrics: SaliencyMetrics
    counts: Counter
    examples: dict[str, list[str]]
    frames: int


def _evaluate_chunk(task: _Task) -> _Outcome:
    """Score a few consecutive frames of one video (runs in a worker process)."""
    metrics = SaliencyMetrics(task.metrics)
    counts: Counter = Counter()
    examples: dict[str, list[str]] = {}

    def note(case: str, key: str) -> None:
        counts[case] += 1
        if len(examples.setdefault(case, [])) < _EXAMPLES:
            examples[case].append(key)

    for key, gt_path, pred_path in task.frames:
        gt, gt_converted = read_ground_truth(gt_path)
        pred, converted, resized = read_prediction(pred_path, gt.shape)
        if gt_converted:
            note("gt_converted", key)
        if converted:
            note("converted", key)
        if resized:
            note("resized", key)
        if not (gt > 128).any():
            note("empty_gt", key)
            if task.skip_empty_gt:
                continue
        metrics.step(pred, gt)
    return _Outcome(task.video, metrics, counts, examples, len(task.frames))


def _scalars(metrics: SaliencyMetrics) -> dict:
    """The scalars and frame count of an accumulator; None for every metric if it has no frames."""
    if len(metrics) == 0:
        return {**{m: None for m in metrics.metrics}, "frames": 0}
    results = metrics.get_results()
    results.pop("curves")
    return results


def _tasks(pairing: Pairing, metrics: tuple[str, ...], workers: int, skip_empty_gt: bool) -> list[_Task]:
    """Chunks of at most _MAX_CHUNK consecutive frames, never spanning two videos."""
    present = [f for f in pairing.frames if f.key in pairing.predictions]
    size = max(1, min(_MAX_CHUNK, math.ceil(len(present) / (4 * max(1, workers)))))
    tasks: list[_Task] = []
    for frame in present:
        entry = (frame.key, str(frame.path), str(pairing.predictions[frame.key]))
        if tasks and tasks[-1].video == frame.video and len(tasks[-1].frames) < size:
            tasks[-1].frames.append(entry)
        else:
            tasks.append(_Task(frame.video, [entry], metrics, skip_empty_gt))
    return tasks


def evaluate_pairing(
    pairing: Pairing,
    *,
    workers: int = 1,
    per_video: bool = False,
    skip_empty_gt: bool = False,
    metrics: Iterable[str] = METRIC_NAMES,
    progress: bool = False,
    desc: str | None = None,
) -> dict:
    """Score the paired maps; see `evaluate_results` for the returned dict.

    Frames are split into chunks scored by `workers` processes; chunk results are merged
    in frame order, so the numbers equal those of one sequential pass.
    """
    if workers < 1:
        raise EvaluationError(f"workers must be at least 1, got {workers} (-j)")
    names = SaliencyMetrics(metrics).metrics
    tasks = _tasks(pairing, names, workers, skip_empty_gt)
    overall = SaliencyMetrics(names)
    videos: dict[str, SaliencyMetrics] = {}
    if per_video and pairing.is_video:
        videos = {f.video: SaliencyMetrics(names) for f in pairing.frames}
    counts: Counter = Counter({k: 0 for k in COUNT_KEYS})
    examples: dict[str, list[str]] = {}
    missing = pairing.missing
    counts["labelled"] = len(pairing.frames)
    counts["missing"] = len(missing)
    counts["extra"] = pairing.extra
    examples["missing"] = missing[:_EXAMPLES]
    examples["extra"] = list(pairing.extra_examples)
    processes = min(workers, len(tasks))
    # The pool is started before the progress bar so no tqdm thread exists when it forks.
    pool = multiprocessing.get_context().Pool(processes) if processes > 1 else None
    with pool if pool is not None else contextlib.nullcontext():
        outcomes = pool.imap(_evaluate_chunk, tasks) if pool is not None else map(_evaluate_chunk, tasks)
        total = sum(len(t.frames) for t in tasks)
        with tqdm(total=total, desc=desc, unit="frame", disable=None if progress else True) as bar:
            for outcome in outcomes:
                overall.merge(outcome.metrics)
                if videos:
                    videos[outcome.video].merge(outcome.metrics)
                counts.update(outcome.counts)
                for case, keys in outcome.examples.items():
                    kept = examples.setdefault(case, [])
                    kept += keys[: _EXAMPLES - len(kept)]
                bar.update(outcome.frames)
    result = _scalars(overall)
    result.update(
        dataset=pairing.dataset,
        split=pairing.split,
        results_dir=str(pairing.results_dir),
        skip_empty_gt=skip_empty_gt,
        counts={k: counts[k] for k in COUNT_KEYS},
        examples={k: v for k, v in examples.items() if v},
        curves=overall.get_results()["curves"] if len(overall) else {},
        videos={v: _scalars(m) for v, m in videos.items()},
    )
    return result


def evaluate_results(
    results_dir: str | Path,
    data_root: str | Path,
    dataset: str,
    split: str,
    *,
    config_path: str | Path = DEFAULT_CONFIG,
    workers: int = 1,
    allow_missing: bool = False,
    per_video: bool = False,
    skip_empty_gt: bool = False,
    metrics: Iterable[str] = METRIC_NAMES,
    progress: bool = False,
) -> dict:
    """Evaluate the maps in `<results_dir>/<dataset>` on the annotated frames of `split`.

    Returns a dict with the scalars of `metrics` (floats; None when no frame was scored),
    "frames" (frames scored), "dataset", "split", "results_dir", "skip_empty_gt",
    "counts" ({case: count} for COUNT_KEYS), "examples" ({case: first keys}), "curves"
    (`SaliencyMetrics.get_results()["curves"]`) and "videos" ({video: scalars and
    "frames"}, filled when `per_video` and the dataset is a video dataset).
    Raises EvaluationError or DatasetConfigError (both ValueError) on bad input.
    """
    spec = get_spec(load_dataset_config(config_path), dataset)
    pairing = pair_results(results_dir, data_root, spec, split, allow_missing=allow_missing)
    return evaluate_pairing(
        pairing,
        workers=workers,
        per_video=per_video,
        skip_empty_gt=skip_empty_gt,
        metrics=metrics,
        progress=progress,
        desc=f"{Path(results_dir).name} {dataset}/{split}",
    )


def describe_counts(result: dict) -> list[str]:
    """One line per counted case of an evaluation result (nothing for a clean run)."""
    counts, examples = result["counts"], result["examples"]

    def eg(case: str) -> str:
        return f" (e.g. {', '.join(examples[case])})" if examples.get(case) else ""

    lines = []
    if counts["missing"]:
        lines.append(
            f"{counts['missing']} of {counts['labelled']} predictions missing: skipped "
            f"(--allow-missing){eg('missing')}"
        )
    if counts["extra"]:
        lines.append(f"{counts['extra']} extra file(s) matching no ground-truth frame: ignored{eg('extra')}")
    if counts["resized"]:
        lines.append(
            f"{counts['resized']} map(s) sized unlike their ground truth: resized bilinearly{eg('resized')}"
        )
    if counts["converted"]:
        lines.append(
            f"{counts['converted']} map(s) not 8-bit grey (colour, palette, alpha or 16-bit): "
            f"converted to grey{eg('converted')}"
        )
    if counts["gt_converted"]:
        lines.append(
            f"{counts['gt_converted']} ground-truth mask(s) not 0/255 grey: palette index > 0, "
            f"colour -> grey, 0/1 -> 0/255{eg('gt_converted')}"
        )
    if counts["empty_gt"]:
        action = "skipped (--skip-empty-gt)" if result.get("skip_empty_gt") else (
            "scored as PySODMetrics does: F and wF 0, S = 1 - mean(map), E = share of pixels below "
            "threshold; --skip-empty-gt leaves them out"
        )
        lines.append(f"{counts['empty_gt']} all-black ground-truth frame(s): {action}{eg('empty_gt')}")
    return lines


# --------------------------------------------------------------------------- reporting


def method_names(results_dirs: Sequence[str | Path]) -> list[str]:
    """Names for results folders: their folder names, with parent folders added where two clash."""
    parts = [Path(p).resolve().parts for p in results_dirs]
    if len(set(parts)) < len(parts):
        seen = [p for i, p in enumerate(parts) if p in parts[:i]][0]
        raise EvaluationError(f"results folder {Path(*seen)} given twice (--results)")
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


def markdown_table(table: dict[str, dict[str, dict]], per_video: bool = False) -> str:
    """A Markdown table of `{method: {dataset key: result}}`, the paper's metrics first."""
    metrics = [m for m in TABLE_METRICS if any(m in r for d in table.values() for r in d.values())]
    header = ["dataset", "split", "method"] + (["video"] if per_video else []) + ["frames"]
    header += [_HEADERS[m] for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for dataset, split, method, video, scores in _rows(table, per_video):
        cells = [dataset, split, method] + ([video or "(all)"] if per_video else []) + [str(scores["frames"])]
        cells += [_fmt(scores.get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _prepare(path: str | Path, flag: str) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EvaluationError(f"cannot create the folder of {flag} {path}: {err.strerror}") from None
    return path


def write_json(table: dict[str, dict[str, dict]], path: str | Path, per_video: bool = False) -> Path:
    """Write `{method: {dataset key: {metric: value, ..., "frames": n}}}` (plus "videos" if per_video)."""
    out: dict = {}
    for method, by_dataset in table.items():
        out[method] = {}
        for key, result in by_dataset.items():
            entry = {k: result[k] for k in JSON_KEYS if k in result}
            if per_video:
                videos = result["videos"].items()
                entry["videos"] = {v: {k: s[k] for k in JSON_KEYS if k in s} for v, s in videos}
            out[method][key] = entry
    path = _prepare(path, "--json")
    try:
        path.write_text(json.dumps(out, indent=2) + "\n")
    except OSError as err:
        raise EvaluationError(f"cannot write --json {path}: {err.strerror}") from None
    return path


def write_csv(table: dict[str, dict[str, dict]], path: str | Path, per_video: bool = False) -> Path:
    """Write one row per (dataset, method[, video]); `video` is empty on a dataset's overall row."""
    path = _prepare(path, "--csv")
    columns = ["dataset", "split", "method", "video", "frames", *TABLE_METRICS]
    try:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for dataset, split, method, video, scores in _rows(table, per_video):
                values = ["" if scores.get(m) is None else scores[m] for m in TABLE_METRICS]
                writer.writerow([dataset, split, method, video, scores["frames"], *values])
    except OSError as err:
        raise EvaluationError(f"cannot write --csv {path}: {err.strerror}") from None
    return path


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
    path = _prepare(path, "--plot")
    try:
        fig.savefig(path, format="png")
    except OSError as err:
        raise EvaluationError(f"cannot write --plot file {path}: {err.strerror}") from None
    return path


__all__ = [
    "COUNT_KEYS",
    "DatasetConfigError",
    "EvaluationError",
    "GroundTruthFrame",
    "JSON_KEYS",
    "PREDICTION_EXTS",
    "Pairing",
    "TABLE_METRICS",
    "dataset_keys",
    "describe_counts",
    "evaluate_pairing",
    "evaluate_results",
    "list_ground_truth",
    "markdown_table",
    "method_names",
    "pair_results",
    "plot_curves",
    "read_ground_truth",
    "read_prediction",
    "write_csv",
    "write_json",
]
