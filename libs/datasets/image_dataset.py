"""Image saliency datasets (MSRA-B, HKU-IS): one item per id of `<split>_id.txt`."""
from __future__ import annotations

from pathlib import Path

from .base import FrameListDataset, Transform
from .config import DatasetConfigError, DatasetFileError, DatasetSpec


class ImageDataset(FrameListDataset):
    """Images listed in `<root>/<name>/<split_dir>/<split>_id.txt`, with labels when training."""

    def __init__(self, spec: DatasetSpec, root: str | Path, split: str, training: bool,
                 transforms: Transform | None = None) -> None:
        if spec.is_video:
            raise DatasetConfigError(f"dataset {spec.name!r} is a video dataset, not an image dataset")
        super().__init__(spec, root, split, training, transforms)
        image_folder = spec.image_folder(self.root)
        label_folder = spec.label_folder(self.root)
        self.files: list[dict[str, str]] = []
        for image_id in spec.image_ids(self.root, split):
            image_path = image_folder / f"{image_id}{spec.image_ext}"
            if not image_path.is_file():
                raise DatasetFileError(
                    f"image not found: {image_path} (dataset {spec.name!r}, split {split!r})"
                )
            frame = {"image_id": image_id, "image_path": str(image_path)}
            if self.training:
                label_path = label_folder / f"{image_id}{spec.label_ext}"
                if not label_path.is_file():
                    raise DatasetFileError(
                        f"label not found: {label_path} (training image {image_path} needs one)"
                    )
                frame["label_path"] = str(label_path)
            self.files.append(frame)
