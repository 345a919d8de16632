"""Scoring saliency maps: PySODMetrics-based metrics, evaluation protocols, pairing maps with
ground truth, reading images, parallel scoring, tables, reports and published scores. Used by
evaluate.py, inference.py --evaluate and the training loop's validation.

The names below load their module when first used: inference imports this package's 8-bit
rule (`maps`) at every start, and PySODMetrics imports scikit-learn, which a run of
inference.py that scores nothing should not wait for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from libs.runtime.lazy import lazy_exports

# name -> the module of this package that defines it
_SOURCES = {
    "EvaluationError": "errors",
    **dict.fromkeys(("METRIC_NAMES", "PAPER_METRICS", "VALIDATION_METRICS", "SaliencyMetrics"), "metrics"),
    **dict.fromkeys(("GroundTruthFrame", "Pairing", "list_ground_truth", "pair_folders", "pair_results"),
                    "pairing"),
    **dict.fromkeys(("read_ground_truth", "read_prediction"), "reading"),
    **dict.fromkeys(("dataset_keys", "method_names", "plot_curves", "write_csv", "write_json"), "reports"),
    **dict.fromkeys(("format_table", "latex_table", "markdown_table"), "tables"),
    "read_results": "merge",
    **dict.fromkeys(("compare_published", "load_published"), "published"),
    **dict.fromkeys(("EvaluationRun", "run_evaluation"), "run"),
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
    "EvaluationRun",
    "compare_published",
    "format_table",
    "latex_table",
    "load_published",
    "pair_folders",
    "read_results",
    "run_evaluation",
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
    from .merge import read_results
    from .metrics import METRIC_NAMES, PAPER_METRICS, VALIDATION_METRICS, SaliencyMetrics
    from .pairing import GroundTruthFrame, Pairing, list_ground_truth, pair_folders, pair_results
    from .published import compare_published, load_published
    from .reading import read_ground_truth, read_prediction
    from .reports import dataset_keys, method_names, plot_curves, write_csv, write_json
    from .run import EvaluationRun, run_evaluation
    from .scoring import COUNT_KEYS, describe_counts, evaluate_pairing, evaluate_results
    from .tables import format_table, latex_table, markdown_table
