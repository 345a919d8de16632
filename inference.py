#!/usr/bin/env python
"""Predict saliency maps with a trained RCRNet+NER (the release's inference.py, extended).

Thin command line over `libs.inference`; see README.md, "Inference".
"""
from __future__ import annotations

import argparse
from pathlib import Path

from libs.cli import (
    ArgumentParser,
    add_data_arguments,
    add_model_arguments,
    exit_process,
    positive_int,
    run_cli,
)
from libs.inference import InferenceOptions, Predictor, evaluate_split, infer_input, infer_split
from libs.inference.predictor import COMPILE_MIN_FRAMES
from libs.runtime.errors import UserError
from libs.runtime.limits import check_run_memory
from libs.runtime.plan import COMPILE_CHOICES, plan_run
from libs.runtime.precision import PRECISION_CHOICES
from libs.runtime.session import resolve_device

PROG = "inference.py"

DESCRIPTION = """\
Predict saliency maps with RCRNet+NER (or RCRNet: the checkpoint's kind is detected) and
write them as 8-bit PNGs at each frame's original size:

  benchmark split:  <results-folder>/<dataset>/<video>/<frame>.png   (the release's layout
                    and clip sampling: the split's annotated frames, clips of --clip-len)
  --input PATH:     <results-folder>/<name>/<frame>.png for every frame of a folder of
                    images or of a video file (name: the folder's or file's name)

Clips whose maps all exist are skipped unless --overwrite, so a killed run resumes.
"""

EPILOG = """\
examples:
  python inference.py --data data/datasets --dataset VOS --split test
  python inference.py --dataset DAVIS2016 --split val --evaluate
  python inference.py --input my_video.mp4 --overlay --results-folder data/results
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    data = add_data_arguments(parser)
    data.add_argument("--dataset", default="VOS", type=str, metavar="NAME", help="dataset name for inference")
    data.add_argument("--split", default="test", type=str, metavar="NAME", help="dataset split for inference")
    data.add_argument("--input", default=None, metavar="PATH",
                      help="a folder of frames or a video file to predict instead of a dataset split")
    data.add_argument("--checkpoint", default="models/video_best_model.pth", metavar="FILE",
                      help="VideoModel (or ImageModel) weights, e.g. the release's video_best_model.pth")
    out = parser.add_argument_group("output")
    out.add_argument("--results-folder", default="data/results/", metavar="DIR",
                     help="where the saliency maps are written")
    out.add_argument("--overwrite", action="store_true", help="predict again clips whose maps already exist")
    out.add_argument("--overlay", action="store_true",
                     help="also write frame | saliency | overlay panels to <results-folder>/<name>_overlay/")
    out.add_argument("--evaluate", action="store_true",
                     help="score the split's maps against its ground truth afterwards and print the table "
                          "(S-measure, MAE, max F)")
    model = add_model_arguments(parser)
    model.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                       help="clips per forward pass")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    runtime.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                         help="auto (the default: float32, with the factored decoder on a CPU, which is "
                              "fewer operations than the release's resize-then-conv: the same maps up to "
                              "rounding), fp32 (the release's float32 computation), bf16 or fp16 (autocast "
                              "everywhere: faster where bfloat16 is native, far from fp32); see README, "
                              "Performance")
    runtime.add_argument("--compile", default="auto", choices=COMPILE_CHOICES,
                         help="torch.compile the model: on, off, or auto (for runs of at least "
                              f"{COMPILE_MIN_FRAMES} frames: compiled where it measures faster)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        if args.evaluate and args.input:
            raise UserError("--evaluate needs a dataset split with ground truth, not --input")
        checkpoint = Path(args.checkpoint)
        if not checkpoint.is_file():
            found = "a folder, not a file" if checkpoint.is_dir() else "no such file"
            raise UserError(f"--checkpoint {checkpoint}: {found} (the release's video_best_model.pth "
                            "goes in models/, see README)")
        plan = plan_run("inference", resolve_device(args.device), args.precision, args.compile)
        predictor = Predictor.from_checkpoint(checkpoint, plan, args.os,
                                              report=lambda line: print(line, flush=True))
        print(f"{predictor.kind} model from {checkpoint} on {predictor.device}, {predictor.describe()}",
              flush=True)
        check_run_memory(predictor.device, size=args.size, batch_size=args.batch_size, clip_len=args.clip_len,
                         training=False)
        options = InferenceOptions(results_folder=Path(args.results_folder), size=args.size,
                                   clip_len=args.clip_len, batch_size=args.batch_size,
                                   num_workers=args.num_workers, overwrite=args.overwrite,
                                   overlay=args.overlay)
        if args.input:
            summary = infer_input(predictor, args.input, options)
        else:
            summary = infer_split(predictor, args.data, args.dataset, args.split, args.dataset_config,
                                  options)
        print(summary.describe(), flush=True)
        if args.evaluate:
            print(evaluate_split(options.results_folder, args.data, summary.name, args.split,
                                 args.dataset_config, workers=max(1, args.num_workers)), flush=True)
        return 0

    return run_cli(run, PROG)


if __name__ == "__main__":
    exit_process(main())
