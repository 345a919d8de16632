"""One `evaluate.py` run: check every input, score each method on each dataset, report.

Three ways in, one way out. Scores come from dataset splits named in the dataset config
(`pair_results`), from a folder of labels paired directly with folders of maps
(`pair_folders`), or from the JSON of earlier runs (`merge.read_results`, nothing scored
again). They are printed as one table (Markdown or LaTeX) on stdout, optionally followed by
the published scores beside them, with what was counted on stderr; JSON, CSV and curve
plots are written on request.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from libs.datasets.config import DEFAULT_CONFIG, DEFAULT_DATA, get_spec, load_dataset_config

from .errors import EvaluationError
from .merge import read_results
from .pairing import Pairing, pair_folders, pair_results
from .protocol import PROTOCOLS, Protocol
from .published import compare_published, load_published
from .reports import dataset_keys, method_names, plot_curves, write_csv, write_json
from .scoring import describe_counts, evaluate_pairing
from .tables import format_table


@dataclass
class EvaluationRun:
    """What one run scores and writes; see evaluate.py --help for each field's flag."""

    results: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    data: str = DEFAULT_DATA
    dataset_config: str | Path = DEFAULT_CONFIG
    labels: str | None = None
    merge: list[str] = field(default_factory=list)
    protocol: Protocol = PROTOCOLS["frames"]
    workers: int = 1
    allow_missing: bool = False
    skip_empty_gt: bool = False
    per_video: bool = False
    table_format: str = "markdown"
    json: str | None = None
    csv: str | None = None
    plot: str | None = None
    compare_published: str | Path | None = None


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def _plan(run: EvaluationRun) -> list[tuple[str, str, Pairing]]:
    """(dataset key, method, pairing) for every method and dataset, every input checked."""
    names = method_names(run.results)
    if run.labels is not None:
        dataset, split = run.pairs[0] if run.pairs else (Path(run.labels).name, "")
        key = f"{dataset}/{split}" if split else dataset
        return [
            (key, name, pair_folders(folder, run.labels, allow_missing=run.allow_missing, dataset=dataset,
                                     split=split))
            for name, folder in zip(names, run.results)
        ]
    config = load_dataset_config(run.dataset_config)
    plan = []
    for (dataset, split), key in zip(run.pairs, dataset_keys(run.pairs)):
        spec = get_spec(config, dataset)
        for name, folder in zip(names, run.results):
            pairing = pair_results(folder, run.data, spec, split, allow_missing=run.allow_missing)
            plan.append((key, name, pairing))
    return plan


def _score(run: EvaluationRun) -> dict[str, dict[str, dict]]:
    """{method: {dataset key: result}}, what was counted reported on stderr."""
    plan = _plan(run)  # every input checked before anything is scored: no typo surfaces an hour in
    table: dict[str, dict[str, dict]] = {name: {} for _, name, _ in plan}
    for key, name, pairing in plan:
        table[name][key] = evaluate_pairing(
            pairing,
            workers=run.workers,
            per_video=run.per_video,
            skip_empty_gt=run.skip_empty_gt,
            progress=True,
            desc=f"{name} {key}",
            protocol=run.protocol,
        )
    for key, name, _ in plan:
        result = table[name][key]
        where = f"{result['dataset']}/{result['split']}" if result["split"] else result["dataset"]
        scored = f"{result['frames']} of {result['counts']['labelled']} labelled frame(s) scored"
        print(f"{name} on {where}: {scored}", file=sys.stderr)
        for line in describe_counts(result):
            print(f"  {line}", file=sys.stderr)
    return table


def _plot(table: dict[str, dict[str, dict]], folder: str) -> None:
    """One PNG of precision-recall and F curves per dataset, all methods in it."""
    keys = list(dict.fromkeys(k for by_dataset in table.values() for k in by_dataset))
    for key in keys:
        by_method = {name: by_dataset[key] for name, by_dataset in table.items() if key in by_dataset}
        first = next(iter(by_method.values()))
        dataset, split = first["dataset"], first["split"]
        stem = f"{_file_name(dataset)}_{_file_name(split)}" if split else _file_name(dataset)
        title = f"{dataset} ({split})" if split else dataset
        protocol = (first.get("protocol") or {}).get("name")
        plot_curves(by_method, Path(folder) / f"{stem}.png", title=f"{title}, protocol {protocol}")


def run_evaluation(run: EvaluationRun) -> int:
    """Score (or merge) and report as `run` says; returns the exit status (0)."""
    if run.merge and run.plot:
        raise EvaluationError("--plot needs the curves of a scoring run; JSON files (--merge) hold none")
    published = load_published(run.compare_published) if run.compare_published else None
    table = read_results(run.merge) if run.merge else _score(run)
    print(format_table(table, run.table_format, per_video=run.per_video, caption=True))
    if published is not None:
        print()
        print(compare_published(table, published))
    if run.json:
        write_json(table, run.json, per_video=run.per_video)
    if run.csv:
        write_csv(table, run.csv, per_video=run.per_video)
    if run.plot:
        _plot(table, run.plot)
    return 0
