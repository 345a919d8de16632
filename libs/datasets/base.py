"""What image, frame and clip datasets share: checking the root, loading one frame
record into a sample, transforming it and building the item dict.

A frame record is a dict with `image_id`, `image_path` and, for a frame whose label is
used, `label_path` (the release's per-frame information, so lists can be compared).
An item is a dict with `dataset`, `image_id`, the ORIGINAL `height` and `width` of the
frame (the release stored them swapped), `image` (float [3, H, W], normalised) and, when
the frame has a label, `label` (float [1, H, W] in [0, 1]). Keys are never None, so the
default collate batches items.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .config import DatasetFileError, DatasetSpec
from .reading import check_same_size, read_image, read_label
from .transforms import apply_transform, resize_normalise

Transform = Callable[[Any], Any]


class SaliencyDataset(Dataset):
    """Base class: one dataset entry, one split, one root."""

    def __init__(self, spec: DatasetSpec, root: str | Path, split: str, training: bool,
                 transforms: Transform | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.split = split
        self.training = bool(training)
        self.transforms = transforms if transforms is not None else resize_normalise(None)
        root = Path(root)
        if not root.is_dir():
            raise DatasetFileError(
                f"dataset root not found: {root} (expected a folder holding <dataset>/ folders)"
            )
        if not (root / spec.name).is_dir():
            raise DatasetFileError(
                f"dataset folder not found: {root / spec.name} (dataset {spec.name!r} under root {root})"
            )
        self.root = root

    def _load(self, frame: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Read one frame record: (sample for the transforms, item metadata)."""
        image_path = Path(frame["image_path"])
        image = read_image(image_path)
        height, width = (int(v) for v in image.shape[-2:])
        meta = {"dataset": self.name, "image_id": frame["image_id"], "height": height, "width": width}
        sample: dict[str, Any] = {"image": image}
        if "label_path" in frame:
            label_path = Path(frame["label_path"])
            label = read_label(label_path, self.name)
            check_same_size(image, label, image_path, label_path)
            sample["label"] = label
        return sample, meta

    def _items(self, frames: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Load, transform (jointly, for a clip) and package a list of frame records."""
        loaded = [self._load(frame) for frame in frames]
        samples = apply_transform(self.transforms, [sample for sample, _ in loaded])
        items = []
        for (_, meta), sample in zip(loaded, samples):
            item = dict(meta)
            item["image"] = _plain(sample["image"])
            if "label" in sample:
                item["label"] = _plain(sample["label"])
            items.append(item)
        return items


def _plain(value: Any) -> Any:
    return value.as_subclass(torch.Tensor) if isinstance(value, torch.Tensor) else value


class FrameListDataset(SaliencyDataset):
    """A dataset whose items are single frames: `self.files`, a list of frame records."""

    files: list[dict[str, str]]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._items([self.files[index]])[0]

    def image_ids(self) -> list[str]:
        """The ids of the items, in order (`<video>/<frame>` for video frames)."""
        return [frame["image_id"] for frame in self.files]
