#!/usr/bin/env python
"""Train RCRNet+NER (video stage, the release's train.py) or RCRNet (image pretraining stage).

Thin command line over `libs.engine`; see README.md, "Training".
"""
from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__" and "--demo" in sys.argv[1:]:
    # The demo runs on small, often shared CPUs: idle OpenMP threads should sleep rather than
    # spin (several times faster when another process competes for the cores). OpenMP reads
    # this when torch is first imported, so it is set before any import of torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from libs.cli import (  # noqa: E402
    ArgumentParser,
    add_data_arguments,
    add_model_arguments,
    add_runtime_arguments,
    add_training_arguments,
    check_training_run,
    recipe_options_from_args,
    run_cli,
    train_config_from_args,
)
from libs.engine.recipes import get_recipe, train  # noqa: E402
from libs.networks.models import NER_INITS  # noqa: E402
from libs.runtime.session import setup_runtime  # noqa: E402

PROG = "train.py"

DESCRIPTION = """\
Train RCRNet+NER on video clips (--stage video, the default: the release's train.py) or
pretrain RCRNet on image saliency datasets (--stage image, described by the paper but not
shipped by the release).

  video: DAVIS2016 + FBMS + VOS train clips, validated on VOS val; Adam lr 1e-5, 1 clip
         per batch, 50 epochs; initialised from models/image_pretrained_model.pth.
  image: MSRA-B + HKU-IS train images with colour jitter / random resized crop / flips,
         validated on their val splits; Adam lr 1e-4, 8 images per batch, 30 epochs;
         ResNet-50 from torchvision's ImageNet weights.

Writes <prefix>_current_best_model.pth (best validation S-measure), <prefix>_epoch-N.pth,
<prefix>_resume.pth and <prefix>_log.csv to --save-folder (prefix: video or image).
Several processes: torchrun --nproc_per_node=N train.py ...
"""

EPILOG = """\
examples:
  python train.py --demo
  python train.py --data data/datasets --checkpoint models/image_pretrained_model.pth
  python train.py --pseudo-label-folder data/pseudo-labels/1_5
  python train.py --stage image --checkpoint models/resnet50-0676ba61.pth
  python train.py --resume            # continue the run in --save-folder
  torchrun --nproc_per_node=2 train.py --precision bf16
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--stage", choices=("image", "video"), default="video",
                        help="video: RCRNet+NER on clips; image: RCRNet pretraining on images")
    parser.add_argument("--demo", action="store_true",
                        help="train on built-in synthetic data from scratch on the CPU (a few minutes, "
                             "nothing downloaded) and print a results table; ignores the data, model and "
                             "training flags. A check that the code trains and scores, not a model: it "
                             "learns small synthetic shapes and gives noise on real video")
    data = add_data_arguments(parser)
    video, image = get_recipe("video"), get_recipe("image")
    data.add_argument("--checkpoint", default=None, metavar="FILE",
                      help="initial weights. video: an ImageModel file (default "
                           f"{video.checkpoint}) or a VideoModel file; image: torchvision's "
                           "resnet50 .pth or an ImageModel file (default: download torchvision's ImageNet "
                           "weights); 'none': fresh initialisation")
    data.add_argument("--pseudo-label-folder", default="", metavar="DIR",
                      help="video stage: read every training label from this folder (written by "
                           "generate_pseudo_labels.py, e.g. data/pseudo-labels/1_5)")
    data.add_argument("--clip-augment", action="store_true",
                      help="video stage: augment training clips like the image stage (one draw per clip; "
                           "not in the release)")
    data.add_argument("--ner-init", choices=NER_INITS, default="spec",
                      help="video stage: initialisation of a fresh NER module (non-local blocks, ConvGRUs, "
                           "bidirection_conv): spec (Kaiming normal, biases 0.001, as the paper's code "
                           "intends) or release (PyTorch's defaults, what the release's code really did; "
                           "see README, Deviations)")
    add_training_arguments(parser, lr=None, batch_size=None, epochs=None, default_notes={
        name: f"(default: {getattr(video, name):g} video, {getattr(image, name):g} image)"
        for name in ("lr", "batch_size", "epochs")})
    add_model_arguments(parser)
    add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        if args.demo:
            from libs.demo import run_demo

            run_demo(device=args.device, precision=args.precision,
                     seed=args.seed if args.seed is not None else 0)
            return 0
        recipe = get_recipe(args.stage)
        runtime = setup_runtime(args.device, args.seed)
        batch_size = args.batch_size if args.batch_size is not None else recipe.batch_size
        check_training_run(args, recipe.prefix, runtime, batch_size,
                           clip_len=args.clip_len if recipe.clip_len is not None else None)
        config = train_config_from_args(
            args,
            lr=args.lr if args.lr is not None else recipe.lr,
            batch_size=batch_size,
            epochs=args.epochs if args.epochs is not None else recipe.epochs,
        )
        train(recipe, runtime, config, recipe_options_from_args(
            args, pseudo_label_folder=args.pseudo_label_folder or None), precision=args.precision)
        return 0

    return run_cli(run, PROG)


if __name__ == "__main__":
    sys.exit(main())
