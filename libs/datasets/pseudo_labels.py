"""Training on pseudo-labels: the release's `--pseudo-label-folder`."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from .config import DatasetConfigError, DatasetFileError
from .video_dataset import VideoDataset


def use_pseudo_labels(dataset: Dataset, folder: str | Path, clip_len: int) -> Dataset:
    """Switch a video training dataset (or a ConcatDataset of them) to pseudo-labels.

    Labels then come from `folder/<dataset name>/<video>/<frame><label_ext>` (what
    generate_pseudo_labels.py writes under `<pseudo-label-folder>/<m>_<l>/`): every label
    found is used (label_interval 1), no unannotated frames are inserted, and clips have
    `clip_len` frames, built as in training. Returns the same dataset object, updated.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFileError(f"pseudo-label folder not found: {folder}")
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    for part in parts:
        if not isinstance(part, VideoDataset):
            raise DatasetConfigError(
                f"pseudo-labels apply to video datasets only, not {type(part).__name__} "
                f"{getattr(part, 'name', '')!r}".rstrip()
            )
        part.use_label_folder(folder / part.name, clip_len=clip_len)
    if isinstance(dataset, ConcatDataset):
        dataset.cumulative_sizes = dataset.cumsum(dataset.datasets)
    return dataset
