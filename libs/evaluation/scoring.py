"""Scoring paired maps in worker processes and describing what was counted.

Each prediction is read as 8-bit grey, resized to its label's size when they differ, and
scored with `SaliencyMetrics` (PySODMetrics); worker results are merged in frame order,
so any number of workers gives the same numbers. A `Protocol` (`libs.evaluation.protocol`)
picks the frames scored, the averaging (over frames or per video), the resizing and the
metric definitions; the default, "frames", is the behaviour described here. Every
departure from the clean case
(missing or extra files, resized or converted maps, converted or all-black labels) is
counted and reported.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from libs.datasets.config import DEFAULT_CONFIG, get_spec, load_dataset_config

from .errors import EvaluationError
from .metrics import METRIC_NAMES, SaliencyMetrics
from .pairing import EXAMPLES, Pairing, pair_results
from .protocol import PROTOCOLS, Protocol, apply_fmeasure, average_videos, make_metrics, select_frames
from .reading import read_ground_truth, read_prediction

# What `evaluate_pairing` counts; see `describe_counts` for the meaning of each.
COUNT_KEYS: tuple[str, ...] = (
    "labelled", "missing", "extra", "resized", "converted", "gt_converted", "empty_gt",
    "edge_skipped", "empty_videos",
)
_MAX_CHUNK = 32  # frames per worker task



@dataclass
class _Task:
    video: str
    frames: list[tuple[str, str, str]]  # (key, ground-truth path, prediction path)
    metrics: tuple[str, ...]
    skip_empty_gt: bool
    protocol: Protocol


@dataclass
class _Outcome:
    video: str
    metrics: SaliencyMetrics
    counts: Counter
    examples: dict[str, list[str]]
    frames: int


def _evaluate_chunk(task: _Task) -> _Outcome:
    """Score a few consecutive frames of one video (runs in a worker process)."""
    metrics = make_metrics(task.protocol, task.metrics)
    counts: Counter = Counter()
    examples: dict[str, list[str]] = {}

    def note(case: str, key: str) -> None:
        counts[case] += 1
        if len(examples.setdefault(case, [])) < EXAMPLES:
            examples[case].append(key)

    for key, gt_path, pred_path in task.frames:
        gt, gt_converted = read_ground_truth(gt_path)
        pred, converted, resized = read_prediction(pred_path, gt.shape, task.protocol.resize)
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


def _scalars(metrics: SaliencyMetrics, protocol: Protocol) -> dict:
    """The scalars and frame count of an accumulator; None for every metric if it has no frames."""
    if len(metrics) == 0:
        return {**{m: None for m in metrics.metrics}, "frames": 0}
    results = apply_fmeasure(protocol, metrics.get_results())
    results.pop("curves")
    return results


def _tasks(
    pairing: Pairing, metrics: tuple[str, ...], workers: int, skip_empty_gt: bool, protocol: Protocol
) -> tuple[list[_Task], list[str]]:
    """Chunks of at most _MAX_CHUNK consecutive frames, never spanning two videos, and the keys
    the protocol's frame selection leaves out (video datasets only)."""
    present = [f for f in pairing.frames if f.key in pairing.predictions]
    skip = protocol.skip_first_last and pairing.is_video
    _, skipped = select_frames([(f.video, f.key) for f in pairing.frames], skip)
    left_out = set(skipped)
    present = [f for f in present if f.key not in left_out]
    size = max(1, min(_MAX_CHUNK, math.ceil(len(present) / (4 * max(1, workers)))))
    tasks: list[_Task] = []
    for frame in present:
        entry = (frame.key, str(frame.path), str(pairing.predictions[frame.key]))
        if tasks and tasks[-1].video == frame.video and len(tasks[-1].frames) < size:
            tasks[-1].frames.append(entry)
        else:
            tasks.append(_Task(frame.video, [entry], metrics, skip_empty_gt, protocol))
    return tasks, skipped


def evaluate_pairing(
    pairing: Pairing,
    *,
    workers: int = 1,
    per_video: bool = False,
    skip_empty_gt: bool = False,
    metrics: Iterable[str] = METRIC_NAMES,
    progress: bool = False,
    desc: str | None = None,
    protocol: Protocol = PROTOCOLS["frames"],
) -> dict:
    """Score the paired maps under `protocol`; see `evaluate_results` for the returned dict.

    Frames are split into chunks scored by `workers` processes; chunk results are merged
    in frame order, so the numbers equal those of one sequential pass.
    """
    if workers < 1:
        raise EvaluationError(f"workers must be at least 1, got {workers} (-j)")
    names = SaliencyMetrics(metrics).metrics
    tasks, skipped = _tasks(pairing, names, workers, skip_empty_gt, protocol)
    by_videos = protocol.average == "videos" and pairing.is_video
    overall = make_metrics(protocol, names)
    videos: dict[str, SaliencyMetrics] = {}
    if (per_video or by_videos) and pairing.is_video:
        videos = {f.video: make_metrics(protocol, names) for f in pairing.frames}
    counts: Counter = Counter({k: 0 for k in COUNT_KEYS})
    examples: dict[str, list[str]] = {}
    missing = pairing.missing
    counts["labelled"] = len(pairing.frames)
    counts["missing"] = len(missing)
    counts["extra"] = pairing.extra
    examples["missing"] = missing[:EXAMPLES]
    examples["extra"] = list(pairing.extra_examples)
    counts["edge_skipped"] = len(skipped)
    examples["edge_skipped"] = skipped[:EXAMPLES]
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
                    kept += keys[: EXAMPLES - len(kept)]
                bar.update(outcome.frames)
    result = apply_fmeasure(protocol, overall.get_results()) if len(overall) else _scalars(overall, protocol)
    curves = result.pop("curves", {})
    empty = [v for v, m in videos.items() if len(m) == 0]
    counts["empty_videos"] = len(empty)
    examples["empty_videos"] = empty[:EXAMPLES]
    if by_videos and len(overall):
        averaged = average_videos([m.get_results() for m in videos.values() if len(m)], names)
        averaged = apply_fmeasure(protocol, averaged)
        curves = averaged.pop("curves")
        result = averaged
    result.update(
        dataset=pairing.dataset,
        split=pairing.split,
        results_dir=str(pairing.results_dir),
        skip_empty_gt=skip_empty_gt,
        protocol=protocol.describe(),
        counts={k: counts[k] for k in COUNT_KEYS},
        examples={k: v for k, v in examples.items() if v},
        curves=curves,
        videos={v: _scalars(m, protocol) for v, m in videos.items()} if per_video else {},
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
    protocol: Protocol = PROTOCOLS["frames"],
) -> dict:
    """Evaluate the maps in `<results_dir>/<dataset>` on the annotated frames of `split`.

    Returns a dict with the scalars of `metrics` (floats; None when no frame was scored),
    "frames" (frames scored), "dataset", "split", "results_dir", "skip_empty_gt",
    "protocol" (`Protocol.describe()`: the conventions that produced the numbers),
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
        protocol=protocol,
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
        matlab = result.get("protocol", {}).get("resize") == "bicubic-matlab"
        how = "bicubic as MATLAB's imresize" if matlab else "bilinearly"
        lines.append(
            f"{counts['resized']} map(s) sized unlike their ground truth: resized {how}{eg('resized')}"
        )
    if counts.get("edge_skipped"):
        lines.append(
            f"{counts['edge_skipped']} first/last annotated frame(s) of the videos left out "
            f"(--skip-first-last){eg('edge_skipped')}"
        )
    if counts.get("empty_videos"):
        lines.append(
            f"{counts['empty_videos']} video(s) without a scored frame: left out of the averages"
            f"{eg('empty_videos')}"
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
