"""Scoring saliency maps: PySODMetrics-based metrics, pairing maps with ground truth, reading
images, parallel scoring and reports. Used by evaluate.py, inference.py --evaluate and the
training loop's validation.

The names below load their module when first used: inference imports this package's 8-bit
rule (`maps`) at every start, and PySODMetrics, which imports scikit-learn, would add about a
second to each start of inference.py that scores nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from libs.runtime.lazy import lazy_exports

# name -> the module of this package that defines it
_SOURCES = {
    "EvaluationError": "errors",
    **dict.fromkeys(("METRIC_NAMES", "PAPER_METRICS", "VALIDATION_METRICS", "SaliencyMetrics"), "metrics"),
    **dict.fromkeys(("GroundTruthFrame", "Pairing", "list_ground_truth", "pair_results"), "pairing"),
    **dict.fromkeys(("read_ground_truth", "read_prediction"), "reading"),
    **dict.fromkeys(("dataset_keys", "markdown_table", "method_names", "plot_curves", "write_csv",
                     "write_json"), "reports"),
    **dict.fromkeys(("COUNT_KEYS", "describe_counts", "evaluate_pairing", "evaluate_results"), "scoring"),
}

__all__ = [
    "COUNT_KEYS",
    "METRIC_NAMES",
    "PAPER_METRICS",
    "VALIDATION_METRICS",
    "EvaluationError",
    "GroundTruthFrame",
    "Pairing",
    "SaliencyMetrics",
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


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)


if TYPE_CHECKING:
    from .errors import EvaluationError
    from .metrics import METRIC_NAMES, PAPER_METRICS, VALIDATION_METRICS, SaliencyMetrics
    from .pairing import GroundTruthFrame, Pairing, list_ground_truth, pair_results
    from .reading import read_ground_truth, read_prediction
    from .reports import dataset_keys, markdown_table, method_names, plot_curves, write_csv, write_json
    from .scoring import COUNT_KEYS, describe_counts, evaluate_pairing, evaluate_results
