#!/usr/bin/env python
"""Generate pseudo-labels with a trained FGPLG: the release's generate_pseudo_labels.py.

Thin command line over `libs.inference.pseudo_labels`; see README.md, "Pseudo-labels (FGPLG)".
"""
from __future__ import annotations

import argparse

from tqdm import tqdm

from libs.cli import (
    ArgumentParser,
    add_data_arguments,
    add_flow_arguments,
    add_label_arguments,
    add_runtime_arguments,
    exit_process,
    frame_size,
    output_stride,
    positive_int,
    run_cli,
)
from libs.datasets.splits import PSEUDO_LABEL_SETS, pair_dataset_splits, parse_dataset_splits
from libs.inference.pseudo_labels import PseudoLabelOptions, generate_pseudo_labels
from libs.runtime.errors import UserError
from libs.runtime.limits import check_run_memory
from libs.runtime.precision import PRECISION_CHOICES
from libs.runtime.session import setup_runtime

PROG = "generate_pseudo_labels.py"

DESCRIPTION = """\
Write pseudo-labels for the DAVIS2016, FBMS and VOS training videos, keeping every
--label-interval-th ground-truth label (l) and generating --frame-between-label-num (m)
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
      --pseudo-label-folder data/pseudo-labels --label-interval 5 --frame-between-label-num 1
  python generate_pseudo_labels.py --flow dis --checkpoint models/checkpoints/fgplg_current_best_model.pth
  python generate_pseudo_labels.py --warp-only --flow dis     # the flow-warping baseline, no network
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    data = add_data_arguments(parser)
    data.add_argument("--checkpoint", default=str(PseudoLabelOptions.checkpoint), metavar="FILE",
                      help="the trained FGPLG (the release's file or train_fgplg.py's)")
    data.add_argument("--pseudo-label-folder", default=str(PseudoLabelOptions.pseudo_label_folder),
                      metavar="DIR",
                      help="where the <m>_<l>/ folder of labels is written")
    add_label_arguments(data, between=True)
    data.add_argument("--datasets", nargs="+", metavar="NAME:SPLIT", default=None,
                      help="the videos to label (not in the release, which always labels "
                           + " ".join(f"{n}:{s}" for n, s in PSEUDO_LABEL_SETS) + ")")
    data.add_argument("--overwrite", action="store_true",
                      help="replace the labels in the <m>_<l>/ folder (without it, a folder of labels made "
                           "with other settings is refused; with the same settings the run continues)")
    data.add_argument("--dataset", action="append", metavar="NAME",
                      help="instead of --datasets, as in inference.py and evaluate.py: a dataset to label, "
                           "paired with the --split at the same position; repeat for several")
    data.add_argument("--split", action="append", metavar="NAME",
                      help="the split of the --dataset at the same position (a single --split: for all)")
    model = parser.add_argument_group("model")
    model.add_argument("--size", default=448, type=frame_size, metavar="N",
                       help="frames are resized to size x size pixels")
    model.add_argument("--os", default=16, type=output_stride,
                       help="output stride of the backbone (8 or 16)")
    model.add_argument("--batch-size", default=1, type=positive_int, metavar="N", help="clips per batch")
    model.add_argument("--warp-only", action="store_true",
                       help="no network: each label is the mean of the two kept labels warped by the flow "
                            "(a baseline; --checkpoint is not read)")
    add_flow_arguments(parser, None, "NVIDIA's FlowNet2 weights: for --warp-only with flownet2, or "
                                     "--force-flow of a DIS-trained FGPLG onto flownet2")
    add_runtime_arguments(parser, PRECISION_CHOICES, (
        "FGPLG's saliency network: auto (the default: float32, with the factored decoder on a CPU, "
        "fewer operations than the release's resize-then-conv), fp32 (the release's float32, the model "
        "as it is), bf16 or fp16 (autocast everywhere: faster where bfloat16 is native, far from fp32); "
        "the flow follows --fp16"),
        resumable=False)
    return parser


def selected_datasets(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The (dataset, split) pairs of --datasets NAME:SPLIT or --dataset/--split (default: the release's)."""
    if args.dataset or args.split:
        if args.datasets:
            raise UserError("give --datasets NAME:SPLIT or --dataset/--split pairs, not both")
        try:
            return pair_dataset_splits(args.dataset or [], args.split or [])
        except ValueError as error:
            raise UserError(str(error)) from None
    try:
        return parse_dataset_splits(args.datasets or [f"{n}:{s}" for n, s in PSEUDO_LABEL_SETS])
    except ValueError as error:
        raise UserError(f"--datasets {error}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        datasets = selected_datasets(args)
        options = PseudoLabelOptions(
            data=args.data, dataset_config=args.dataset_config, pseudo_label_folder=args.pseudo_label_folder,
            checkpoint=args.checkpoint, label_interval=args.label_interval,
            frame_between_label_num=args.frame_between_label_num, datasets=datasets, size=args.size,
            output_stride=args.os, batch_size=args.batch_size, num_workers=args.num_workers,
            warp_only=args.warp_only, flow=args.flow, force_flow=args.force_flow,
            flownet_checkpoint=args.flownet_checkpoint, fp16=args.fp16, rgb_max=args.rgb_max,
            precision=args.precision, overwrite=args.overwrite)
        runtime = setup_runtime(args.device, args.seed)
        check_run_memory(runtime.device, size=args.size, batch_size=args.batch_size, clip_len=3,
                         training=False)

        def progress(batches, total):
            return tqdm(batches, total=total, desc="pseudo-labels", dynamic_ncols=True,
                        disable=None if runtime.is_main else True)

        totals = generate_pseudo_labels(options, runtime, progress)
        runtime.print(f"done: {totals.line()}; labels in {options.out}")
        return 0

    return run_cli(run, PROG)


if __name__ == "__main__":
    exit_process(main())
