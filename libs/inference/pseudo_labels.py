"""Pseudo-label generation: what `generate_pseudo_labels.py` does (the release's file of that name).

The frames come from the release's clip datasets with `frame_between_label_num` m:
clips [labelled, m unlabelled frames, labelled] over every `label_interval`-th annotated
frame. For each clip the middle frames are generated, left to right, each from the two
labelled ends (`libs.inference.label_predictors`), and everything is written to
`<out>/<dataset>/<video>/<frame>.png` (`libs.inference.label_jobs`):

- kept ground truth is copied byte for byte (the release resampled it through the
  network's input size);
- generated labels are 8-bit saliency maps resized to the frame's original size, the way
  inference writes its maps (`libs.evaluation.maps`, then Pillow's bicubic resize), as the
  release did (it swapped width and height in that resize; here each map has its frame's size);
- every frame is written once, atomically, and a frame whose file already exists is skipped,
  so an interrupted run resumes where it stopped;
- under torchrun each rank takes a disjoint share of the clips.

The run's plan (`libs.runtime.plan`: precision, decoder, layout) is resolved once at the top
of `generate_pseudo_labels`. The folder `<out>` is what `train.py --pseudo-label-folder` reads
(`use_pseudo_labels`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from libs.datasets import DatasetConfigError, get_datasets, get_transforms
from libs.datasets.config import DEFAULT_CONFIG, DEFAULT_DATA
from libs.datasets.splits import PSEUDO_LABEL_SETS, DatasetSplits, names_and_splits
from libs.modules import RELEASE_DECODER
from libs.networks.fgplg import FGPLG
from libs.networks.flow import build_flow_estimator
from libs.networks.sizes import check_frame_size
from libs.networks.weights import load_fgplg, load_flownet2
from libs.runtime.errors import UserError
from libs.runtime.ownership import claim_generated_folder
from libs.runtime.plan import RunPlan, plan_run
from libs.runtime.session import Runtime, all_reduce_sum

from .label_jobs import OUTPUT_EXT, Summary, generate
from .label_predictors import LabelPredictor, fgplg_predictor, warp_predictor


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
                   flownet_checkpoint: str | Path | None = None, decoder: str = RELEASE_DECODER) -> FGPLG:
    """A trained FGPLG from `checkpoint` (e.g. the release's `pseudo_label_generator_5.pth`), in eval
    mode, built with `decoder` ("release" or "factored")."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file; pass a trained FGPLG (the release's "
                        "pseudo_label_generator_5.pth or train_fgplg.py's fgplg_current_best_model.pth)")
    try:
        model = FGPLG(output_stride=output_stride, flow=flow, rgb_max=rgb_max, fp16=fp16, decoder=decoder)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    load_fgplg(model, path, force_flow=force_flow, flownet_checkpoint=flownet_checkpoint)
    return model.eval()


@dataclass(frozen=True)
class PseudoLabelOptions:
    """What generate_pseudo_labels.py is asked to do (the release's flags and the new ones)."""

    data: str | Path = DEFAULT_DATA
    dataset_config: str | Path = DEFAULT_CONFIG
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


def build_predictor(options: PseudoLabelOptions, plan: RunPlan) -> tuple[LabelPredictor, str]:
    """The label predictor `options` ask for (FGPLG computed as `plan` says, or flow warping with
    `warp_only`) and its description."""
    if options.warp_only:
        estimator = build_flow_estimator(options.flow, rgb_max=options.rgb_max, half_precision=options.fp16)
        if options.flow == "flownet2":
            if not options.flownet_checkpoint:
                raise UserError("flow warping with flownet2 needs NVIDIA's weights (--flownet-checkpoint)")
            load_flownet2(estimator, options.flownet_checkpoint)
        return warp_predictor(estimator.to(plan.device).eval()), f"flow warping ({options.flow})"
    model = load_generator(options.checkpoint, options.flow, options.output_stride, options.rgb_max,
                           options.fp16, options.force_flow, options.flownet_checkpoint, plan.decoder)
    what = f"FGPLG {options.checkpoint} ({model.flow_name}; {plan.describe()})"
    return fgplg_predictor(model, plan), what


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
    plan = plan_run("inference", runtime.device, options.precision).for_model("fgplg")
    predict, what = build_predictor(options, plan)
    runtime.print(f"Generating pseudo-labels at {options.out} with {what}")
    runtime.print(f"label interval: {options.label_interval}, frames between labels: "
                  f"{options.frame_between_label_num}; device {runtime.device}"
                  + (f", {runtime.world_size} processes" if runtime.distributed else ""))
    summary = generate(predict, dataset, options.out, device=runtime.device, rank=runtime.rank,
                       world_size=runtime.world_size, batch_size=options.batch_size,
                       num_workers=options.num_workers, progress=progress)
    return Summary.from_tensor(torch.tensor(all_reduce_sum(runtime, summary.as_tensor().tolist())))
