#!/usr/bin/env python
"""Generate pseudo-labels with a trained FGPLG: the release's generate_pseudo_labels.py.

Thin command line over `libs.inference.pseudo_labels`; see README.md, "Pseudo-labels (FGPLG)".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from libs.engine import ArgumentParser, add_data_arguments, run_cli, setup_runtime
from libs.engine.cli import non_negative_int, output_stride, positive_float, positive_int
from libs.engine.errors import EngineError
from libs.engine.runtime import all_reduce_sum
from libs.inference.pseudo_labels import (
    DEFAULT_DATASETS,
    DEFAULT_SPLITS,
    Summary,
    build_clip_dataset,
    fgplg_predictor,
    generate,
    load_generator,
    warp_predictor,
)
from libs.networks.flow import FLOW_CHOICES, build_flow_estimator
from libs.utils.allocator import reuse_freed_memory
from libs.utils.precision import PRECISION_CHOICES, PrecisionError, describe, resolve_precision

PROG = "generate_pseudo_labels.py"

DESCRIPTION = """\
Write pseudo-labels for the DAVIS2016, FBMS and VOS training videos, keeping every
--label_interval-th ground-truth label (l) and generating --frame_between_label_num (m)
labels evenly spaced between two kept ones, each from the two kept labels around it.

Output: <pseudo-label-folder>/<m>_<l>/<dataset>/<video>/<frame>.png, the kept ground truth
copied unchanged and the generated labels at the frame's original size; the folder
<pseudo-label-folder>/<m>_<l> is what train.py --pseudo-label-folder reads. Files are
written atomically and existing ones are skipped, so an interrupted run resumes. Several
processes: torchrun --nproc_per_node=N generate_pseudo_labels.py ... (each takes a share
of the clips).
"""

EPILOG = """\
examples:
  python generate_pseudo_labels.py --data data/datasets --checkpoint models/pseudo_label_generator_5.pth \\
      --pseudo-label-folder data/pseudo-labels --label_interval 5 --frame_between_label_num 1
  python generate_pseudo_labels.py --flow dis --checkpoint models/checkpoints/fgplg_current_best_model.pth
  python generate_pseudo_labels.py --warp-only --flow dis     # the flow-warping baseline, no network
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    data = add_data_arguments(parser)
    data.add_argument("--checkpoint", default="models/pseudo_label_generator_5.pth",
                      help="the trained FGPLG (the release's file or train_fgplg.py's)")
    data.add_argument("--pseudo-label-folder", default="data/pseudo-labels",
                      help="where the <m>_<l>/ folder of labels is written")
    data.add_argument("--label_interval", default=5, type=positive_int,
                      help="keep every l-th ground-truth label")
    data.add_argument("--frame_between_label_num", default=1, type=non_negative_int,
                      help="the number of pseudo-labels generated between two kept labels (m)")
    data.add_argument("--datasets", nargs="+", metavar="NAME:SPLIT",
                      default=[f"{n}:{s}" for n, s in zip(DEFAULT_DATASETS, DEFAULT_SPLITS)],
                      help="the videos to label (not in the release, which always labels these three)")
    model = parser.add_argument_group("model")
    model.add_argument("--size", default=448, type=positive_int, help="frames are resized to size x size")
    model.add_argument("--os", default=16, type=output_stride, help="output stride of the backbone (8 or 16)")
    model.add_argument("--batch-size", default=1, type=positive_int, help="clips per batch")
    model.add_argument("--warp-only", action="store_true",
                       help="no network: each label is the mean of the two kept labels warped by the flow "
                            "(a baseline; --checkpoint is not read)")
    flow = parser.add_argument_group("flow")
    flow.add_argument("--flow", choices=FLOW_CHOICES, default="flownet2",
                      help="optical flow: flownet2 (the release's) or dis (OpenCV DIS, weight-free, CPU); "
                           "must be the one the FGPLG was trained with")
    flow.add_argument("--force-flow", action="store_true",
                      help="run an FGPLG trained with the other flow estimator anyway")
    flow.add_argument("--flownet-checkpoint", default=None,
                      help="NVIDIA's FlowNet2 weights: for --warp-only with flownet2, or --force-flow of a "
                           "DIS-trained FGPLG onto flownet2")
    flow.add_argument("--fp16", action="store_true",
                      help="run FlowNet2 in half precision (fp16 on CUDA, bf16 on CPU)")
    flow.add_argument("--rgb_max", type=positive_float, default=1.0,
                      help="FlowNet2 divides its [0, 1] frames by this")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", default="auto",
                         help="auto (CUDA when available), cpu, cuda or cuda:N; under torchrun each process "
                              "takes cuda:LOCAL_RANK")
    runtime.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                         help="FGPLG's saliency network: auto (the default: mixed where bfloat16 is native, "
                              "i.e. CPUs with AMX or AVX512-BF16 and CUDA GPUs of compute capability 8+; "
                              "else fp32), fp32 (the release's float32, exactly), mixed (float32 with the "
                              "full-resolution decoder in bfloat16, checked against float32), bf16 or fp16 "
                              "(autocast everywhere: fastest, further from fp32); the flow follows --fp16")
    return parser


def _dataset_pairs(items: list[str]) -> tuple[list[str], list[str]]:
    names, splits = [], []
    for item in items:
        name, sep, split = item.partition(":")
        if not sep or not name or not split:
            raise EngineError(f"--datasets {item!r}: expected NAME:SPLIT, e.g. DAVIS2016:train")
        names.append(name)
        splits.append(split)
    return names, splits


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        runtime = setup_runtime(args.device, "off", None)
        names, splits = _dataset_pairs(args.datasets)
        dataset = build_clip_dataset(args.data, args.dataset_config, args.size, args.label_interval,
                                     args.frame_between_label_num, names, splits)
        out = Path(args.pseudo_label_folder) / f"{args.frame_between_label_num}_{args.label_interval}"
        if args.warp_only:
            estimator = build_flow_estimator(args.flow, rgb_max=args.rgb_max, half_precision=args.fp16)
            if args.flow == "flownet2":
                if not args.flownet_checkpoint:
                    raise EngineError("--warp-only --flow flownet2 needs --flownet-checkpoint "
                                      "(NVIDIA's weights)")
                from flownet2.checkpoint import load_flownet2_checkpoint

                load_flownet2_checkpoint(estimator, args.flownet_checkpoint)
            predict = warp_predictor(estimator.to(runtime.device).eval())
            what = f"flow warping ({args.flow})"
        else:
            model = load_generator(args.checkpoint, args.flow, args.os, args.rgb_max, args.fp16,
                                   args.force_flow, args.flownet_checkpoint)
            try:
                precision = resolve_precision(args.precision, runtime.device)
                what_precision = describe(args.precision, runtime.device)
            except PrecisionError as error:
                raise EngineError(f"--precision: {error}") from None
            predict = fgplg_predictor(model.to(runtime.device), precision, runtime.device)
            what = f"FGPLG {args.checkpoint} ({model.flow_name}, {what_precision})"
        runtime.print(f"Generating pseudo-labels at {out} with {what}")
        runtime.print(f"label interval: {args.label_interval}, frames between labels: "
                      f"{args.frame_between_label_num}; device {runtime.device}"
                      + (f", {runtime.world_size} processes" if runtime.distributed else ""))

        def progress(batches, total):
            return tqdm(batches, total=total, desc="pseudo-labels", dynamic_ncols=True,
                        disable=None if runtime.is_main else True)

        summary = generate(predict, dataset, out, device=runtime.device, rank=runtime.rank,
                           world_size=runtime.world_size, batch_size=args.batch_size,
                           num_workers=args.num_workers, progress=progress)
        totals = Summary.from_tensor(torch.tensor(all_reduce_sum(runtime, summary.as_tensor().tolist())))
        runtime.print(f"done: {totals.line()}; labels in {out}")
        return 0

    return run_cli(run, PROG)


if __name__ == "__main__":
    reuse_freed_memory()  # a process of its own: keep freed activations mapped (libs.utils.allocator)
    sys.exit(main())
