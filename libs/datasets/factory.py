"""`get_datasets`: the release's entry point, building datasets from config entries."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from .base import Transform
from .config import DEFAULT_CONFIG, DatasetConfigError, DatasetSpec, get_spec, load_dataset_config
from .image_dataset import ImageDataset
from .video_dataset import VideoClipDataset, VideoImageDataset


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def get_datasets(name_list: str | Sequence[str], split_list: str | Sequence[str],
                 config_path: str | Path | dict[str, DatasetSpec] | None, root: str | Path, training: bool,
                 transforms: Transform | None, read_clip: bool = False, random_reverse_clip: bool = False,
                 label_interval: int = 1, frame_between_label_num: int = 0, clip_len: int = 4,
                 all_frames: bool = False) -> Dataset:
    """One dataset per (name, split) pair; a ConcatDataset when there are several.

    Image entries give `ImageDataset` (and are refused when `read_clip`: an image has no
    neighbouring frames); video entries give `VideoClipDataset` when `read_clip`, else
    `VideoImageDataset`. `training` is True for training and
    validation (labels required, label_interval applied, clips overlapping by one
    frame) and False for inference. `config_path` may also be an already loaded config
    (None: config/datasets.yaml). `all_frames` (not in the release): every frame of every
    video, at inference.
    """
    names = _as_list(name_list)
    splits = _as_list(split_list)
    if len(names) != len(splits):
        raise DatasetConfigError(
            f"got {len(names)} dataset name(s) {names} but {len(splits)} split(s) {splits}; "
            "give one split per dataset"
        )
    if not names:
        raise DatasetConfigError("no dataset names given")
    if isinstance(config_path, dict):
        config = config_path
    else:
        config = load_dataset_config(config_path or DEFAULT_CONFIG)
    datasets: list[Dataset] = []
    for name, split in zip(names, splits):
        spec = get_spec(config, name)
        if read_clip and not spec.is_video:
            raise DatasetConfigError(f"dataset {name!r} is an image dataset (it has no video_split): clips "
                                     "of frames are read from video datasets only")
        if not spec.is_video:
            datasets.append(ImageDataset(spec, root, split, training, transforms))
        elif read_clip:
            datasets.append(VideoClipDataset(
                spec, root, split, training, transforms, label_interval=label_interval,
                frame_between_label_num=frame_between_label_num, clip_len=clip_len,
                random_reverse_clip=random_reverse_clip, all_frames=all_frames))
        else:
            datasets.append(VideoImageDataset(
                spec, root, split, training, transforms, label_interval=label_interval,
                frame_between_label_num=frame_between_label_num, all_frames=all_frames))
    return datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)
