"""Pseudo-label jobs: which frames each clip generates or copies, this rank's share, and the
loop that writes them (atomically, skipping what exists, so an interrupted run resumes).

The frames come from the release's clip datasets with `frame_between_label_num` m: clips
[labelled, m unlabelled frames, labelled]. Every frame is given to the first clip that holds
it (neighbouring clips share their labelled ends; the release wrote those twice).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from libs.datasets.video_dataset import VideoClipDataset
from libs.runtime.files import write_atomic

from .label_predictors import LabelPredictor
from .runner import output_path
from .writer import resize_to_original, saliency_to_uint8, save_atomic

OUTPUT_EXT = ".png"


@dataclass
class ClipJob:
    """The frames one clip is responsible for: positions to generate and labels to copy."""

    part: int  # index of the VideoClipDataset among the datasets
    clip: int  # clip index in that dataset
    generate: list[tuple[int, Path]] = field(default_factory=list)  # (position in clip, output)
    copy: list[tuple[Path, Path]] = field(default_factory=list)  # (ground-truth label, output)


@dataclass
class Summary:
    """What a run did: frames in its share, written (generated + copied), skipped (already there)."""

    frames: int = 0
    written: int = 0
    skipped: int = 0
    generated: int = 0
    copied: int = 0

    def as_tensor(self) -> Tensor:
        return torch.tensor([self.frames, self.written, self.skipped, self.generated, self.copied])

    @classmethod
    def from_tensor(cls, values: Tensor) -> Summary:
        return cls(*(int(v) for v in values.tolist()))

    def line(self) -> str:
        return (f"{self.frames} frames: {self.written} written ({self.generated} generated, "
                f"{self.copied} ground truth copied), {self.skipped} skipped (already there)")


def clip_datasets(dataset: Dataset) -> list[VideoClipDataset]:
    """The VideoClipDatasets of a dataset or ConcatDataset (anything else is an error)."""
    parts = list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]
    for part in parts:
        if not isinstance(part, VideoClipDataset):
            raise TypeError(f"pseudo-labels are generated over video clip datasets, not "
                            f"{type(part).__name__}")
    return parts


def plan_jobs(parts: Sequence[VideoClipDataset], out: Path) -> list[ClipJob]:
    """Give every frame of every clip to the first clip that holds it.

    Labelled frames are copied; the others are generated from their clip's ends.
    """
    seen: set[tuple[str, str]] = set()
    jobs: list[ClipJob] = []
    for p, part in enumerate(parts):
        for c in range(len(part)):
            job = ClipJob(p, c)
            frames = part.clip_frames(c)
            for t, frame in enumerate(frames):
                key = (part.name, frame["image_id"])
                if key in seen:
                    continue
                seen.add(key)
                target = output_path(out, part.name, frame["image_id"])
                if "label_path" in frame:
                    job.copy.append((Path(frame["label_path"]), target))
                elif 0 < t < len(frames) - 1:
                    job.generate.append((t, target))
                else:
                    raise ValueError(
                        f"clip {c} of {part.name!r} ends with the unlabelled frame {frame['image_id']!r}: "
                        "pseudo-labels are generated between labelled frames only"
                    )
            if job.generate or job.copy:
                jobs.append(job)
    return jobs


def shard(jobs: Sequence[ClipJob], rank: int, world_size: int) -> list[ClipJob]:
    """This rank's share of the clips (round robin: disjoint, and together all of them)."""
    return list(jobs[rank::world_size])


def is_complete(path: Path) -> bool:
    """A written label: present and not empty (writes are atomic, so present means complete)."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def copy_label(source: Path, target: Path) -> None:
    """Copy a ground-truth label byte for byte (re-encoded as PNG only if it is not one)."""
    if source.suffix.lower() == OUTPUT_EXT:
        with source.open("rb") as label:
            write_atomic(target, lambda handle: shutil.copyfileobj(label, handle))
    else:
        with Image.open(source) as image:
            grey = image.convert("L")
        save_atomic(grey, target)


def save_label(probabilities: Tensor, height: int, width: int, target: Path) -> None:
    """Write probabilities [1, h, w] atomically as an 8-bit grey label of `height` x `width`."""
    save_atomic(resize_to_original(saliency_to_uint8(probabilities[0]), height, width), target)


class _ClipJobs(Dataset):
    """The clips to generate, loaded by their datasets (frames resized and normalised)."""

    def __init__(self, parts: Sequence[VideoClipDataset], jobs: Sequence[ClipJob]) -> None:
        self.parts = parts
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[int, list[dict[str, Any]]]:
        job = self.jobs[index]
        return index, self.parts[job.part][job.clip]


def _collate(batch: list[tuple[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    indices = [index for index, _ in batch]
    clips = [clip for _, clip in batch]
    for clip in clips:
        for end in (clip[0], clip[-1]):
            if "label" not in end:
                raise ValueError(f"frame {end['image_id']!r} ends a clip but has no label")
    return {
        "jobs": indices,
        "images": torch.stack([torch.stack([f["image"] for f in clip]) for clip in clips]),
        "label_l": torch.stack([clip[0]["label"] for clip in clips]),
        "label_r": torch.stack([clip[-1]["label"] for clip in clips]),
        "sizes": [[(int(f["height"]), int(f["width"])) for f in clip] for clip in clips],
    }


def _pending(jobs: Sequence[ClipJob], summary: Summary) -> list[ClipJob]:
    """Drop outputs that already exist (counted as skipped); keep the jobs with work left."""
    left = []
    for job in jobs:
        summary.frames += len(job.generate) + len(job.copy)
        generate = [(t, path) for t, path in job.generate if not is_complete(path)]
        copy = [(src, path) for src, path in job.copy if not is_complete(path)]
        summary.skipped += len(job.generate) - len(generate) + len(job.copy) - len(copy)
        if generate or copy:
            left.append(ClipJob(job.part, job.clip, generate, copy))
    return left


def generate(predict: LabelPredictor, dataset: Dataset, out: str | Path, *,
             device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1, batch_size: int = 1,
             num_workers: int = 0,
             progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None) -> Summary:
    """Write this rank's share of the pseudo-labels of `dataset` under `out`; return what was done.

    `dataset`: a VideoClipDataset (or ConcatDataset of them) built with labels (training=True),
    `frame_between_label_num` m and clip_len m + 2, without random reversal. `predict` maps
    (frame, frame_l, frame_r, label_l, label_r) to probabilities (`fgplg_predictor`,
    `warp_predictor`); it is called without autograd. `progress(iterable, total)` may wrap the
    batches (a progress bar).
    """
    out = Path(out)
    parts = clip_datasets(dataset)
    for part in parts:
        if part.random_reverse_clip:
            raise ValueError(f"dataset {part.name!r} reverses clips at random; build it without that")
    summary = Summary()
    jobs = _pending(shard(plan_jobs(parts, out), rank, world_size), summary)
    for job in jobs:
        for source, target in job.copy:
            copy_label(source, target)
            summary.copied += 1
    work = [job for job in jobs if job.generate]
    if not work:
        summary.written = summary.generated + summary.copied
        return summary
    loader = DataLoader(_ClipJobs(parts, work), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate)
    batches: Iterator[dict[str, Any]] = iter(loader)
    if progress is not None:
        batches = progress(batches, len(loader))
    device = torch.device(device)
    with torch.no_grad():
        for batch in batches:
            images = batch["images"].to(device)
            label_l = batch["label_l"].to(device)
            label_r = batch["label_r"].to(device)
            needed = sorted({t for j in batch["jobs"] for t, _ in work[j].generate})
            for t in needed:
                probabilities = predict(images[:, t], images[:, 0], images[:, -1], label_l, label_r)
                for b, j in enumerate(batch["jobs"]):
                    target = dict(work[j].generate).get(t)
                    if target is not None:
                        height, width = batch["sizes"][b][t]
                        save_label(probabilities[b], height, width, target)
                        summary.generated += 1
    summary.written = summary.generated + summary.copied
    return summary
