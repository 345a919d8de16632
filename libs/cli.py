"""The command line of the five scripts (and scripts/): one parser class, one spelling per flag,
one error style.

- `ArgumentParser`, the flag types and `run_command` come from `libs.runtime.arguments`, the
  bottom layer, where the `python -m` entry points below this module take them from too:
  usage errors are one line (`prog: error: ... (see --help)`) and `--help` shows defaults.
- Flag groups shared by the scripts (`add_data_arguments`, `add_model_arguments`,
  `add_training_arguments`, `add_label_arguments`, `add_flow_arguments`,
  `add_runtime_arguments`): the release's flags with the release's defaults. Every multi-word
  flag is spelled with dashes; the release's underscore spellings (`--clip_len`,
  `--label_interval`, `--frame_between_label_num`, `--num_workers`, `--rgb_max`) are aliases.
  `-j`/`--num-workers` always counts worker processes (DataLoader workers; evaluate.py's
  scoring processes). `--help` shows every flag's choices or range (`libs.runtime.arguments`).
- `train_config_from_args`, `recipe_options_from_args`: the objects those flags describe.
- `run_cli(main, prog)`: runs a script's main function with `libs.runtime.arguments.run_command`
  (user errors, `USER_ERRORS`: bad values, missing, unfit or unwritable files, as one
  `prog: error: ...` line on stderr with exit status 2; Ctrl-C with status 130), leaving the
  torchrun process group in any case.
- `exit_process(status)`: ends a script without the interpreter's teardown.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from flownet2.checkpoint import CheckpointError as FlowNetCheckpointError
from libs.datasets.config import DEFAULT_CONFIG, DEFAULT_DATA, PROJECT_ROOT
from libs.networks.flow import FLOW_CHOICES
from libs.networks.sizes import MIN_FRAME_SIZE, WHY_MIN_FRAME_SIZE
from libs.runtime import arguments
from libs.runtime.arguments import (  # noqa: F401  (re-exported: the scripts import them from here)
    ArgumentParser,
    HelpFormatter,
    allowed,
    int_at_least,
    non_negative_int,
    positive_float,
    positive_int,
    run_command,
)
from libs.runtime.limits import check_run_memory
from libs.runtime.ownership import prepare_save_folder
from libs.runtime.precision import PRECISION_CHOICES
from libs.runtime.session import Runtime, teardown_runtime

if TYPE_CHECKING:  # imported where used: inference.py starts without the training engine
    from libs.engine.recipes import RecipeOptions
    from libs.engine.trainer import TrainConfig

# Exceptions that mean "the input or the environment is wrong", not "the code is wrong".
USER_ERRORS: tuple[type[BaseException], ...] = (*arguments.USER_ERRORS, FlowNetCheckpointError)


@allowed("8 or 16")
def output_stride(text: str) -> int:
    """argparse type: 8 or 16."""
    value = int(text)
    if value not in (8, 16):
        raise argparse.ArgumentTypeError(f"must be 8 or 16, got {value}")
    return value


# argparse type: a frame size the networks take (`libs.networks.sizes.MIN_FRAME_SIZE` or more)
frame_size = int_at_least(MIN_FRAME_SIZE, "frame_size", WHY_MIN_FRAME_SIZE)


def add_data_arguments(parser: argparse.ArgumentParser, workers: int = 1) -> argparse._ArgumentGroup:
    """--data, --dataset-config, -j/--num-workers (release names and defaults)."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", type=str, default=DEFAULT_DATA, metavar="DIR",
                       help="folder holding the <dataset>/ folders, relative to the working directory")
    group.add_argument("--dataset-config", default=str(DEFAULT_CONFIG), metavar="PATH",
                       help="dataset config file: layouts and splits (default: "
                            f"{DEFAULT_CONFIG.relative_to(PROJECT_ROOT)} of this checkout)")
    group.add_argument("-j", "--num-workers", "--num_workers", dest="num_workers", default=workers,
                       type=non_negative_int, metavar="N",
                       help="DataLoader worker processes (0: load in the main process)")
    return group


def add_model_arguments(parser: argparse.ArgumentParser, clip_len: int = 4,
                        clip_lengths: tuple[int, ...] | None = None) -> argparse._ArgumentGroup:
    """--size, --os, --clip-len (release names and defaults); `clip_lengths` restricts --clip-len."""
    group = parser.add_argument_group("model")
    group.add_argument("--size", default=448, type=frame_size, metavar="N",
                       help="frames are resized to size x size pixels")
    group.add_argument("--os", default=16, type=output_stride,
                       help="output stride of the backbone (8 or 16)")
    group.add_argument("--clip-len", "--clip_len", dest="clip_len", type=positive_int, default=clip_len,
                       choices=clip_lengths, metavar=None if clip_lengths else "N",
                       help="the number of frames in a video clip" + (
                           f" ({' or '.join(map(str, clip_lengths))} only)" if clip_lengths else ""))
    return group


def add_training_arguments(parser: argparse.ArgumentParser, *, lr: float | None = 1e-5,
                           batch_size: int | None = 1, epochs: int | None = 50,
                           save_folder: str = "models/checkpoints",
                           default_notes: dict[str, str] | None = None) -> argparse._ArgumentGroup:
    """The release's training flags plus --resume, --overwrite and --plot.

    Pass None for lr/batch_size/epochs to resolve them later (per recipe) and describe those
    defaults in `default_notes` ({"lr": "(default: ...)", ...}, appended to their help).
    """
    notes = {k: f" {v}" for k, v in (default_notes or {}).items()}
    group = parser.add_argument_group("training")
    group.add_argument("--save-folder", default=save_folder, metavar="DIR",
                       help="where checkpoints, the resume file and the CSV log are written")
    group.add_argument("--batch-size", default=batch_size, type=positive_int, metavar="N",
                       help="items (frames or clips) per batch and per process" + notes.get("batch_size", ""))
    group.add_argument("--backup-epochs", type=positive_int, default=1, metavar="N",
                       help="write <prefix>_epoch-N.pth every this many epochs")
    group.add_argument("--epochs", type=non_negative_int, default=epochs, metavar="N",
                       help="the last epoch to train (epochs are numbered from 1)" + notes.get("epochs", ""))
    group.add_argument("--start-epoch", type=non_negative_int, default=0, metavar="N",
                       help="epochs already done: train from epoch start+1, and load --checkpoint as a "
                            "whole model of this recipe when > 0 (the release's restore)")
    group.add_argument("--eval-first", default=False, action="store_true",
                       help="validate the initial weights before training (logged as epoch start)")
    group.add_argument("--lr", "--learning-rate", default=lr, type=positive_float,
                       help="learning rate of Adam" + notes.get("lr", ""))
    group.add_argument("--resume", nargs="?", const="auto", default=None, metavar="FILE",
                       help="continue a stopped run: model, optimizer, scaler, epoch, best score and "
                            "random states from FILE (default <save-folder>/<prefix>_resume.pth)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the earlier run in --save-folder (its weights, resume file and log are "
                            "deleted when this run starts); without it or --resume such a folder is refused")
    group.add_argument("--plot", action="store_true",
                       help="draw the training curves to <save-folder>/<prefix>_log.png after every epoch")
    group.add_argument("--weights-format", choices=("pth", "safetensors"), default="pth",
                       help="format of the best and backup weights files (the resume file stays .pth)")
    return group


def add_label_arguments(group: argparse._ArgumentGroup, between: bool = False) -> None:
    """--label-interval (and, with `between`, --frame-between-label-num): the release's FGPLG flags."""
    group.add_argument("--label-interval", "--label_interval", dest="label_interval", default=5,
                       type=positive_int, metavar="L", help="keep every l-th ground-truth label")
    if between:
        group.add_argument("--frame-between-label-num", "--frame_between_label_num",
                           dest="frame_between_label_num", default=1, type=non_negative_int, metavar="M",
                           help="the number of pseudo-labels generated between two kept labels (m)")


def add_flow_arguments(parser: argparse.ArgumentParser, flownet_checkpoint: str | None,
                       flownet_help: str) -> argparse._ArgumentGroup:
    """--flow, --force-flow, --flownet-checkpoint, --fp16, --rgb-max (FGPLG's optical flow)."""
    flow = parser.add_argument_group("flow")
    flow.add_argument("--flow", choices=FLOW_CHOICES, default="flownet2",
                      help="optical flow: flownet2 (the release's) or dis (OpenCV DIS, weight-free, CPU); "
                           "an FGPLG checkpoint must be run with the one it was trained with")
    flow.add_argument("--force-flow", action="store_true",
                      help="load an FGPLG --checkpoint trained with the other flow estimator anyway")
    flow.add_argument("--flownet-checkpoint", default=flownet_checkpoint, metavar="FILE", help=flownet_help)
    flow.add_argument("--fp16", action="store_true",
                      help="run FlowNet2 in half precision (fp16 on CUDA, bf16 on CPU; its correlation, "
                           "warping and channel norm stay in float32)")
    flow.add_argument("--rgb-max", "--rgb_max", dest="rgb_max", type=positive_float, default=1.0, metavar="X",
                      help="FlowNet2 divides its [0, 1] frames by this")
    return flow


def add_runtime_arguments(parser: argparse.ArgumentParser,
                          precision_choices: tuple[str, ...] = PRECISION_CHOICES,
                          precision_help: str | None = None,
                          resumable: bool = True) -> argparse._ArgumentGroup:
    """--device, --precision, --seed (`resumable`: the run keeps its seed in a resume file)."""
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", default="auto",
                       help="auto (CUDA when available), cpu, cuda or cuda:N; under torchrun each process "
                            "takes cuda:LOCAL_RANK")
    group.add_argument("--precision", default="auto", choices=precision_choices,
                       help=precision_help or (
                           "auto (float32 with the factored decoder on a CPU; fp32, fp32 + channels-last "
                           "and, where bfloat16 is native, bf16 autocast + channels-last timed on one "
                           "training step when that costs at most 5%% of the first epoch, cached in "
                           "~/.cache/rcrnet/), fp32 (the release's float32), bf16 or fp16 (autocast, fp16 "
                           "with loss scaling)"))
    group.add_argument("--seed", type=int, default=None, metavar="N",
                       help="seed every random generator and ask PyTorch for deterministic algorithms "
                            "(default: a random seed, printed" + (
                                " and kept in the resume file)" if resumable else ")"))
    return group


def check_training_run(args: argparse.Namespace, prefix: str, runtime: Runtime, batch_size: int,
                       clip_len: int | None) -> None:
    """Before a training script touches anything: refuse a run that cannot fit in memory
    (`libs.runtime.limits`), then claim `--save-folder` for this run (`libs.runtime.ownership`:
    an earlier run's files there need `--resume` or `--overwrite`)."""
    check_run_memory(runtime.device, size=args.size, batch_size=batch_size, clip_len=clip_len, training=True)
    prepare_save_folder(args.save_folder, prefix, overwrite=args.overwrite, keep=[args.checkpoint],
                        continuing=args.resume is not None or args.start_epoch > 0,
                        is_main=runtime.is_main, log=runtime.print)


def train_config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    """The TrainConfig of parsed training flags (`overrides` win)."""
    values: dict[str, Any] = {
        "save_folder": Path(args.save_folder),
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "start_epoch": args.start_epoch,
        "backup_epochs": args.backup_epochs,
        "eval_first": args.eval_first,
        "resume": args.resume,
        "plot": args.plot,
        "weights_format": args.weights_format,
    }
    values.update(overrides)
    from libs.engine.trainer import TrainConfig

    return TrainConfig(**values)


def recipe_options_from_args(args: argparse.Namespace, **overrides: Any) -> RecipeOptions:
    """The RecipeOptions of parsed flags (those a script does not define keep their defaults)."""
    names = {"data": "data", "dataset_config": "dataset_config", "size": "size", "output_stride": "os",
             "clip_len": "clip_len", "checkpoint": "checkpoint", "pseudo_label_folder": "pseudo_label_folder",
             "clip_augment": "clip_augment", "ner_init": "ner_init", "label_interval": "label_interval",
             "flow": "flow", "flownet_checkpoint": "flownet_checkpoint", "rgb_max": "rgb_max",
             "flow_fp16": "fp16", "force_flow": "force_flow"}
    values = {field: getattr(args, flag) for field, flag in names.items() if hasattr(args, flag)}
    values.update(overrides)
    from libs.engine.recipes import RecipeOptions

    return RecipeOptions(**values)


def run_cli(main: Callable[[], int | None], prog: str) -> int:
    """Run `main()`, turning user errors into one stderr line (`run_command`); returns the exit
    status. The training runtime (the torchrun process group) is torn down in any case."""
    try:
        return run_command(main, prog, USER_ERRORS)
    finally:
        teardown_runtime()


def exit_process(status: int) -> NoReturn:
    """End the process with `status`, skipping the interpreter's teardown.

    Finalising torch's and torchvision's modules and freeing everything the run allocated
    is a noticeable share of a short run, and nothing in it is needed: by then every output
    is written and closed (atomically, the PNG writer pool joined, the DataLoader workers
    shut down, the runtime torn down by `run_cli`). Log handlers and stdout/stderr are
    flushed here.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
