"""Datasets of the release: config entries, image/frame/clip datasets, transforms,
pseudo-label switching and the synthetic VSOD generator.

Names are imported on first use, so that light entry points (the config reader, the
synthetic-data command line) start without loading torch.
"""
from __future__ import annotations

from libs.runtime.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_CONFIG": "config",
    "DatasetConfigError": "config",
    "DatasetFileError": "config",
    "DatasetReadError": "config",
    "DatasetSpec": "config",
    "get_spec": "config",
    "load_dataset_config": "config",
    "SaliencyDataset": "base",
    "ImageDataset": "image_dataset",
    "VideoDataset": "video_dataset",
    "VideoImageDataset": "video_dataset",
    "VideoClipDataset": "video_dataset",
    "get_datasets": "factory",
    "use_pseudo_labels": "pseudo_labels",
    "read_image": "reading",
    "read_label": "reading",
    "read_label_array": "reading",
    "interpret_label": "labels",
    "SoftMask": "augment",
    "apply_transform": "transforms",
    "augmentation": "transforms",
    "get_transforms": "transforms",
    "resize_normalise": "transforms",
    "generate_synthetic": "synthetic",
    "names_and_splits": "splits",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
