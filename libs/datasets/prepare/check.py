"""`--check`: count a prepared dataset's videos, frames and labels per split and compare them
with the figures its authors publish (config/dataset_counts.yaml)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_CONFIG, DatasetConfigError, DatasetSpec, get_spec, load_dataset_config
from .counts import DEFAULT_COUNTS, Published, load_counts
from .files import need_dir


@dataclass
class SplitCount:
    """What `check` found for one split: listed and present videos, frames and labels."""

    split: str
    listed: int
    present: int
    frames: int
    annotated: int
    missing: list[str]


def _count_video_split(spec: DatasetSpec, root: Path, split: str) -> SplitCount:
    try:
        videos = spec.videos(split, root)
    except DatasetConfigError:
        return SplitCount(split, 0, 0, 0, 0, [f"(split {split!r}: no video folder found)"])
    frames = annotated = present = 0
    missing = []
    for video in videos:
        image_folder = spec.video_image_folder(root, video)
        if not image_folder.is_dir():
            missing.append(video)
            continue
        present += 1
        frames += sum(1 for p in image_folder.iterdir() if p.name.endswith(spec.image_ext))
        label_folder = spec.video_label_folder(root, video)
        if label_folder.is_dir():
            annotated += sum(1 for p in label_folder.iterdir() if p.name.endswith(spec.label_ext))
    return SplitCount(split, len(videos), present, frames, annotated, missing)


def _count_image_split(spec: DatasetSpec, root: Path, split: str) -> SplitCount:
    path = root / spec.name / spec.split_dir / f"{split}_id.txt"
    if not path.is_file():
        return SplitCount(split, 0, 0, 0, 0, [f"({path.name} not found)"])
    ids = spec.image_ids(root, split)
    missing = [
        i
        for i in ids
        if not (spec.label_folder(root) / f"{i}{spec.label_ext}").is_file()
        or not (spec.image_folder(root) / f"{i}{spec.image_ext}").is_file()
    ]
    present = len(ids) - len(missing)
    return SplitCount(split, len(ids), present, present, present, missing)


def check(
    name: str,
    data: str | Path,
    *,
    config_path: str | Path = DEFAULT_CONFIG,
    counts_path: str | Path = DEFAULT_COUNTS,
) -> tuple[list[str], bool]:
    """(report lines, whether every published figure matched) for `<data>/<name>/`.

    Video datasets: every split of the config, plus "*" (the videos on disk) against the
    published totals, naming listed videos that are missing and video folders on disk that
    no split lists. Image datasets: the splits with a published size.
    """
    spec = get_spec(load_dataset_config(config_path), name)
    root = Path(data)
    need_dir(root / name, f"the prepared {name} folder (run without --check first)")
    published = load_counts(counts_path).get(name, Published({}))
    if spec.is_video:
        counts = [_count_video_split(spec, root, s) for s in spec.splits]
        base = spec.image_folder(root)
        depth = max((v.count("/") for s in spec.splits for v in spec.video_split[s]), default=0)
        on_disk = (
            sorted(
                p.relative_to(base).as_posix() for p in base.glob("/".join(["*"] * (depth + 1))) if p.is_dir()
            )
            if base.is_dir()
            else []
        )
        listed = {v for c in counts for v in (spec.videos(c.split, root) if c.listed else [])}
        extra = [v for v in on_disk if v not in listed]
        total = SplitCount("*", len(on_disk), len(on_disk), 0, 0, [])
        for video in on_disk:
            one = SplitCount("*", 1, 1, 0, 0, [])
            folder, labels = spec.video_image_folder(root, video), spec.video_label_folder(root, video)
            one.frames = (
                sum(1 for p in folder.iterdir() if p.name.endswith(spec.image_ext)) if folder.is_dir() else 0
            )
            one.annotated = (
                sum(1 for p in labels.iterdir() if p.name.endswith(spec.label_ext)) if labels.is_dir() else 0
            )
            total.frames += one.frames
            total.annotated += one.annotated
        counts.append(total)
    else:
        splits = [s for s in published.videos if s != "*"]
        counts = [_count_image_split(spec, root, s) for s in splits]
        extra = []
    unit = "videos" if spec.is_video else "images"
    lines = [
        f"| split | {unit} listed | {unit} present | frames | annotated | published {unit} | "
        "published frames | published annotated | ok |",
        "|" + " --- |" * 9,
    ]
    ok = True
    for c in counts:
        want_v = published.videos.get(c.split)
        want_f = published.frames.get(c.split)
        want_a = published.annotated.get(c.split)
        row_ok = (
            not c.missing
            and (want_v is None or c.present == want_v)
            and (want_f is None or c.frames == want_f)
            and (want_a is None or c.annotated == want_a)
        )
        ok &= row_ok
        cells = [c.split, c.listed, c.present, c.frames, c.annotated, want_v, want_f, want_a]
        cells = ["-" if v is None else str(v) for v in cells] + ["yes" if row_ok else "NO"]
        lines.append("| " + " | ".join(cells) + " |")
    for c in counts:
        if c.missing:
            lines.append(f"{c.split}: missing {len(c.missing)}: {', '.join(c.missing[:10])}")
    if extra:
        lines.append(f"on disk but in no split: {len(extra)}: {', '.join(extra[:10])}")
    lines.append(f"published figures: {published.source or '(none recorded)'}")
    return lines, ok
