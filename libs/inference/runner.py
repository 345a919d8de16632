"""Inference runs: a benchmark split or an `--input` folder/video -> PNG saliency maps.

Output layout: `<results-folder>/<name>/<image_id>.png`, where name is the dataset (its
`<video>/<frame>` ids) or the input's folder/file name (frame names). A clip whose PNGs
all exist is skipped unless `overwrite`, so a killed run resumes where it stopped; the
PNGs themselves are written atomically by `SaliencyWriter`, and the temporary files a
killed run left anywhere under the results folder are removed when a run starts
(`libs.runtime.files.remove_stale_temporaries`). Frames must be at least
`libs.networks.sizes.MIN_FRAME_SIZE` pixels (`options.size`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from libs.datasets import get_datasets, get_spec, get_transforms, load_dataset_config
from libs.networks.sizes import check_frame_size
from libs.runtime.errors import UserError
from libs.runtime.files import remove_stale_temporaries

from .predictor import Predictor
from .sources import (
    VIDEO_EXTENSIONS,
    ClipSource,
    DatasetClips,
    FolderClips,
    VideoFileClips,
    collate_clips,
)
from .writer import SaliencyWriter, saliency_to_uint8

# Dataset names the release's README uses that the config spells otherwise.
DATASET_ALIASES = {"DAVIS": "DAVIS2016"}


@dataclass
class InferenceOptions:
    """How to run inference (the release's flags and the new ones)."""

    results_folder: Path
    size: int = 448
    clip_len: int = 4
    batch_size: int = 1
    num_workers: int = 1
    overwrite: bool = False
    overlay: bool = False
    writer_threads: int = 2
    progress: bool = True


@dataclass
class InferenceSummary:
    """What a run did."""

    name: str
    output_dir: Path
    clips: int
    clips_skipped: int
    frames_written: int
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames_written / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        text = (f"{self.name}: {self.frames_written} saliency maps written to {self.output_dir} "
                f"({self.clips} clips run in {self.seconds:.1f} s, {self.frames_per_second:.2f} frames/s)")
        if self.clips_skipped:
            text += (f"; {self.clips_skipped} clips skipped, their maps already there "
                     "(--overwrite redoes them)")
        return text


def resolve_dataset(name: str, config_path: str | Path) -> str:
    """`name`, or its config spelling for the release README's names (DAVIS -> DAVIS2016)."""
    config = load_dataset_config(config_path)
    if name not in config and DATASET_ALIASES.get(name) in config:
        return DATASET_ALIASES[name]
    get_spec(config, name)
    return name


def output_path(results_folder: Path, name: str, image_id: str) -> Path:
    return Path(results_folder) / name / f"{image_id}.png"


def overlay_path(results_folder: Path, name: str, image_id: str) -> Path:
    return Path(results_folder) / f"{name}_overlay" / f"{image_id}.jpg"


def prepare_results_folder(options: InferenceOptions) -> None:
    """Check the frame size and the results folder, and remove temporaries a killed run left there."""
    check_frame_size(options.size, options.size)
    folder = Path(options.results_folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--results-folder {folder}: a file, not a folder")
    for stale in remove_stale_temporaries(folder, recursive=True):
        print(f"removed {stale}, a temporary file left by a killed run", flush=True)


def _pending(source: ClipSource, options: InferenceOptions) -> tuple[Dataset, int]:
    """The clips that still need running (all, with `overwrite`) and how many were skipped."""
    if options.overwrite:
        return source, 0
    todo = [i for i, ids in enumerate(source.clip_ids())
            if not all(output_path(options.results_folder, source.name, i_d).is_file() for i_d in ids)]
    return Subset(source, todo), len(source) - len(todo)


def _loader(dataset: Dataset, options: InferenceOptions, workers: int, predictor: Predictor) -> DataLoader:
    """Clips decoded and resized in `workers` processes; pinned memory when the model is on a GPU."""
    return DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate_clips, pin_memory=predictor.device.type == "cuda")


def run_clips(predictor: Predictor, loader: DataLoader, options: InferenceOptions, total: int | None = None,
              desc: str = "inference") -> tuple[int, int, int]:
    """Predict every clip of `loader` and write its maps; returns (clips run, clips skipped, maps written).

    Clips whose maps all exist are skipped (unless `overwrite`) even here, which matters for
    sources that cannot be filtered in advance (video files).
    """
    clips = skipped = 0
    with SaliencyWriter(options.writer_threads) as writer:
        for batch in tqdm(loader, desc=desc, total=total, unit="clip", leave=False, dynamic_ncols=True,
                          disable=None if options.progress else True):
            frames: list[list[dict[str, Any]]] = batch["frames"]
            keep = [b for b, clip in enumerate(frames) if options.overwrite or not all(
                output_path(options.results_folder, f["dataset"], f["image_id"]).is_file() for f in clip)]
            skipped += len(frames) - len(keep)
            if not keep:
                continue
            probs = predictor(batch["images"][keep])
            maps = saliency_to_uint8(probs[:, :, 0])
            for row, b in enumerate(keep):
                clips += 1
                # a frame repeated in a clip (padding) is written from its last position
                last = {frame["image_id"]: t for t, frame in enumerate(frames[b])}
                for image_id, t in last.items():
                    frame = frames[b][t]
                    name = frame["dataset"]
                    panel = overlay_path(options.results_folder, name, image_id) if options.overlay else None
                    writer.submit(maps[row, t], output_path(options.results_folder, name, image_id),
                                  int(frame["height"]), int(frame["width"]), panel, frame.get("original"))
        writer.close()
        written = writer.written
    return clips, skipped, written


def infer_split(predictor: Predictor, data: str | Path, dataset: str, split: str, dataset_config: str | Path,
                options: InferenceOptions) -> InferenceSummary:
    """Predict the frames of a benchmark split the way the release's inference.py samples them."""
    start = time.perf_counter()
    prepare_results_folder(options)
    name = resolve_dataset(dataset, dataset_config)
    transform = get_transforms(False, options.size)["test"]
    split_set = get_datasets(name, split, config_path=dataset_config, root=data, training=False,
                             transforms=transform, read_clip=True, random_reverse_clip=False,
                             label_interval=1, frame_between_label_num=0, clip_len=options.clip_len)
    source = DatasetClips(split_set, with_original=options.overlay)
    pending, skipped = _pending(source, options)
    predictor.expect(len(pending) * options.clip_len)
    loader = _loader(pending, options, options.num_workers, predictor)
    clips, _, written = run_clips(predictor, loader, options, total=len(loader), desc=f"{name} {split}")
    return InferenceSummary(name, Path(options.results_folder) / name, clips, skipped, written,
                            time.perf_counter() - start)


def infer_input(predictor: Predictor, input_path: str | Path, options: InferenceOptions) -> InferenceSummary:
    """Predict every frame of a folder of images or of a video file (no annotations needed)."""
    start = time.perf_counter()
    prepare_results_folder(options)
    path = Path(input_path)
    transform = get_transforms(False, options.size)["test"]
    if path.is_dir():
        source = FolderClips(path, transform, options.clip_len, with_original=options.overlay)
        pending, skipped = _pending(source, options)
        predictor.expect(len(pending) * options.clip_len)
        loader = _loader(pending, options, options.num_workers, predictor)
        total: int | None = len(loader)
        name = source.name
    elif path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise UserError(f"--input {path}: not a folder of frames nor a video file "
                              f"({', '.join(VIDEO_EXTENSIONS)})")
        video = VideoFileClips(path, transform, options.clip_len, with_original=options.overlay)
        loader = _loader(video, options, min(1, options.num_workers), predictor)
        total, skipped, name = None, 0, video.name
    else:
        raise UserError(f"--input {path}: no such file or folder")
    clips, skipped_now, written = run_clips(predictor, loader, options, total=total, desc=name)
    return InferenceSummary(name, Path(options.results_folder) / name, clips, skipped + skipped_now, written,
                            time.perf_counter() - start)


def evaluate_split(results_folder: str | Path, data: str | Path, dataset: str, split: str,
                   dataset_config: str | Path, workers: int = 1, method: str = "RCRNet") -> str:
    """Score `<results_folder>/<dataset>` on the split's ground truth; a Markdown table (and notes)."""
    from libs.evaluation import PAPER_METRICS, describe_counts, evaluate_results, markdown_table

    result = evaluate_results(results_folder, data, dataset, split, config_path=dataset_config,
                              workers=workers, metrics=PAPER_METRICS)
    lines = [markdown_table({method: {dataset: result}})]
    lines += [f"note: {line}" for line in describe_counts(result)]
    return "\n".join(lines)
