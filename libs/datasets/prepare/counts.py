"""The figures datasets' authors publish (config/dataset_counts.yaml), read and checked."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import DatasetConfigError

DEFAULT_COUNTS = Path(__file__).resolve().parents[3] / "config" / "dataset_counts.yaml"
_FIGURES = ("videos", "annotated", "frames")


@dataclass(frozen=True)
class Published:
    """Figures published by a dataset's authors: videos (or images) per split, frames, labels.

    Keys are the split names of config/datasets.yaml; "*" is the whole dataset.
    """

    videos: dict[str, int]
    annotated: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    source: str = ""


def load_counts(path: str | Path = DEFAULT_COUNTS) -> dict[str, Published]:
    """{dataset: Published} from the counts file; a malformed entry is a DatasetConfigError naming it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DatasetConfigError(f"cannot read published dataset counts {path}: {err.strerror}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise DatasetConfigError(f"{path}: not a YAML file of dataset counts ({err})") from None
    if not isinstance(data, dict):
        raise DatasetConfigError(f"{path}: expected {{dataset: {{source, videos, annotated, frames}}}}")
    counts: dict[str, Published] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
            raise DatasetConfigError(f"{path}: {name}: expected source and figures")
        figures: dict[str, dict[str, int]] = {}
        for key in _FIGURES:
            value = entry.get(key, {})
            if not isinstance(value, dict) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value.values()
            ):
                raise DatasetConfigError(f"{path}: {name}.{key}: expected {{split: count}} with counts >= 0")
            figures[key] = {str(split): n for split, n in value.items()}
        counts[str(name)] = Published(**figures, source=" ".join(entry["source"].split()))
    return counts
