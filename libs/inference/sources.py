"""Where inference clips come from: a dataset split, a folder of frames, or a video file.

Every source yields clips: lists of frame dicts with `image` (normalised [3, size, size]),
`dataset` (the output folder's name), `image_id` (the output path below it, without
`.png`), and the frame's original `height` and `width`; with `with_original`, also
`original` (the frame as uint8 [H, W, 3], for overlay panels). Decoding and resizing run
in DataLoader workers; `collate_clips` batches clips without touching the metadata.

Clips follow the release's inference sampling (`libs.datasets.sampling.clip_windows`):
consecutive windows of clip_len frames, the last one aligned to the end of the video, a
video shorter than a clip padded with its last frame (a clip longer than both the video and
the usual 4 frames is refused: `libs.runtime.limits.check_clip_length`). Each frame's file is written from
the last clip that holds it, as the release's loop did.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, IterableDataset, get_worker_info

from libs.datasets import ImageDataset, VideoClipDataset, apply_transform, read_image
from libs.datasets.sampling import clip_windows
from libs.runtime.errors import UserError
from libs.runtime.limits import check_clip_length

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
Frame = dict[str, Any]


def read_original(path: str | Path) -> np.ndarray:
    """A frame file as RGB uint8 [H, W, 3]."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class ClipSource(Dataset):
    """A map-style dataset of clips whose frame ids are known before any decoding."""

    name: str

    def clip_ids(self) -> list[list[str]]:
        """The `image_id`s of every clip, in order."""
        raise NotImplementedError


class DatasetClips(ClipSource):
    """Clips of a benchmark split: a VideoClipDataset, or an ImageDataset as one-frame clips."""

    def __init__(self, dataset: Dataset, with_original: bool = False) -> None:
        if isinstance(dataset, ConcatDataset):
            raise UserError("inference runs on one dataset split at a time")
        if not isinstance(dataset, (VideoClipDataset, ImageDataset)):
            raise UserError(f"cannot run inference over a {type(dataset).__name__}")
        self.dataset = dataset
        self.name = dataset.name
        self.with_original = with_original
        self.single = isinstance(dataset, ImageDataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def clip_ids(self) -> list[list[str]]:
        if self.single:
            return [[image_id] for image_id in self.dataset.image_ids()]
        return self.dataset.clip_image_ids()

    def _paths(self, index: int) -> list[str]:
        if self.single:
            return [self.dataset.files[index]["image_path"]]
        return [frame["image_path"] for frame in self.dataset.clip_frames(index)]

    def __getitem__(self, index: int) -> list[Frame]:
        items = self.dataset[index]
        clip = [items] if self.single else list(items)
        clip = [{k: v for k, v in frame.items() if k != "label"} for frame in clip]
        if self.with_original:
            for frame, path in zip(clip, self._paths(index)):
                frame["original"] = read_original(path)
        return clip


def list_frames(folder: str | Path) -> list[Path]:
    """The image files of a folder, sorted by name."""
    folder = Path(folder)
    frames = sorted(p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not frames:
        raise UserError(f"--input {folder}: no frames ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return frames


class FolderClips(ClipSource):
    """Every frame of a folder of images, in clips; outputs `<name>/<frame stem>.png`."""

    def __init__(self, folder: str | Path, transform: Any, clip_len: int = 4, name: str | None = None,
                 with_original: bool = False) -> None:
        self.folder = Path(folder)
        self.frames = list_frames(self.folder)
        stems = [p.stem for p in self.frames]
        if len(set(stems)) != len(stems):
            raise UserError(f"--input {self.folder}: two frames share a name apart from the extension")
        self.name = name or self.folder.resolve().name
        self.transform = transform
        check_clip_length(clip_len, len(self.frames), f"--input {self.folder}")
        self.windows = clip_windows(list(range(len(self.frames))), clip_len, training=False)
        self.with_original = with_original

    def __len__(self) -> int:
        return len(self.windows)

    def clip_ids(self) -> list[list[str]]:
        return [[self.frames[i].stem for i in window] for window in self.windows]

    def __getitem__(self, index: int) -> list[Frame]:
        clip = []
        paths = [self.frames[i] for i in self.windows[index]]
        images = [read_image(path) for path in paths]
        samples = apply_transform(self.transform, [{"image": image} for image in images])
        for path, image, sample in zip(paths, images, samples):
            frame = {"image": sample["image"].as_subclass(torch.Tensor), "dataset": self.name,
                     "image_id": path.stem, "height": int(image.shape[-2]), "width": int(image.shape[-1])}
            if self.with_original:
                frame["original"] = image.permute(1, 2, 0).numpy()
            clip.append(frame)
        return clip


def check_frame_count(path: Path, decoded: int, declared: int) -> None:
    """Refuse a video that yielded fewer frames than its container declares (`declared` <= 0:
    not declared, nothing to check).

    A truncated or damaged file decodes until the damage and then reads as ended, which would
    otherwise look like a short video: its maps would be written and the run would end with
    exit 0. This is an error rather than a warning because a warning scrolls by in batch jobs
    and a missing tail of maps then passes for a complete result. Containers that estimate
    their count from the duration may overstate it by a frame or so, hence the tolerance of
    `frame_count_tolerance(declared)`; decoding more frames than declared is no error.
    """
    if declared > 0 and declared - decoded > frame_count_tolerance(declared):
        raise UserError(f"--input {path}: the video declares {declared} frames but only {decoded} could be "
                        f"decoded (a truncated or damaged file); maps were written for the {decoded} decoded "
                        "frames")


def frame_count_tolerance(declared: int) -> int:
    """How many declared frames a video may lack without an error: 1, or 1% of a long video."""
    return max(1, declared // 100)


class VideoFileClips(IterableDataset):
    """Every frame of a video file (decoded with OpenCV, in order), in clips.

    Frames are named by their index (`00000`, `00001`, ...); outputs `<name>/<index>.png`.
    Decoding is sequential, so use at most one DataLoader worker. After the last clip, the
    number of frames decoded is checked against the number the container declares
    (`check_frame_count`).
    """

    def __init__(self, path: str | Path, transform: Any, clip_len: int = 4, name: str | None = None,
                 with_original: bool = False) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self.transform = transform
        self.clip_len = clip_len
        self.with_original = with_original
        import cv2

        capture = self._open()
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, _ = capture.read()
        capture.release()
        if not ok:
            raise UserError(f"--input {self.path}: no frame could be decoded from this video file")
        check_clip_length(clip_len, declared, f"--input {self.path}")

    def _open(self) -> Any:
        # FFmpeg's own messages about damaged packets would add lines to stderr; the frame count
        # check reports a damaged file in one line (set before OpenCV starts its FFmpeg backend)
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise UserError(f"--input {self.path}: OpenCV cannot open this video file")
        return capture

    def _frame(self, index: int, bgr: np.ndarray) -> Frame:
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        image = torch.from_numpy(rgb).permute(2, 0, 1)
        sample = apply_transform(self.transform, [{"image": image}])[0]
        frame = {"image": sample["image"].as_subclass(torch.Tensor), "dataset": self.name,
                 "image_id": f"{index:05d}", "height": int(rgb.shape[0]), "width": int(rgb.shape[1])}
        if self.with_original:
            frame["original"] = rgb
        return frame

    def __iter__(self) -> Iterator[list[Frame]]:
        info = get_worker_info()
        if info is not None and info.id > 0:
            return
        import cv2

        capture = self._open()
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        recent: deque[Frame] = deque(maxlen=self.clip_len)
        fresh = 0
        count = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                recent.append(self._frame(count, bgr))
                count += 1
                fresh += 1
                if fresh == self.clip_len:
                    yield list(recent)
                    fresh = 0
        finally:
            capture.release()
        if fresh:
            clip = list(recent)
            yield clip + [clip[-1]] * (self.clip_len - len(clip))
        check_frame_count(self.path, count, declared)


def collate_clips(batch: list[list[Frame]]) -> dict[str, Any]:
    """Clips -> {"images": [B, T, 3, H, W], "frames": per clip, per frame, the metadata dicts}."""
    images = torch.stack([torch.stack([frame["image"] for frame in clip]) for clip in batch])
    frames = [[{k: v for k, v in frame.items() if k != "image"} for frame in clip] for clip in batch]
    return {"images": images, "frames": frames}
