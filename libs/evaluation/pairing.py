"""Pairing a folder of saliency maps with the annotated frames of a dataset split.

A results folder is laid out as `inference.py` writes it: `<results>/<dataset>/<video>/
<frame>.png` for video datasets (`<frame>` = the label file's name without its
extension) and `<results>/<dataset>/<id>.png` for image datasets. The ground truth of a
split is its annotated frames only: the label files of the split's videos (VOS labels
every 15th frame), or the labels of the ids in `<split_dir>/<split>_id.txt`. Missing and
extra files are counted, never silently absorbed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from libs.datasets.config import DatasetSpec

from .errors import EvaluationError

# Prediction file types looked for, in order of preference when a frame has several.
PREDICTION_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

EXAMPLES = 3  # example file names kept per counted case


@dataclass(frozen=True)
class GroundTruthFrame:
    """One annotated frame: `key` is where its prediction lives, without extension."""

    key: str
    video: str
    path: Path


@dataclass
class Pairing:
    """The ground-truth frames of a split matched with the files of a results folder."""

    results_dir: Path
    dataset: str
    split: str
    is_video: bool
    frames: list[GroundTruthFrame]
    predictions: dict[str, Path]
    extra: int = 0
    extra_examples: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """Keys of the frames that have no prediction, in frame order."""
        return [f.key for f in self.frames if f.key not in self.predictions]



def list_ground_truth(data_root: str | Path, spec: DatasetSpec, split: str) -> list[GroundTruthFrame]:
    """The annotated frames of `split`, in video order then file-name order."""
    root = Path(data_root)
    if not (root / spec.name).is_dir():
        raise EvaluationError(f"dataset folder not found: {root / spec.name} (--data {root})")
    frames: list[GroundTruthFrame] = []
    ext = spec.label_ext
    if not spec.is_video:
        ids = spec.image_ids(root, split)
        folder = spec.label_folder(root)
        paths = [folder / f"{i}{ext}" for i in ids]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise EvaluationError(
                f"{len(absent)} of {len(paths)} ground-truth files of {spec.name}/{split} not found, "
                f"first: {absent[0]}"
            )
        return [GroundTruthFrame(key=i, video="", path=p) for i, p in zip(ids, paths)]
    for video in spec.videos(split, root):
        folder = spec.video_label_folder(root, video)
        if not folder.is_dir():
            raise EvaluationError(f"ground-truth folder not found: {folder} (video {video!r} of {spec.name})")
        names = sorted(n for n in os.listdir(folder) if n.endswith(ext) and not n.startswith("."))
        if not names:
            raise EvaluationError(f"no ground-truth files *{ext} in {folder} (video {video!r})")
        frames += [GroundTruthFrame(f"{video}/{n[: -len(ext)]}", video, folder / n) for n in names]
    return frames


def _index_predictions(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """{key: image file} under `folder` (PREDICTION_EXTS order breaks ties), and every file there."""
    found: dict[str, Path] = {}
    files: list[Path] = []
    rank = {ext: i for i, ext in enumerate(PREDICTION_EXTS)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        base = Path(dirpath)
        rel = base.relative_to(folder).as_posix()
        for name in sorted(filenames):
            files.append(base / name)
            stem, ext = os.path.splitext(name)
            if ext.lower() not in rank or name.startswith("."):
                continue
            key = stem if rel == "." else f"{rel}/{stem}"
            if key not in found or rank[ext.lower()] < rank[found[key].suffix.lower()]:
                found[key] = base / name
    return found, files


def pair_results(
    results_dir: str | Path,
    data_root: str | Path,
    spec: DatasetSpec,
    split: str,
    *,
    allow_missing: bool = False,
) -> Pairing:
    """Match the split's ground-truth frames with the maps under `<results_dir>/<dataset>`.

    A frame without a prediction is an error naming the first missing files, unless
    `allow_missing` (then it is skipped and counted). Files that match no frame are
    ignored and counted.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise EvaluationError(f"results folder not found: {results_dir}")
    frames = list_ground_truth(data_root, spec, split)
    folder = results_dir / spec.name
    index, files = _index_predictions(folder) if folder.is_dir() else ({}, [])
    wanted = {f.key for f in frames}
    predictions = {k: p for k, p in index.items() if k in wanted}
    used = set(predictions.values())
    unused = [p for p in files if p not in used]
    pairing = Pairing(
        results_dir=results_dir,
        dataset=spec.name,
        split=split,
        is_video=spec.is_video,
        frames=frames,
        predictions=predictions,
        extra=len(unused),
        extra_examples=[p.relative_to(folder).as_posix() for p in unused[:EXAMPLES]],
    )
    missing = pairing.missing
    if missing and not allow_missing:
        layout = "<video>/<frame>.png" if spec.is_video else "<id>.png"
        where = f"{folder}" if folder.is_dir() else f"{folder} (folder not found)"
        raise EvaluationError(
            f"{len(missing)} of {len(frames)} predictions missing in {where}, expected {layout}; first: "
            f"{', '.join(m + '.png' for m in missing[:EXAMPLES])} (--allow-missing skips them)"
        )
    return pairing
