"""Video saliency datasets: per-frame (`VideoImageDataset`) and per-clip (`VideoClipDataset`).

The frames and clips are the release's (see `sampling` for the rules):

- `VideoImageDataset`: the used annotated frames of every video of the split, in the
  split's video order (while training, every `label_interval`-th label; otherwise all).
- `VideoClipDataset`: clips over each video's frame list, optionally with
  `frame_between_label_num` unannotated frames between the annotated ones (pseudo-label
  generation) and with random reversal while training (`random_reverse_clip`, drawn
  with Python's `random` like the release).

Beyond the release: at inference (training=False) a video without any label file uses
every frame (the release would use none, or fail), and `all_frames=True` asks for every
frame of every video at inference.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from .base import FrameListDataset, SaliencyDataset, Transform
from .config import DatasetConfigError, DatasetFileError, DatasetSpec
from .sampling import clip_windows, frame_list, kept_label_positions, unlabelled_spacing


def _names(folder: Path, ext: str) -> list[str]:
    """Names (without `ext`) of the files in `folder` ending with `ext`, sorted by file name.

    Hidden files are skipped, like a shell glob would.
    """
    with os.scandir(folder) as entries:
        found = sorted(e.name for e in entries if e.name.endswith(ext) and not e.name.startswith(".")
                       and e.is_file())
    return [name[: len(name) - len(ext)] for name in found]


class VideoDataset(SaliencyDataset):
    """Base class of the video datasets: scans each video's frames and labels."""

    def __init__(self, spec: DatasetSpec, root: str | Path, split: str, training: bool,
                 transforms: Transform | None = None, label_interval: int = 1,
                 frame_between_label_num: int = 0, all_frames: bool = False) -> None:
        if not spec.is_video:
            raise DatasetConfigError(f"dataset {spec.name!r} is an image dataset, not a video dataset")
        super().__init__(spec, root, split, training, transforms)
        if label_interval < 1:
            raise ValueError(f"label_interval must be at least 1, got {label_interval}")
        if all_frames and self.training:
            raise ValueError("all_frames is for inference only: training needs annotated frames")
        self.default_label_interval = int(spec.default_label_interval or 1)
        self.label_interval = int(label_interval)
        self.frame_between_label_num = int(frame_between_label_num)
        unlabelled_spacing(self.label_interval, self.default_label_interval, self.frame_between_label_num)
        self.all_frames = bool(all_frames)
        self.label_root = spec.label_folder(self.root)
        self.label_subdir = spec.label_subdir
        self.videos = spec.videos(split, self.root)

    def _label_folder(self, video: str) -> Path:
        folder = self.label_root / video
        return folder / self.label_subdir if self.label_subdir else folder

    def _scan(self, video: str) -> tuple[list[dict[str, str]], list[int], bool]:
        """One video: (frame records, indices of its used annotated frames, has labels).

        Only the used annotated frames carry `label_path`. Without labels at inference
        the indices are all frames.
        """
        spec = self.spec
        image_folder = spec.video_image_folder(self.root, video)
        if not image_folder.is_dir():
            raise DatasetFileError(
                f"video folder not found: {image_folder} (video {video!r} of dataset {self.name!r}, "
                f"split {self.split!r})"
            )
        frame_ids = _names(image_folder, spec.image_ext)
        if not frame_ids:
            raise DatasetFileError(f"no frames (*{spec.image_ext}) in video folder {image_folder}")
        label_folder = self._label_folder(video)
        label_ids = _names(label_folder, spec.label_ext) if label_folder.is_dir() else []
        frames = [{"image_id": f"{video}/{fid}", "image_path": str(image_folder / f"{fid}{spec.image_ext}")}
                  for fid in frame_ids]
        if not label_ids:
            if self.training:
                raise DatasetFileError(
                    f"no labels (*{spec.label_ext}) for video {video!r} in {label_folder}: "
                    "training and validation need annotated frames"
                )
            return frames, list(range(len(frames))), False
        position = {fid: i for i, fid in enumerate(frame_ids)}
        used: list[int] = []
        for k in kept_label_positions(len(label_ids), self.label_interval, self.training):
            label_id = label_ids[k]
            if label_id not in position:
                raise DatasetConfigError(
                    f"label {label_folder / (label_id + spec.label_ext)} has no frame "
                    f"{label_id}{spec.image_ext} in {image_folder}"
                )
            index = position[label_id]
            frames[index]["label_path"] = str(label_folder / f"{label_id}{spec.label_ext}")
            used.append(index)
        if self.all_frames:
            return frames, list(range(len(frames))), True
        return frames, used, True

    def _labels_from(self, folder: str | Path) -> None:
        """Take every label from `folder/<video>/<frame><label_ext>` (a pseudo-label folder)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetFileError(f"label folder not found: {folder} (dataset {self.name!r})")
        self.label_root = folder
        self.label_subdir = ""
        self.label_interval = 1


class VideoImageDataset(VideoDataset, FrameListDataset):
    """One item per used annotated frame (dict), video after video."""

    def __init__(self, spec: DatasetSpec, root: str | Path, split: str, training: bool,
                 transforms: Transform | None = None, label_interval: int = 1,
                 frame_between_label_num: int = 0, all_frames: bool = False) -> None:
        super().__init__(spec, root, split, training, transforms, label_interval,
                         frame_between_label_num, all_frames)
        self.files: list[dict[str, str]] = []
        self._build()

    def _build(self) -> None:
        self.files = []
        for video in self.videos:
            frames, used, _ = self._scan(video)
            self.files.extend(frames[i] for i in used)

    def use_label_folder(self, folder: str | Path, clip_len: int | None = None) -> None:
        """Read labels from `folder/<video>/<frame><label_ext>` instead, every one used."""
        self._labels_from(folder)
        self._build()


class VideoClipDataset(VideoDataset):
    """One item per clip: a list of `clip_len` frame dicts.

    `files[v]` holds the frame records of the v-th video of the split and `clips[i]` is
    `{"video_index": v, "clip_frame_index": [frame indices]}` (the release's structure).
    """

    def __init__(self, spec: DatasetSpec, root: str | Path, split: str, training: bool,
                 transforms: Transform | None = None, label_interval: int = 1,
                 frame_between_label_num: int = 0, clip_len: int = 4,
                 random_reverse_clip: bool = False, all_frames: bool = False) -> None:
        super().__init__(spec, root, split, training, transforms, label_interval,
                         frame_between_label_num, all_frames)
        if clip_len < 1:
            raise ValueError(f"clip_len must be at least 1, got {clip_len}")
        self.random_reverse_clip = bool(random_reverse_clip)
        # with unannotated frames inserted, a clip spans one gap: annotated, m frames, annotated
        m = self.frame_between_label_num
        self.clip_len = m + 2 if m > 0 else int(clip_len)
        self.files: list[list[dict[str, str]]] = []
        self.clips: list[dict[str, Any]] = []
        self._build()

    def _build(self) -> None:
        self.files, self.clips = [], []
        spacing = unlabelled_spacing(self.label_interval, self.default_label_interval,
                                     self.frame_between_label_num)
        for video_index, video in enumerate(self.videos):
            frames, used, labelled = self._scan(video)
            if labelled and not self.all_frames:
                indices = frame_list(used, self.frame_between_label_num, spacing)
            else:
                indices = used
            if indices and max(indices) >= len(frames):
                raise DatasetConfigError(
                    f"video {video!r} of dataset {self.name!r}: frame_between_label_num="
                    f"{self.frame_between_label_num} places frame {max(indices)} after its last frame "
                    f"({len(frames) - 1}); its labels are not every "
                    f"{self.label_interval * self.default_label_interval} frames"
                )
            self.files.append(frames)
            self.clips.extend({"video_index": video_index, "clip_frame_index": window}
                              for window in clip_windows(indices, self.clip_len, self.training))

    def use_label_folder(self, folder: str | Path, clip_len: int | None = None) -> None:
        """Read labels from `folder/<video>/<frame><label_ext>` instead, every one used,
        no unannotated frames inserted, clips of `clip_len` (default: unchanged)."""
        self._labels_from(folder)
        self.frame_between_label_num = 0
        if clip_len is not None:
            if clip_len < 1:
                raise ValueError(f"clip_len must be at least 1, got {clip_len}")
            self.clip_len = int(clip_len)
        self._build()

    def __len__(self) -> int:
        return len(self.clips)

    def clip_frames(self, index: int) -> list[dict[str, str]]:
        """The frame records of clip `index`, in time order (before any random reversal)."""
        clip = self.clips[index]
        frames = self.files[clip["video_index"]]
        return [frames[i] for i in clip["clip_frame_index"]]

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        frames = self.clip_frames(index)
        if self.random_reverse_clip and random.randint(0, 1):
            frames = frames[::-1]
        return self._items(frames)

    def clip_image_ids(self) -> list[list[str]]:
        """The `<video>/<frame>` ids of every clip, in time order."""
        return [[frame["image_id"] for frame in self.clip_frames(i)] for i in range(len(self.clips))]
