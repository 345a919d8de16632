"""Pseudo-label generation: what `generate_pseudo_labels.py` does (the release's file of that name).

The frames come from the release's clip datasets with `frame_between_label_num` m:
clips [labelled, m unlabelled frames, labelled] over every `label_interval`-th annotated
frame. For each clip the middle frames are generated, left to right, each from the two
labelled ends, and everything is written to `<out>/<dataset>/<video>/<frame>.png`:

- kept ground truth is copied byte for byte (the release resampled it through the
  network's input size);
- generated labels are 8-bit saliency maps resized to the frame's original size, the way
  inference writes its maps (`libs.evaluation.maps`, then Pillow's bicubic resize), as the
  release did (it swapped width and height in that resize; here each map has its frame's size);
- every frame is written once (neighbouring clips share their labelled ends; the release
  wrote those twice), atomically (a temporary file renamed into place), and a frame whose
  file already exists is skipped, so an interrupted run resumes where it stopped;
- under torchrun each rank takes a disjoint share of the clips.

The folder `<out>` is what `train.py --pseudo-label-folder` reads (`use_pseudo_labels`).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from flownet2.resample2d import resample2d
from libs.datasets import DatasetConfigError, get_datasets, get_transforms
from libs.datasets.splits import PSEUDO_LABEL_SETS, DatasetSplits, names_and_splits
from libs.datasets.video_dataset import VideoClipDataset
from libs.networks.fgplg import FGPLG, unnormalise
from libs.networks.flow import FlowEstimator, build_flow_estimator
from libs.networks.rcrnet import set_exact_upsampled_conv
from libs.networks.sizes import check_frame_size
from libs.networks.weights import load_fgplg, load_flownet2
from libs.runtime.allocator import check_memory_choice, choose_memory
from libs.runtime.calibration import measured_choice
from libs.runtime.errors import UserError
from libs.runtime.files import write_atomic
from libs.runtime.ownership import claim_generated_folder
from libs.runtime.precision import describe, resolve_precision
from libs.runtime.session import Runtime, all_reduce_sum

from .optimize import inference_context, prepare_model
from .predictor import AUTO_CANDIDATES, PLAIN
from .runner import output_path
from .writer import resize_to_original, saliency_to_uint8, save_atomic

OUTPUT_EXT = ".png"

# (frame, frame_l, frame_r, label_l, label_r) -> saliency probabilities [B, 1, H, W]
Predictor = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def fgplg_predictor(model: FGPLG, precision: str = "fp32", device: torch.device | str = "cpu",
                    report: Callable[[str], None] | None = None, memory: str = "glibc") -> Predictor:
    """An FGPLG's pseudo-labels as probabilities (sigmoid of its logits).

    `precision` (`libs.runtime.precision`): `fp32` runs `model` as the release computes it (the
    release's numbers); `auto` runs float32 too, the fastest of the predictor's `AUTO_CANDIDATES`
    (the factored decoder, BatchNorm folding, channels-last) as measured on the first label
    (plain fp32 unless another is clearly faster; `report` gets the one-line decision);
    anything else runs a
    copy prepared by `libs.inference.optimize.prepare_model` (BatchNorm folded,
    channels-last, bf16/fp16 autocast). `memory` (`libs.runtime.allocator`): glibc, kept, or
    auto (measured on the first label, after the precision).
    """
    device = torch.device(device)
    check_memory_choice(memory)
    auto = precision == "auto"
    precision = resolve_precision(precision, device)
    model.eval()
    if precision == "fp32" and not auto:
        set_exact_upsampled_conv(model, False)
    runs: list[Callable[..., Tensor]] = []

    def plain(*inputs: Tensor) -> Tensor:
        with torch.no_grad():
            return model.generate_pseudo_label(*inputs)

    def prepared(fast: nn.Module, fast_precision: str) -> Callable[..., Tensor]:
        def run(*inputs: Tensor) -> Tensor:
            with inference_context(fast_precision, device):
                return fast.generate_pseudo_label(*inputs)
        return run

    def choose(inputs: tuple[Tensor, ...]) -> Tensor | None:
        """The run to use; with `auto`, measured on `inputs` (returns the chosen run's output)."""
        if not auto:
            fast = None if precision == "fp32" else prepare_model(model, precision, device).model
            runs.append(plain if fast is None else prepared(fast, precision))
            return None
        candidates: dict[str, Callable[..., Tensor]] = {}
        outputs: dict[str, Tensor] = {}

        def get(name: str) -> Callable[..., Tensor]:
            """Candidate `name`, built when first run (a cached decision builds the chosen one alone)."""
            if name not in candidates:
                fast = prepare_model(model, "fp32", device, **AUTO_CANDIDATES[name]).model
                candidates[name] = prepared(fast, "fp32")
            return candidates[name]

        def call(name: str) -> Callable[[], None]:
            def run() -> None:
                outputs[name] = get(name)(*inputs)
            return run

        shape = tuple(inputs[0].shape)
        decision = measured_choice(f"precision auto FGPLG {shape}", {n: call(n) for n in AUTO_CANDIDATES},
                                   PLAIN, device)
        if report is not None:
            report(f"precision auto: {decision.describe()}")
        runs.append(get(decision.choice))
        return outputs.get(decision.choice)

    def predict(frame: Tensor, frame_l: Tensor, frame_r: Tensor, label_l: Tensor, label_r: Tensor) -> Tensor:
        inputs = (frame, frame_l, frame_r, label_l, label_r)
        logits = None
        if not runs:
            logits = choose(inputs)
            decision = choose_memory(memory, f"FGPLG {tuple(frame.shape)} {precision}",
                                     lambda: runs[0](*inputs), device)
            if report is not None and decision.ratios:
                report(f"memory auto: {decision.describe()}")
        if logits is None:
            logits = runs[0](*inputs)
        return torch.sigmoid(logits.float())

    return predict


def warp_predictor(estimator: FlowEstimator) -> Predictor:
    """The flow-warping baseline: the mean of the two neighbours' labels warped onto the frame."""

    def predict(frame: Tensor, frame_l: Tensor, frame_r: Tensor, label_l: Tensor, label_r: Tensor) -> Tensor:
        rgb = unnormalise(frame)
        flow_l = estimator.estimate(rgb, unnormalise(frame_l)).to(label_l.dtype)
        flow_r = estimator.estimate(rgb, unnormalise(frame_r)).to(label_r.dtype)
        return 0.5 * (resample2d(label_l, flow_l) + resample2d(label_r, flow_r))

    return predict


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


def plan(parts: Sequence[VideoClipDataset], out: Path) -> list[ClipJob]:
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


def generate(predict: Predictor, dataset: Dataset, out: str | Path, *, device: torch.device | str = "cpu",
             rank: int = 0, world_size: int = 1, batch_size: int = 1, num_workers: int = 0,
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
    jobs = _pending(shard(plan(parts, out), rank, world_size), summary)
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


def build_clip_dataset(data: str | Path, dataset_config: str | Path, size: int, label_interval: int,
                       frame_between_label_num: int, datasets: DatasetSplits = PSEUDO_LABEL_SETS) -> Dataset:
    """The release's generation clips [labelled, m frames, labelled] at `label_interval`, size x size."""
    transforms = get_transforms(image_mode=False, input_size=size)
    names, splits = names_and_splits(datasets)
    try:
        return get_datasets(names, splits, dataset_config, data, True, transforms["test"],
                            read_clip=True, random_reverse_clip=False, label_interval=label_interval,
                            frame_between_label_num=frame_between_label_num,
                            clip_len=frame_between_label_num + 2)
    except DatasetConfigError:
        raise
    except ValueError as exc:  # the clip sampling's interval checks
        raise UserError(str(exc)) from exc


def load_generator(checkpoint: str | Path, flow: str = "flownet2", output_stride: int = 16,
                   rgb_max: float = 1.0, fp16: bool = False, force_flow: bool = False,
                   flownet_checkpoint: str | Path | None = None) -> FGPLG:
    """A trained FGPLG from `checkpoint` (e.g. the release's `pseudo_label_generator_5.pth`), in eval mode."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file; pass a trained FGPLG (the release's "
                        "pseudo_label_generator_5.pth or train_fgplg.py's fgplg_current_best_model.pth)")
    try:
        model = FGPLG(output_stride=output_stride, flow=flow, rgb_max=rgb_max, fp16=fp16)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    load_fgplg(model, path, force_flow=force_flow, flownet_checkpoint=flownet_checkpoint)
    return model.eval()


@dataclass(frozen=True)
class PseudoLabelOptions:
    """What generate_pseudo_labels.py is asked to do (the release's flags and the new ones)."""

    data: str | Path = "data/datasets/"
    dataset_config: str | Path = "config/datasets.yaml"
    pseudo_label_folder: str | Path = "data/pseudo-labels"
    checkpoint: str | Path = "models/pseudo_label_generator_5.pth"
    label_interval: int = 5
    frame_between_label_num: int = 1
    datasets: DatasetSplits = PSEUDO_LABEL_SETS
    size: int = 448
    output_stride: int = 16
    batch_size: int = 1
    num_workers: int = 1
    warp_only: bool = False
    flow: str = "flownet2"
    force_flow: bool = False
    flownet_checkpoint: str | Path | None = None
    fp16: bool = False
    rgb_max: float = 1.0
    precision: str = "auto"
    overwrite: bool = False

    @property
    def settings(self) -> dict[str, Any]:
        """What decides the labels, recorded beside them (`libs.runtime.ownership`)."""
        names = ("warp_only", "flow", "size", "output_stride", "rgb_max", "fp16", "precision")
        return {"checkpoint": None if self.warp_only else str(self.checkpoint),
                "flownet_checkpoint": str(self.flownet_checkpoint) if self.flownet_checkpoint else None,
                **{name: getattr(self, name) for name in names}}

    @property
    def out(self) -> Path:
        """`<pseudo-label-folder>/<m>_<l>`: the folder train.py --pseudo-label-folder reads."""
        return Path(self.pseudo_label_folder) / f"{self.frame_between_label_num}_{self.label_interval}"


def build_predictor(options: PseudoLabelOptions, device: torch.device,
                    report: Callable[[str], None] | None = None,
                    memory: str = "glibc") -> tuple[Predictor, str]:
    """The label predictor `options` ask for (FGPLG, or flow warping with `warp_only`) and its
    description; `report` gets the measured decisions (`precision auto`, `memory` auto)."""
    if options.warp_only:
        estimator = build_flow_estimator(options.flow, rgb_max=options.rgb_max, half_precision=options.fp16)
        if options.flow == "flownet2":
            if not options.flownet_checkpoint:
                raise UserError("flow warping with flownet2 needs NVIDIA's weights (--flownet-checkpoint)")
            load_flownet2(estimator, options.flownet_checkpoint)
        return warp_predictor(estimator.to(device).eval()), f"flow warping ({options.flow})"
    model = load_generator(options.checkpoint, options.flow, options.output_stride, options.rgb_max,
                           options.fp16, options.force_flow, options.flownet_checkpoint)
    what = f"FGPLG {options.checkpoint} ({model.flow_name}, {describe(options.precision, device)})"
    return fgplg_predictor(model.to(device), options.precision, device, report, memory), what


def generate_pseudo_labels(options: PseudoLabelOptions, runtime: Runtime,
                           progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None) -> Summary:
    """Write this process's share of the pseudo-labels `options` describe; returns every process's totals.

    Rank 0 first claims `options.out` (`libs.runtime.ownership.claim_generated_folder`): labels
    made with other settings are refused unless `options.overwrite`, the settings are recorded,
    and the temporary files of killed runs are removed, before any process writes there.
    """
    check_frame_size(options.size, options.size)
    out = Path(options.out)
    if runtime.is_main:
        if out.exists() and not out.is_dir():
            raise UserError(f"--pseudo-label-folder: {out} is a file, not a folder")
        claim_generated_folder(out, options.settings, overwrite=options.overwrite, output_suffix=OUTPUT_EXT,
                               flag="--pseudo-label-folder", log=runtime.print)
    runtime.barrier()
    dataset = build_clip_dataset(options.data, options.dataset_config, options.size, options.label_interval,
                                 options.frame_between_label_num, options.datasets)
    predict, what = build_predictor(options, runtime.device, runtime.print, runtime.memory)
    runtime.print(f"Generating pseudo-labels at {options.out} with {what}")
    runtime.print(f"label interval: {options.label_interval}, frames between labels: "
                  f"{options.frame_between_label_num}; device {runtime.device}"
                  + (f", {runtime.world_size} processes" if runtime.distributed else ""))
    summary = generate(predict, dataset, options.out, device=runtime.device, rank=runtime.rank,
                       world_size=runtime.world_size, batch_size=options.batch_size,
                       num_workers=options.num_workers, progress=progress)
    return Summary.from_tensor(torch.tensor(all_reduce_sum(runtime, summary.as_tensor().tolist())))
