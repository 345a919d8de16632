"""The three training recipes, as entries of one table: what train.py and train_fgplg.py run.

- `video` (the release's train.py): RCRNet+NER (VideoModel) on clips of the DAVIS2016, FBMS
  and VOS training splits, validated on VOS val; frames resized to 448x448 without
  augmentation; Adam, lr 1e-5, 1 clip per batch, 50 epochs; backbone BatchNorm frozen;
  initialised from the image-pretrained RCRNet (`models/image_pretrained_model.pth`).
- `image` (described by the paper, not shipped by the release): RCRNet (ImageModel) on the
  MSRA-B and HKU-IS training splits, validated on their val splits, with the release's
  image-mode augmentation (colour jitter, random resized crop, flips) to 448x448; ImageNet
  ResNet-50 backbone (torchvision IMAGENET1K_V1, the weights the release used); BatchNorm
  trains; Adam, lr 1e-4, 8 images per batch, 30 epochs.
- `fgplg` (the release's train_fgplg.py): FGPLG on clips [labelled, target, labelled] of
  three consecutive kept labels (every `label_interval`-th annotation) of the same training
  videos, randomly reversed, validated on VOS val clips built the same way; BCE on the
  middle frame; Adam, lr 1e-5, one clip per batch. It starts from the image-pretrained
  RCRNet (stem widened to 7 channels) and NVIDIA's FlowNet2, which stays frozen.

A `Recipe` holds what the release fixes; `RecipeOptions` holds what the user chooses (data,
sizes, initial weights, flow). `checkpoint="none"` starts from a fresh initialisation (no
file, nothing downloaded), which the demo and the tests use.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from libs.datasets import DatasetConfigError, get_datasets, get_transforms, use_pseudo_labels
from libs.datasets.config import DEFAULT_CONFIG, DEFAULT_DATA
from libs.datasets.splits import (
    IMAGE_TRAIN_SETS,
    IMAGE_VAL_SETS,
    VIDEO_TRAIN_SETS,
    VIDEO_VAL_SETS,
    DatasetSplits,
    names_and_splits,
)
from libs.modules import RELEASE_DECODER
from libs.networks import FGPLG, ImageModel, VideoModel
from libs.networks.sizes import check_frame_size
from libs.networks.weights import (
    checkpoint_kind,
    init_backbone_from_imagenet,
    init_fgplg,
    init_video_from_image,
    load_fgplg,
    load_flownet2,
    load_weights,
    read_state_dict,
)
from libs.runtime.errors import UserError
from libs.runtime.plan import plan_run
from libs.runtime.session import Runtime

from .tasks import FGPLGTask, ImageSaliencyTask, Task, VideoSaliencyTask
from .trainer import FitResult, TrainConfig, Trainer

NO_CHECKPOINT = "none"
FGPLG_CLIP_LEN = 3
FLOWNET2_URL = "https://github.com/NVIDIA/flownet2-pytorch#converted-caffe-pre-trained-models"


@dataclass(frozen=True)
class Recipe:
    """One training recipe's model, datasets and default hyperparameters."""

    name: str
    prefix: str
    train_sets: DatasetSplits
    val_sets: DatasetSplits
    lr: float
    batch_size: int
    epochs: int
    clip_len: int | None  # None: single frames
    checkpoint: str | None  # default initial weights (None: torchvision's ImageNet ResNet-50)
    description: str


RECIPES: dict[str, Recipe] = {
    "video": Recipe(
        name="video", prefix="video", train_sets=VIDEO_TRAIN_SETS, val_sets=VIDEO_VAL_SETS,
        lr=1e-5, batch_size=1, epochs=50, clip_len=4, checkpoint="models/image_pretrained_model.pth",
        description="RCRNet+NER on DAVIS2016/FBMS/VOS train clips, validated on VOS val",
    ),
    "image": Recipe(
        name="image", prefix="image", train_sets=IMAGE_TRAIN_SETS, val_sets=IMAGE_VAL_SETS,
        lr=1e-4, batch_size=8, epochs=30, clip_len=None, checkpoint=None,
        description="RCRNet on MSRA-B/HKU-IS train images (augmented), validated on their val splits",
    ),
    "fgplg": Recipe(
        name="fgplg", prefix="fgplg", train_sets=VIDEO_TRAIN_SETS, val_sets=VIDEO_VAL_SETS,
        lr=1e-5, batch_size=1, epochs=50, clip_len=FGPLG_CLIP_LEN,
        checkpoint="models/image_pretrained_model.pth",
        description="FGPLG on clips [labelled, target, labelled] of DAVIS2016/FBMS/VOS train, validated on "
                    "VOS val",
    ),
}


@dataclass(frozen=True)
class RecipeOptions:
    """What the user chooses for a recipe: data, sizes, initial weights and (FGPLG) the flow.

    `clip_len` and `checkpoint` default to the recipe's; `train_sets`/`val_sets` override its
    lists. `checkpoint`: a file, or "none" for a fresh initialisation.
    """

    data: str | Path = DEFAULT_DATA
    dataset_config: str | Path = DEFAULT_CONFIG
    size: int = 448
    output_stride: int = 16
    clip_len: int | None = None
    checkpoint: str | Path | None = None
    pseudo_label_folder: str | Path | None = None
    clip_augment: bool = False
    ner_init: str = "spec"
    label_interval: int = 5
    flow: str = "flownet2"
    flownet_checkpoint: str | Path | None = None
    rgb_max: float = 1.0
    flow_fp16: bool = False
    force_flow: bool = False
    train_sets: DatasetSplits | None = None
    val_sets: DatasetSplits | None = None


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return RECIPES[name]


def _is_none(value: str | Path | None) -> bool:
    return value is None or str(value).lower() == NO_CHECKPOINT


def build_datasets(recipe: Recipe, options: RecipeOptions) -> tuple[Dataset, Dataset]:
    """The (training, validation) datasets of a recipe."""
    clip_len = options.clip_len or recipe.clip_len
    names, splits = names_and_splits(options.train_sets or recipe.train_sets)
    val_names, val_splits = names_and_splits(options.val_sets or recipe.val_sets)
    common = {"config_path": options.dataset_config, "root": options.data, "training": True}
    if recipe.name == "image":
        if options.pseudo_label_folder:
            raise UserError("a pseudo-label folder applies to the video recipe only")
        transforms = get_transforms(True, options.size)
        return (get_datasets(names, splits, transforms=transforms["train"], **common),
                get_datasets(val_names, val_splits, transforms=transforms["val"], **common))
    if recipe.name == "fgplg":
        if clip_len != FGPLG_CLIP_LEN:
            raise UserError(f"clip length {clip_len}: FGPLG trains on clips of 3 frames "
                            "[labelled, target, labelled]")
        common.update(label_interval=options.label_interval)
    transforms = get_transforms(False, options.size, clip_augment=options.clip_augment)
    try:
        train = get_datasets(names, splits, transforms=transforms["train"], read_clip=True,
                             random_reverse_clip=True, clip_len=clip_len, **common)
        val = get_datasets(val_names, val_splits, transforms=transforms["val"], read_clip=True,
                           random_reverse_clip=False, clip_len=clip_len, **common)
    except DatasetConfigError:
        raise
    except ValueError as exc:  # the clip sampling's interval checks
        raise UserError(str(exc)) from exc
    if options.pseudo_label_folder:
        use_pseudo_labels(train, options.pseudo_label_folder, clip_len)
    return train, val


def _checkpoint_file(path: str | Path, recipe: Recipe) -> Path:
    path = Path(path)
    if not path.is_file():
        hint = {"video": "the release's image_pretrained_model.pth (see README, Training)",
                "image": "torchvision's resnet50-0676ba61.pth or an ImageModel checkpoint",
                "fgplg": "the image-pretrained RCRNet (models/image_pretrained_model.pth) or an FGPLG file"}
        raise UserError(f"checkpoint {path}: no such file; download {hint[recipe.name]} there, or pass "
                        f"--checkpoint {NO_CHECKPOINT} to start from a fresh initialisation")
    return path


def _flownet_file(options: RecipeOptions) -> Path | None:
    if _is_none(options.flownet_checkpoint):
        return None
    path = Path(options.flownet_checkpoint)
    if not path.is_file():
        raise UserError(f"FlowNet2 checkpoint {path}: no such file; download NVIDIA's FlowNet2 checkpoint "
                        f"({FLOWNET2_URL})")
    return path


def _build_video(options: RecipeOptions, checkpoint: str | Path | None,
                 start_epoch: int, decoder: str) -> tuple[nn.Module, str]:
    # a clip's frames through the backbone as one batch: faster a training step than the release's
    # frame loop; the backbone's BatchNorm is frozen, so only float32 rounding differs
    model = VideoModel(output_stride=options.output_stride, ner_init=options.ner_init, decoder=decoder,
                       frames_as_batch=True)
    if _is_none(checkpoint):
        return model, "VideoModel: fresh initialisation (no checkpoint)"
    path = _checkpoint_file(checkpoint, RECIPES["video"])
    state_dict = read_state_dict(path)
    if start_epoch > 0 or checkpoint_kind(state_dict) == "video":
        load_weights(model, state_dict)
        return model, f"VideoModel: all weights from {path}"
    init_video_from_image(model, state_dict)
    return model, f"VideoModel: backbone from {path}, NER module freshly initialised"


def _build_image(options: RecipeOptions, checkpoint: str | Path | None,
                 start_epoch: int, decoder: str) -> tuple[nn.Module, str]:
    model = ImageModel(output_stride=options.output_stride, decoder=decoder)
    if checkpoint is not None and _is_none(checkpoint):
        return model, "ImageModel: fresh initialisation (no checkpoint)"
    if checkpoint is None:
        if start_epoch > 0:
            raise UserError("--start-epoch > 0 needs --checkpoint: the ImageModel file to continue from")
        init_backbone_from_imagenet(model.backbone)
        return model, "ImageModel: ResNet-50 from torchvision IMAGENET1K_V1, the rest freshly initialised"
    path = _checkpoint_file(checkpoint, RECIPES["image"])
    state_dict = read_state_dict(path)
    if start_epoch > 0 or checkpoint_kind(state_dict) in ("image", "video"):
        load_weights(model, state_dict)
        return model, f"ImageModel: all weights from {path}"
    init_backbone_from_imagenet(model.backbone, state_dict)
    return model, f"ImageModel: ResNet-50 from {path}, the rest freshly initialised"


def _build_fgplg(options: RecipeOptions, checkpoint: str | Path | None,
                 start_epoch: int, decoder: str) -> tuple[nn.Module, str]:
    flow = options.flow
    try:
        model = FGPLG(output_stride=options.output_stride, flow=flow, rgb_max=options.rgb_max,
                      fp16=options.flow_fp16, decoder=decoder)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if _is_none(checkpoint):
        if start_epoch > 0:
            raise UserError("--start-epoch > 0 needs --checkpoint: the FGPLG file to continue from")
        said = f"FGPLG ({flow}): fresh backbone (no checkpoint)"
        if model.flow_name == "flownet2":
            flownet_file = _flownet_file(options)
            if flownet_file is None:
                return model, said + "; FlowNet2 left with random weights (--flownet-checkpoint none)"
            load_flownet2(model.flownet, flownet_file)
            said += f"; FlowNet2 from {flownet_file}"
        return model, said
    path = _checkpoint_file(checkpoint, RECIPES["fgplg"])
    state_dict = read_state_dict(path)
    if start_epoch > 0 or checkpoint_kind(state_dict) == "fgplg":
        flownet_file = None if _is_none(options.flownet_checkpoint) else Path(options.flownet_checkpoint)
        if flownet_file is not None and not flownet_file.is_file():
            flownet_file = None  # only needed to force a DIS-trained file onto flownet2
        trained = load_fgplg(model, state_dict, force_flow=options.force_flow,
                             flownet_checkpoint=flownet_file)
        return model, f"FGPLG ({flow}): all weights from {path} (trained with {trained})"
    flownet_file = _flownet_file(options) if model.flow_name == "flownet2" else None
    if model.flow_name == "flownet2" and flownet_file is None:
        raise UserError("--flownet-checkpoint none: an FGPLG with flownet2 started from an image model needs "
                        f"FlowNet2's weights ({FLOWNET2_URL})")
    init_fgplg(model, state_dict, flownet_file)
    return model, (f"FGPLG ({flow}): backbone from {path} (stem widened from 3 to 7 channels)"
                   + (f", FlowNet2 from {flownet_file}" if flownet_file is not None else ""))


_BUILDERS = {"video": _build_video, "image": _build_image, "fgplg": _build_fgplg}


def build_model(recipe: Recipe, options: RecipeOptions = RecipeOptions(), start_epoch: int = 0,
                log: bool = True, decoder: str = RELEASE_DECODER) -> nn.Module:
    """The recipe's model with its initial weights (`options.checkpoint`, default the recipe's).

    video: an ImageModel file (backbone loaded, NER fresh, the release's start) or a VideoModel
    file (everything); with `start_epoch` > 0 it must be a VideoModel file. image: None fetches
    torchvision's ImageNet ResNet-50; a file is torchvision's resnet50 state dict or an
    ImageModel checkpoint (fine-tuning; required with `start_epoch` > 0). fgplg: an ImageModel
    file (stem widened to 7 channels, FlowNet2 from `options.flownet_checkpoint`) or an FGPLG
    file (everything; the release's restore). "none": fresh initialisation. `decoder`: "release"
    (the default) or "factored" (the factored decoder), as the run's plan says.
    """
    checkpoint = options.checkpoint if options.checkpoint is not None else recipe.checkpoint
    model, said = _BUILDERS[recipe.name](options, checkpoint, start_epoch, decoder)
    if log:
        print(said, flush=True)
    return model


def run_settings(recipe: Recipe, options: RecipeOptions) -> dict[str, object]:
    """{flag: value} of what a recipe trains the model on; a resume must keep it (`TrainConfig.settings`)."""
    settings: dict[str, object] = {"--size": options.size, "--os": options.output_stride}
    if recipe.clip_len is not None:
        settings["--clip-len"] = options.clip_len or recipe.clip_len
    if recipe.name == "video":
        settings["--pseudo-label-folder"] = str(options.pseudo_label_folder or "")
        settings["--clip-augment"] = options.clip_augment
    if recipe.name == "fgplg":
        settings["--label-interval"] = options.label_interval
        settings["--flow"] = options.flow
    return settings


def make_task(recipe: Recipe, model: nn.Module) -> Task:
    """The training task of a recipe around `model`."""
    tasks = {"video": VideoSaliencyTask, "image": ImageSaliencyTask, "fgplg": FGPLGTask}
    return tasks[recipe.name](model)


def train(recipe: Recipe, runtime: Runtime, config: TrainConfig, options: RecipeOptions = RecipeOptions(),
          model: nn.Module | None = None, precision: str = "fp32") -> FitResult:
    """Resolve the run's plan (`--precision`, `libs.runtime.plan`), build the datasets, the model
    (unless given: then it must have been built with the plan's decoder) and the task of
    `recipe`, then train."""
    plan = plan_run("training", runtime.device, precision)
    check_frame_size(options.size, options.size)
    if recipe.name == "image" and config.batch_size < 2:
        raise UserError(f"--batch-size {config.batch_size}: the image stage trains BatchNorm, and the "
                        "1x1 map of ASPP's image-pooling branch needs at least 2 images per batch")
    train_set, val_set = build_datasets(recipe, options)
    if not config.settings:
        config = replace(config, settings=run_settings(recipe, options))
    runtime.print(f"{recipe.name} recipe: {recipe.description}")
    if recipe.name == "fgplg":
        runtime.print(f"FGPLG ({options.flow} flow), label interval {options.label_interval}")
    runtime.print(f"{runtime.describe()}; {len(train_set)} training and {len(val_set)} validation "
                  f"{'images' if recipe.clip_len is None else 'clips'}")
    if model is None:
        if config.resume is not None:
            # every weight (FlowNet2's too) comes from the resume file: no checkpoint is read
            fresh = replace(options, checkpoint=NO_CHECKPOINT, flownet_checkpoint=NO_CHECKPOINT)
            model = build_model(recipe, fresh, log=False, decoder=plan.decoder)
        else:
            model = build_model(recipe, options, config.start_epoch, log=runtime.is_main,
                                decoder=plan.decoder)
    trainer = Trainer(make_task(recipe, model), runtime, config, train_set, val_set, plan)
    return trainer.fit()
