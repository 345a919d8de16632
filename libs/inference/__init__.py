"""Inference: a predictor over clips, clip sources (benchmark split, frame folder, video
file), atomic background PNG writing, the runs inference.py and the demo use, pseudo-label
generation (generate_pseudo_labels.py), and the inference speed-ups a run's plan asks for
(BatchNorm folding, channels-last, autocast, torch.compile; `libs.runtime.plan`).

See README.md, "Inference".
"""
from .predictor import Predictor
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
    "collate_clips",
    "evaluate_split",
    "infer_input",
    "infer_split",
    "output_path",
    "resize_to_original",
    "run_clips",
    "saliency_to_uint8",
    "save_atomic",
]
