"""Published scores beside the user's: config/published_scores.yaml and the comparison.

Each entry of the file names where its numbers were printed (`source`), the convention
behind them (`protocol`), and scores keyed by `<dataset>/<split>`. A score "matches" when the
user's value is within rounding of the published three decimals (|yours - published| <=
0.0005); otherwise the difference is printed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from libs.runtime.errors import one_line

from .errors import EvaluationError
from .metrics import METRIC_NAMES
from .tables import HEADERS, TABLE_METRICS, fmt

DEFAULT_PUBLISHED = Path(__file__).resolve().parents[2] / "config" / "published_scores.yaml"
TOLERANCE = 0.0005  # half a unit of the third decimal, with which scores are published


@dataclass(frozen=True)
class PublishedScores:
    """One source's scores: {"<dataset>/<split>": {metric: value}}."""

    name: str
    source: str
    protocol: str
    scores: dict[str, dict[str, float]]
    note: str = ""


def load_published(path: str | Path = DEFAULT_PUBLISHED) -> list[PublishedScores]:
    """The entries of a published-scores file, checked key by key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise EvaluationError(f"cannot read published scores {path}: {err.strerror}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise EvaluationError(f"{path}: not a YAML file of published scores ({one_line(err)})") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: expected {{name: {{source, protocol, scores}}}}")
    entries = []
    for name, entry in data.items():
        where = f"{path}: {name}"
        if not isinstance(entry, dict) or not isinstance(entry.get("scores"), dict):
            raise EvaluationError(f"{where}: expected source, protocol and scores")
        for key in ("source", "protocol"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise EvaluationError(f"{where}: {key} must be text")
        scores: dict[str, dict[str, float]] = {}
        for dataset, values in entry["scores"].items():
            if not isinstance(values, dict) or "/" not in str(dataset):
                raise EvaluationError(
                    f"{where}: scores.{dataset}: expected <dataset>/<split>: {{metric: value}}"
                )
            for metric, value in values.items():
                if metric not in METRIC_NAMES or not isinstance(value, (int, float)):
                    raise EvaluationError(
                        f"{where}: scores.{dataset}.{metric}: expected one of {', '.join(METRIC_NAMES)} "
                        "with a number"
                    )
            scores[str(dataset)] = {m: float(v) for m, v in values.items()}
        entries.append(PublishedScores(str(name), entry["source"].strip(), entry["protocol"], scores,
                                       str(entry.get("note", "")).strip()))
    return entries


def verdict(yours: float, published: float) -> str:
    """"matches" within rounding of the published value, else the signed difference."""
    difference = yours - published
    if abs(difference) <= TOLERANCE + 1e-12:
        return "matches"
    return f"differs by {difference:+.3f}"


def compare_published(table: dict[str, dict[str, dict]], published: list[PublishedScores]) -> str:
    """A Markdown comparison of every scored (method, dataset) that a published entry covers,
    one row per metric, then the sources; a line saying so when none is covered."""
    lines = [
        "| dataset | method | yours (protocol) | published in | metric | yours | published | difference |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    used: list[PublishedScores] = []
    for method, by_dataset in table.items():
        for result in by_dataset.values():
            key = f"{result['dataset']}/{result['split']}"
            protocol = (result.get("protocol") or {}).get("name", "?")
            for entry in published:
                scores = entry.scores.get(key)
                if not scores:
                    continue
                used += [entry] if entry not in used else []
                for metric in (m for m in TABLE_METRICS if m in scores):
                    yours = result.get(metric)
                    said = "not scored" if yours is None else verdict(yours, scores[metric])
                    lines.append(
                        f"| {key} | {method} | {protocol} | {entry.name} ({entry.protocol}) | "
                        f"{HEADERS[metric]} | {fmt(yours)} | {fmt(scores[metric])} | {said} |"
                    )
    if not used:
        keys = sorted({k for e in published for k in e.scores})
        return f"published scores: none for these datasets (published: {', '.join(keys)})"
    lines.append("")
    for entry in used:
        lines.append(f"{entry.name}: {entry.source}" + (f" {entry.note}" if entry.note else ""))
    return "\n".join(lines)
