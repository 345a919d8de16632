"""Inference: a predictor over clips, clip sources (benchmark split, frame folder, video
file), atomic background PNG writing, and the runs inference.py and the demo use.

See README.md, "Inference".
"""
from .predictor import Predictor, checkpoint_kind, load_model
from .runner import (
    InferenceOptions,
    InferenceSummary,
    evaluate_split,
    infer_input,
    infer_split,
    output_path,
    run_clips,
)
from .sources import ClipSource, DatasetClips, FolderClips, VideoFileClips, collate_clips
from .writer import SaliencyWriter, resize_to_original, saliency_to_uint8, save_atomic

__all__ = [
    "ClipSource",
    "DatasetClips",
    "FolderClips",
    "InferenceOptions",
    "InferenceSummary",
    "Predictor",
    "SaliencyWriter",
    "VideoFileClips",
    "checkpoint_kind",
    "collate_clips",
    "evaluate_split",
    "infer_input",
    "infer_split",
    "load_model",
    "output_path",
    "resize_to_original",
    "run_clips",
    "saliency_to_uint8",
    "save_atomic",
]
