"""RCRNet's two training stages: datasets, initial weights and defaults (what train.py runs).

- `video` (the release's train.py, SPEC §8): RCRNet+NER (VideoModel) on clips of the
  DAVIS2016, FBMS and VOS training splits, validated on VOS val; frames resized to
  448x448 without augmentation; Adam, lr 1e-5, 1 clip per batch, 50 epochs; backbone
  BatchNorm frozen; initialised from the image-pretrained RCRNet
  (`models/image_pretrained_model.pth`).
- `image` (described by the paper, not shipped by the release): RCRNet (ImageModel) on
  the MSRA-B and HKU-IS training splits, validated on their val splits, with the
  release's image-mode augmentation (colour jitter, random resized crop, flips) to
  448x448; ImageNet ResNet-50 backbone (torchvision IMAGENET1K_V1, the weights the
  release used); BatchNorm trains; Adam, lr 1e-4, 8 images per batch, 30 epochs.

`--checkpoint none` starts either stage from a fresh initialisation (no file, nothing
downloaded), which the demo and the tests use.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from libs.datasets import get_datasets, get_transforms, use_pseudo_labels
from libs.inference.predictor import checkpoint_kind
from libs.networks import ImageModel, VideoModel
from libs.utils.checkpoint import (
    init_backbone_from_imagenet,
    init_video_from_image,
    load_image_model,
    load_video_model,
    read_state_dict,
)

from .errors import EngineError
from .runtime import Runtime
from .tasks import ImageSaliencyTask, Task, VideoSaliencyTask
from .trainer import FitResult, TrainConfig, Trainer

DatasetList = Sequence[tuple[str, str]]
NO_CHECKPOINT = "none"


@dataclass(frozen=True)
class Stage:
    """One training stage's datasets and default hyperparameters."""

    name: str
    prefix: str
    train_sets: tuple[tuple[str, str], ...]
    val_sets: tuple[tuple[str, str], ...]
    lr: float
    batch_size: int
    epochs: int
    checkpoint: str | None
    description: str


STAGES: dict[str, Stage] = {
    "video": Stage(
        name="video", prefix="video",
        train_sets=(("DAVIS2016", "train"), ("FBMS", "train"), ("VOS", "train")),
        val_sets=(("VOS", "val"),),
        lr=1e-5, batch_size=1, epochs=50, checkpoint="models/image_pretrained_model.pth",
        description="RCRNet+NER on DAVIS2016/FBMS/VOS train clips, validated on VOS val",
    ),
    "image": Stage(
        name="image", prefix="image",
        train_sets=(("MSRA-B", "train"), ("HKU-IS", "train")),
        val_sets=(("MSRA-B", "val"), ("HKU-IS", "val")),
        lr=1e-4, batch_size=8, epochs=30, checkpoint=None,
        description="RCRNet on MSRA-B/HKU-IS train images (augmented), validated on their val splits",
    ),
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise EngineError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
    return STAGES[name]


def _split(pairs: DatasetList) -> tuple[list[str], list[str]]:
    return [name for name, _ in pairs], [split for _, split in pairs]


def build_datasets(stage: Stage, data: str | Path, dataset_config: str | Path, size: int, clip_len: int = 4,
                   pseudo_label_folder: str | Path | None = None, clip_augment: bool = False,
                   train_sets: DatasetList | None = None,
                   val_sets: DatasetList | None = None) -> tuple[Dataset, Dataset]:
    """The (training, validation) datasets of a stage (`train_sets`/`val_sets` override its lists)."""
    image_mode = stage.name == "image"
    transforms = get_transforms(image_mode, size, clip_augment=clip_augment and not image_mode)
    names, splits = _split(train_sets or stage.train_sets)
    val_names, val_splits = _split(val_sets or stage.val_sets)
    common = {"config_path": dataset_config, "root": data, "training": True}
    if image_mode:
        if pseudo_label_folder:
            raise EngineError("--pseudo-label-folder applies to the video stage only")
        train = get_datasets(names, splits, transforms=transforms["train"], **common)
        val = get_datasets(val_names, val_splits, transforms=transforms["val"], **common)
        return train, val
    train = get_datasets(names, splits, transforms=transforms["train"], read_clip=True,
                         random_reverse_clip=True, clip_len=clip_len, **common)
    if pseudo_label_folder:
        use_pseudo_labels(train, pseudo_label_folder, clip_len)
    val = get_datasets(val_names, val_splits, transforms=transforms["val"], read_clip=True,
                       random_reverse_clip=False, clip_len=clip_len, **common)
    return train, val


def _checkpoint_file(path: str | Path, stage: Stage) -> Path:
    path = Path(path)
    if not path.is_file():
        hint = ("the release's image_pretrained_model.pth (see README, Training)" if stage.name == "video"
                else "torchvision's resnet50-0676ba61.pth or an ImageModel checkpoint")
        raise EngineError(f"--checkpoint {path}: no such file; download {hint} there, or pass "
                          f"--checkpoint {NO_CHECKPOINT} to start from a fresh initialisation")
    return path


def build_model(stage: Stage, output_stride: int = 16, checkpoint: str | Path | None = None,
                start_epoch: int = 0, log: bool = True, ner_init: str = "spec") -> nn.Module:
    """The stage's model with its initial weights.

    video: `checkpoint` is an ImageModel file (backbone loaded, NER fresh, the release's
    start) or a VideoModel file (everything loaded); with `start_epoch` > 0 it must be a
    VideoModel file. image: None fetches torchvision's ImageNet ResNet-50; a file is either
    torchvision's resnet50 state dict or an ImageModel checkpoint (fine-tuning; required
    with `start_epoch` > 0). "none": fresh initialisation everywhere. `ner_init`: how a fresh NER
    module is initialised (`libs.networks.models.NER_INITS`).
    """
    def say(text: str) -> None:
        if log:
            print(text, flush=True)

    if stage.name == "video":
        model: nn.Module = VideoModel(output_stride=output_stride, ner_init=ner_init)
        if checkpoint is None or str(checkpoint).lower() == NO_CHECKPOINT:
            say("VideoModel: fresh initialisation (no checkpoint)")
            return model
        path = _checkpoint_file(checkpoint, stage)
        if start_epoch > 0 or checkpoint_kind(path) == "video":
            load_video_model(model, path)
            say(f"VideoModel: all weights from {path}")
        else:
            init_video_from_image(model, path)
            say(f"VideoModel: backbone from {path}, NER module freshly initialised")
        return model
    model = ImageModel(output_stride=output_stride)
    if checkpoint is not None and str(checkpoint).lower() == NO_CHECKPOINT:
        say("ImageModel: fresh initialisation (no checkpoint)")
        return model
    if checkpoint is None:
        if start_epoch > 0:
            raise EngineError("--start-epoch > 0 needs --checkpoint: the ImageModel file to continue from")
        init_backbone_from_imagenet(model.backbone)
        say("ImageModel: ResNet-50 from torchvision IMAGENET1K_V1, the rest freshly initialised")
        return model
    path = _checkpoint_file(checkpoint, stage)
    keys = read_state_dict(path).keys()
    if start_epoch > 0 or any(k.startswith("backbone.") for k in keys):
        load_image_model(model, path)
        say(f"ImageModel: all weights from {path}")
    else:
        init_backbone_from_imagenet(model.backbone, path)
        say(f"ImageModel: ResNet-50 from {path}, the rest freshly initialised")
    return model


def make_task(stage: Stage, model: nn.Module) -> Task:
    """The training task of a stage around `model`."""
    return VideoSaliencyTask(model) if stage.name == "video" else ImageSaliencyTask(model)


def train_stage(stage: Stage, runtime: Runtime, config: TrainConfig, *, data: str | Path,
                dataset_config: str | Path, size: int, output_stride: int = 16, clip_len: int = 4,
                checkpoint: str | Path | None = None, pseudo_label_folder: str | Path | None = None,
                clip_augment: bool = False, train_sets: DatasetList | None = None,
                val_sets: DatasetList | None = None, model: nn.Module | None = None,
                ner_init: str = "spec") -> FitResult:
    """Build the datasets, the model (unless given) and the task of `stage`, then train."""
    train_set, val_set = build_datasets(stage, data, dataset_config, size, clip_len, pseudo_label_folder,
                                        clip_augment, train_sets, val_sets)
    runtime.print(f"{stage.name} stage: {stage.description}")
    runtime.print(f"{runtime.describe()}; {len(train_set)} training and {len(val_set)} validation "
                  f"{'images' if stage.name == 'image' else 'clips'}")
    if model is None:
        # with --resume the weights come from the resume file: no checkpoint is read
        initial = NO_CHECKPOINT if config.resume is not None else checkpoint
        model = build_model(stage, output_stride, initial, config.start_epoch, log=runtime.is_main,
                            ner_init=ner_init)
    trainer = Trainer(make_task(stage, model), runtime, config, train_set, val_set)
    return trainer.fit()
