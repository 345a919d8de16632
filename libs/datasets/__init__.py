"""Datasets of the release: config entries, image/frame/clip datasets, transforms,
pseudo-label switching and the synthetic VSOD generator.

Names are imported on first use, so that light entry points (the config reader, the
synthetic-data command line) start without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

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
    "SoftMask": "transforms",
    "apply_transform": "transforms",
    "augmentation": "transforms",
    "get_transforms": "transforms",
    "resize_normalise": "transforms",
    "generate_synthetic": "synthetic",
    "names_and_splits": "splits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
