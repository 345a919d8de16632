"""Scoring saliency maps: PySODMetrics-based metrics, pairing maps with ground truth, reading
images, parallel scoring and reports. Used by evaluate.py, inference.py --evaluate and the
training loop's validation."""
from .errors import EvaluationError
from .metrics import METRIC_NAMES, PAPER_METRICS, VALIDATION_METRICS, SaliencyMetrics
from .pairing import GroundTruthFrame, Pairing, list_ground_truth, pair_results
from .reading import read_ground_truth, read_prediction
from .reports import dataset_keys, markdown_table, method_names, plot_curves, write_csv, write_json
from .scoring import COUNT_KEYS, describe_counts, evaluate_pairing, evaluate_results

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
