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
from .walk import walk_files

# Prediction file types looked for, in order of preference when a frame has several.
PREDICTION_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Label file types looked for when pairing two folders directly.
LABEL_EXTS: tuple[str, ...] = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm")

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
    """{key: image file} under `folder` (PREDICTION_EXTS order breaks ties), and every file there.

    Symlinked folders are followed but never entered twice (`walk_files`), so a link back to
    a folder above cannot make the walk endless.
    """
    found: dict[str, Path] = {}
    files: list[Path] = []
    rank = {ext: i for i, ext in enumerate(PREDICTION_EXTS)}
    for rel, path in walk_files(folder):
        files.append(path)
        stem, ext = os.path.splitext(rel)
        if ext.lower() not in rank:
            continue
        if stem not in found or rank[ext.lower()] < rank[found[stem].suffix.lower()]:
            found[stem] = path
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
    layout = "<video>/<frame>.png" if spec.is_video else "<id>.png"
    _refuse_missing(pairing, folder, layout, allow_missing)
    return pairing


def _refuse_missing(pairing: Pairing, folder: Path, layout: str, allow_missing: bool) -> None:
    """An EvaluationError naming the first frames without a map, unless `allow_missing`."""
    missing = pairing.missing
    if missing and not allow_missing:
        where = f"{folder}" if folder.is_dir() else f"{folder} (folder not found)"
        raise EvaluationError(
            f"{len(missing)} of {len(pairing.frames)} predictions missing in {where}, expected {layout}; "
            f"first: {', '.join(m + '.png' for m in missing[:EXAMPLES])} (--allow-missing skips them)"
        )


def pair_folders(
    maps_dir: str | Path,
    labels_dir: str | Path,
    *,
    allow_missing: bool = False,
    dataset: str | None = None,
    split: str = "",
) -> Pairing:
    """Match every label under `labels_dir` with a map under `maps_dir`, no dataset config needed.

    Labels are image files (LABEL_EXTS), flat (`<labels>/<frame>.png`: an image dataset) or
    in per-video subfolders (`<labels>/<video>/<frame>.png`: a video dataset, the video being
    the first folder). A label's map is the file at the same relative path under `maps_dir`,
    any of PREDICTION_EXTS; failing that, the one map with the label's file name anywhere
    under `maps_dir` (so flat maps pair with per-video labels and the other way round).
    Missing and extra maps are handled as in `pair_results`. The result names the dataset
    `dataset` (default: the labels folder's name) and the split `split`.
    """
    maps_dir, labels_dir = Path(maps_dir), Path(labels_dir)
    for folder, flag in ((maps_dir, "--results-folder"), (labels_dir, "--labels")):
        if not folder.is_dir():
            raise EvaluationError(f"folder not found: {folder} ({flag})")
    labels = [(rel, path) for rel, path in walk_files(labels_dir) if path.suffix.lower() in LABEL_EXTS]
    if not labels:
        raise EvaluationError(
            f"no label images ({', '.join(LABEL_EXTS)}) under {labels_dir} (--labels)"
        )
    is_video = any("/" in rel for rel, _ in labels)
    frames: list[GroundTruthFrame] = []
    keys: set[str] = set()
    for rel, path in labels:
        key = os.path.splitext(rel)[0]
        if key in keys:
            raise EvaluationError(f"two labels for one frame {key!r} under {labels_dir}: keep one (--labels)")
        keys.add(key)
        frames.append(GroundTruthFrame(key=key, video=key.split("/")[0] if "/" in key else "", path=path))
    index, files = _index_predictions(maps_dir)
    by_name: dict[str, list[str]] = {}
    for key in index:
        by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    predictions: dict[str, Path] = {}
    for frame in frames:
        if frame.key in index:
            predictions[frame.key] = index[frame.key]
            continue
        same_name = by_name.get(frame.key.rsplit("/", 1)[-1], [])
        if len(same_name) == 1:
            predictions[frame.key] = index[same_name[0]]
    used = set(predictions.values())
    unused = [p for p in files if p not in used]
    pairing = Pairing(
        results_dir=maps_dir,
        dataset=dataset or labels_dir.name,
        split=split,
        is_video=is_video,
        frames=frames,
        predictions=predictions,
        extra=len(unused),
        extra_examples=[p.relative_to(maps_dir).as_posix() for p in unused[:EXAMPLES]],
    )
    layout = "<video>/<frame>.png or <frame>.png" if is_video else "<frame>.png"
    _refuse_missing(pairing, maps_dir, layout, allow_missing)
    return pairing
