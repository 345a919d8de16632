"""Training FGPLG on the shared training loop (what `train_fgplg.py` runs; SPEC §8).

The release's recipe: clips [labelled, target, labelled] of three consecutive kept labels
(every `label_interval`-th annotation) of the DAVIS2016, FBMS and VOS training videos,
randomly reversed; validation on VOS val clips built the same way; BCE on the middle frame;
Adam, lr 1e-5, one clip per batch, frames resized to 448x448. The FGPLG starts from the
image-pretrained RCRNet (stem widened to 7 channels) and NVIDIA's FlowNet2, which stays frozen.
Files: `fgplg_current_best_model.pth`, `fgplg_epoch-N.pth` (plain state dicts, FlowNet2
included as in the release's `pseudo_label_generator_5.pth`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from flownet2.checkpoint import load_flownet2_checkpoint
from libs.datasets import DatasetConfigError, get_datasets, get_transforms
from libs.engine.errors import EngineError
from libs.engine.runtime import Runtime
from libs.engine.tasks import StepOutput, Task, bce_per_frame, frame_tensor
from libs.engine.trainer import FitResult, TrainConfig, Trainer
from libs.networks import FGPLG
from libs.utils.checkpoint import read_state_dict
from libs.utils.fgplg_checkpoint import init_fgplg, is_fgplg_state_dict, load_fgplg

TRAIN_SETS: tuple[tuple[str, str], ...] = (("DAVIS2016", "train"), ("FBMS", "train"), ("VOS", "train"))
VAL_SETS: tuple[tuple[str, str], ...] = (("VOS", "val"),)
FGPLG_CLIP_LEN = 3
NO_CHECKPOINT = "none"
FLOWNET2_URL = "https://github.com/NVIDIA/flownet2-pytorch#converted-caffe-pre-trained-models"


class FGPLGTask(Task):
    """FGPLG on clips [left, middle, right]: logits of the middle frame from its labelled ends.

    A batch is a list of 3 frame dicts (`image` [B, 3, H, W], `label` [B, 1, H, W]); the loss is
    the BCE of the middle frame. The flow estimator is frozen and the backbone's BatchNorm stays
    in eval mode.
    """

    prefix = "fgplg"

    def set_train_mode(self, model: nn.Module) -> None:
        model.train()
        model.freeze_bn()

    def step(self, model: nn.Module, batch: Any) -> StepOutput:
        if not isinstance(batch, Sequence) or len(batch) != FGPLG_CLIP_LEN:
            got = len(batch) if isinstance(batch, Sequence) else type(batch).__name__
            raise EngineError(f"FGPLG trains on clips of 3 frames [labelled, target, labelled], got {got}")
        images = [frame_tensor(frame, "image") for frame in batch]
        labels = [frame_tensor(frame, "label") for frame in batch]
        logits, target = model(images, labels)
        return StepOutput(bce_per_frame(logits, target), logits, target)


def _pairs(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [name for name, _ in pairs], [split for _, split in pairs]


def build_datasets(data: str | Path, dataset_config: str | Path, size: int, label_interval: int,
                   clip_len: int = FGPLG_CLIP_LEN, train_sets: Sequence[tuple[str, str]] = TRAIN_SETS,
                   val_sets: Sequence[tuple[str, str]] = VAL_SETS) -> tuple[Dataset, Dataset]:
    """The release's FGPLG (training, validation) clip datasets at `label_interval`."""
    if clip_len != FGPLG_CLIP_LEN:
        raise EngineError(f"--clip_len {clip_len}: FGPLG trains on clips of 3 frames "
                          "[labelled, target, labelled]")
    transforms = get_transforms(image_mode=False, input_size=size)
    common = {"config_path": dataset_config, "root": data, "training": True, "read_clip": True,
              "label_interval": label_interval, "clip_len": clip_len}
    try:
        names, splits = _pairs(train_sets)
        train = get_datasets(names, splits, transforms=transforms["train"], random_reverse_clip=True,
                             **common)
        names, splits = _pairs(val_sets)
        val = get_datasets(names, splits, transforms=transforms["val"], random_reverse_clip=False,
                           **common)
    except DatasetConfigError:
        raise
    except ValueError as exc:  # the clip sampling's interval checks
        raise EngineError(str(exc)) from exc
    return train, val


def _existing(path: str | Path, flag: str, hint: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{flag} {path}: no such file; {hint}")
    return path


def _flownet_file(path: Path) -> Path:
    return _existing(path, "--flownet-checkpoint", f"download NVIDIA's FlowNet2 checkpoint ({FLOWNET2_URL})")


def build_model(flow: str = "flownet2", output_stride: int = 16, checkpoint: str | Path | None = None,
                flownet_checkpoint: str | Path | None = None, start_epoch: int = 0, rgb_max: float = 1.0,
                fp16: bool = False, force_flow: bool = False, log: bool = True) -> FGPLG:
    """An FGPLG with its initial weights.

    `checkpoint`: an ImageModel file (the release's start: backbone from it, stem widened to 7
    channels) or an FGPLG file (everything loaded; required with `start_epoch` > 0, the
    release's restore); "none" or None: fresh backbone. With flownet2, FlowNet2's weights come
    from `flownet_checkpoint` (NVIDIA's file) unless the FGPLG file holds them; "none" leaves
    FlowNet2 random (tests only).
    """
    def say(text: str) -> None:
        if log:
            print(text, flush=True)

    try:
        model = FGPLG(output_stride=output_stride, flow=flow, rgb_max=rgb_max, fp16=fp16)
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    flownet_file = None if flownet_checkpoint is None or str(flownet_checkpoint).lower() == NO_CHECKPOINT \
        else Path(flownet_checkpoint)
    if checkpoint is None or str(checkpoint).lower() == NO_CHECKPOINT:
        if start_epoch > 0:
            raise EngineError("--start-epoch > 0 needs --checkpoint: the FGPLG file to continue from")
        say(f"FGPLG ({flow}): fresh backbone (no checkpoint)")
        if model.flow_name == "flownet2":
            if flownet_file is None:
                say("FGPLG: FlowNet2 left with random weights (--flownet-checkpoint none)")
            else:
                load_flownet2_checkpoint(model.flownet, _flownet_file(flownet_file))
                say(f"FGPLG: FlowNet2 from {flownet_file}")
        return model
    path = _existing(checkpoint, "--checkpoint",
                     "pass the image-pretrained RCRNet (models/image_pretrained_model.pth), an FGPLG file, "
                     f"or --checkpoint {NO_CHECKPOINT}")
    if start_epoch > 0 or is_fgplg_state_dict(read_state_dict(path)):
        if flownet_file is not None and not flownet_file.is_file():
            flownet_file = None  # only needed to force a DIS-trained file onto flownet2
        trained = load_fgplg(model, path, force_flow=force_flow, flownet_checkpoint=flownet_file)
        say(f"FGPLG ({flow}): all weights from {path} (trained with {trained})")
        return model
    if model.flow_name == "flownet2":
        if flownet_file is None:
            raise EngineError("--flownet-checkpoint none: an FGPLG with flownet2 started from an image model "
                              f"needs FlowNet2's weights ({FLOWNET2_URL})")
        _flownet_file(flownet_file)
    init_fgplg(model, path, flownet_file)
    say(f"FGPLG ({flow}): backbone from {path} (stem widened from 3 to 7 channels)"
        + (f", FlowNet2 from {flownet_file}" if model.flow_name == "flownet2" else ""))
    return model


def train_fgplg(runtime: Runtime, config: TrainConfig, *, data: str | Path, dataset_config: str | Path,
                size: int = 448, output_stride: int = 16, label_interval: int = 5,
                clip_len: int = FGPLG_CLIP_LEN, flow: str = "flownet2", checkpoint: str | Path | None = None,
                flownet_checkpoint: str | Path | None = None, rgb_max: float = 1.0, fp16: bool = False,
                force_flow: bool = False, model: FGPLG | None = None,
                train_sets: Sequence[tuple[str, str]] = TRAIN_SETS,
                val_sets: Sequence[tuple[str, str]] = VAL_SETS) -> FitResult:
    """Build the datasets and the model (unless given), then train FGPLG with the shared loop."""
    train_set, val_set = build_datasets(data, dataset_config, size, label_interval, clip_len, train_sets,
                                        val_sets)
    runtime.print(f"FGPLG ({flow} flow): label interval {label_interval}, clips [labelled, target, labelled] "
                  f"of {', '.join(n for n, _ in train_sets)} train, validated on "
                  f"{', '.join(f'{n} {s}' for n, s in val_sets)}")
    runtime.print(f"{runtime.describe()}; {len(train_set)} training and {len(val_set)} validation clips")
    if model is None:
        # with --resume every weight (FlowNet2's too) comes from the resume file
        resuming = config.resume is not None
        model = build_model(flow, output_stride, NO_CHECKPOINT if resuming else checkpoint,
                            NO_CHECKPOINT if resuming else flownet_checkpoint,
                            0 if resuming else config.start_epoch, rgb_max, fp16, force_flow,
                            log=runtime.is_main and not resuming)
    trainer = Trainer(FGPLGTask(model), runtime, config, train_set, val_set)
    return trainer.fit()
