#!/usr/bin/env python
"""Train the flow-guided pseudo-label generator (FGPLG): the release's train_fgplg.py.

Thin command line over the `fgplg` recipe of the shared training loop (`libs.engine`);
see README.md, "Pseudo-labels (FGPLG)".
"""
from __future__ import annotations

import argparse
import sys

from libs.cli import (
    ArgumentParser,
    add_data_arguments,
    add_flow_arguments,
    add_label_arguments,
    add_model_arguments,
    add_runtime_arguments,
    add_training_arguments,
    check_training_run,
    recipe_options_from_args,
    run_cli,
    train_config_from_args,
)
from libs.engine.recipes import RECIPES, train
from libs.runtime.session import setup_runtime

PROG = "train_fgplg.py"

DESCRIPTION = """\
Train FGPLG on clips [labelled, target, labelled] of three consecutive kept labels (every
--label-interval-th annotation) of the DAVIS2016, FBMS and VOS training videos, validated
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
  python train_fgplg.py --data data/datasets --label-interval 5 \\
      --checkpoint models/image_pretrained_model.pth --flownet-checkpoint models/FlowNet2_checkpoint.pth.tar
  python train_fgplg.py --flow dis --checkpoint models/image_pretrained_model.pth
  python train_fgplg.py --resume      # continue the run in --save-folder
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    data = add_data_arguments(parser)
    recipe = RECIPES["fgplg"]
    data.add_argument("--checkpoint", default=recipe.checkpoint, metavar="FILE",
                      help="initial weights: an ImageModel file (the release's start), an FGPLG file "
                           "(required with --start-epoch > 0), or 'none' for a fresh backbone")
    add_label_arguments(data)
    add_training_arguments(parser, lr=recipe.lr, batch_size=recipe.batch_size, epochs=recipe.epochs)
    add_model_arguments(parser, clip_len=recipe.clip_len, clip_lengths=(recipe.clip_len,))
    add_flow_arguments(parser, "models/FlowNet2_checkpoint.pth.tar",
                       "NVIDIA's FlowNet2 weights (--flow flownet2); 'none' leaves FlowNet2 random (tests)")
    add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        runtime = setup_runtime(args.device, args.seed)
        check_training_run(args, RECIPES["fgplg"].prefix, runtime, args.batch_size, clip_len=args.clip_len)
        train(RECIPES["fgplg"], runtime, train_config_from_args(args), recipe_options_from_args(args),
              precision=args.precision)
        return 0

    return run_cli(run, PROG)


if __name__ == "__main__":
    sys.exit(main())
