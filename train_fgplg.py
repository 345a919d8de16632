#!/usr/bin/env python
"""Train the flow-guided pseudo-label generator (FGPLG): the release's train_fgplg.py.

Thin command line over `libs.engine.fgplg` and the shared training loop (`libs.engine`);
see README.md, "Pseudo-labels (FGPLG)".
"""
from __future__ import annotations

import argparse
import sys

from libs.engine import (
    ArgumentParser,
    add_data_arguments,
    add_model_arguments,
    add_runtime_arguments,
    add_training_arguments,
    run_cli,
    setup_runtime,
    train_config_from_args,
)
from libs.engine.cli import positive_float, positive_int
from libs.engine.fgplg import train_fgplg
from libs.networks.flow import FLOW_CHOICES

PROG = "train_fgplg.py"

DESCRIPTION = """\
Train FGPLG on clips [labelled, target, labelled] of three consecutive kept labels (every
--label_interval-th annotation) of the DAVIS2016, FBMS and VOS training videos, validated
on VOS val clips built the same way; BCE on the middle frame; Adam.

Starts from the image-pretrained RCRNet (--checkpoint; its stem widened from 3 to 7 input
channels) and NVIDIA's FlowNet2 (--flownet-checkpoint), which stays frozen. --flow dis uses
OpenCV's DIS optical flow instead: no FlowNet2 weights, fast on a CPU; the checkpoints then
hold no flownet.* weights and generate_pseudo_labels.py needs --flow dis for them.

Writes fgplg_current_best_model.pth (best validation S-measure), fgplg_epoch-N.pth,
fgplg_resume.pth and fgplg_log.csv to --save-folder.
Several processes: torchrun --nproc_per_node=N train_fgplg.py ...
"""

EPILOG = """\
examples:
  python train_fgplg.py --data data/datasets --label_interval 5 \\
      --checkpoint models/image_pretrained_model.pth --flownet-checkpoint models/FlowNet2_checkpoint.pth.tar
  python train_fgplg.py --flow dis --checkpoint models/image_pretrained_model.pth
  python train_fgplg.py --resume      # continue the run in --save-folder
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    data = add_data_arguments(parser)
    data.add_argument("--checkpoint", default="models/image_pretrained_model.pth",
                      help="initial weights: an ImageModel file (the release's start), an FGPLG file "
                           "(required with --start-epoch > 0), or 'none' for a fresh backbone")
    data.add_argument("--flownet-checkpoint", default="models/FlowNet2_checkpoint.pth.tar",
                      help="NVIDIA's FlowNet2 weights (--flow flownet2); 'none' leaves FlowNet2 random "
                           "(tests)")
    data.add_argument("--label_interval", default=5, type=positive_int,
                      help="keep every l-th ground-truth label")
    add_training_arguments(parser, lr=1e-5, batch_size=1, epochs=50)
    add_model_arguments(parser, clip_len=3)
    flow = parser.add_argument_group("flow")
    flow.add_argument("--flow", choices=FLOW_CHOICES, default="flownet2",
                      help="optical flow: flownet2 (the release's) or dis (OpenCV DIS, weight-free, CPU)")
    flow.add_argument("--force-flow", action="store_true",
                      help="load an FGPLG --checkpoint trained with the other flow estimator anyway")
    flow.add_argument("--fp16", action="store_true",
                      help="run FlowNet2 in half precision (fp16 on CUDA, bf16 on CPU; its correlation, "
                           "warping and channel norm stay in float32)")
    flow.add_argument("--rgb_max", type=positive_float, default=1.0,
                      help="FlowNet2 divides its [0, 1] frames by this")
    add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        runtime = setup_runtime(args.device, args.amp, args.seed)
        train_fgplg(runtime, train_config_from_args(args), data=args.data, dataset_config=args.dataset_config,
                    size=args.size, output_stride=args.os, label_interval=args.label_interval,
                    clip_len=args.clip_len, flow=args.flow, checkpoint=args.checkpoint,
                    flownet_checkpoint=args.flownet_checkpoint, rgb_max=args.rgb_max, fp16=args.fp16,
                    force_flow=args.force_flow)
        return 0

    return run_cli(run, PROG)


if __name__ == "__main__":
    sys.exit(main())
