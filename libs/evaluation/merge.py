"""Reading the JSON of separate `evaluate.py --json` runs back into one table, without scoring.

Each file holds `{method: {dataset key: entry}}` (`reports.write_json`). The files' methods
and datasets are combined in the order given; the same method scored on the same dataset in
two files is an error naming both, as it would otherwise be unclear which number a table shows.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import EvaluationError
from .metrics import METRIC_NAMES
from .protocol import Protocol


def _entry(entry: object, key: str, where: str) -> dict:
    """One dataset entry checked and completed into the shape scoring returns."""
    if not isinstance(entry, dict) or not isinstance(entry.get("frames"), int):
        raise EvaluationError(f"{where}: expected an object with \"frames\" and scores, as --json writes")
    for metric in METRIC_NAMES:
        value = entry.get(metric)
        if value is not None and not isinstance(value, (int, float)):
            raise EvaluationError(f"{where}: {metric} must be a number or null, got {value!r}")
    dataset, _, split = key.partition("/")
    result = {m: entry[m] for m in METRIC_NAMES if m in entry}
    result.update(
        frames=entry["frames"],
        dataset=str(entry.get("dataset", dataset)),
        split=str(entry.get("split", split)),
        videos=entry.get("videos") or {},
    )
    if entry.get("protocol") is not None:
        try:
            Protocol(**entry["protocol"])
        except (TypeError, ValueError) as err:
            raise EvaluationError(f"{where}: \"protocol\" is not one evaluate.py writes ({err})") from None
        result["protocol"] = entry["protocol"]
    return result


def read_results(paths: list[str | Path]) -> dict[str, dict[str, dict]]:
    """`{method: {dataset key: result}}` from JSON files written by `evaluate.py --json`."""
    table: dict[str, dict[str, dict]] = {}
    origin: dict[tuple[str, str], Path] = {}
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise EvaluationError(f"cannot read {path} (--merge): {err.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise EvaluationError(f"{path} is not JSON (--merge): {err}") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise EvaluationError(
                f"{path}: expected {{method: {{dataset: scores}}}} as --json writes (--merge)"
            )
        for method, by_dataset in data.items():
            for key, entry in by_dataset.items():
                if (method, key) in origin:
                    raise EvaluationError(
                        f"{method} on {key} is in both {origin[method, key]} and {path} (--merge): keep one"
                    )
                origin[method, key] = path
                table.setdefault(method, {})[key] = _entry(entry, key, f"{path}: {method}/{key}")
    if not table:
        raise EvaluationError(f"no scores in {', '.join(map(str, paths))} (--merge)")
    return table
