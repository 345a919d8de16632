"""Tasks: what a batch means to a model, and so how it becomes a loss and predictions.

The training loop (`Trainer`) knows nothing about saliency models; a task tells it

- `prefix`: the checkpoint file prefix (`<prefix>_current_best_model.pth`, ...),
- `set_train_mode(model)`: train mode, with frozen BatchNorm where the recipe wants it,
- `trainable_parameters()` / `make_optimizer(lr)`: what trains and how,
- `step(model, batch)`: the forward pass, giving a `StepOutput` (loss to backpropagate,
  logits and labels of the frames that validation scores),
- `release_state_dict()`: what the release-style checkpoint files hold.

The tasks below cover RCRNet's image stage (one frame per item), its video stage (a clip
per item, loss summed over its frames as the release does) and FGPLG (a clip [left,
middle, right], loss on the middle frame).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from libs.runtime.errors import UserError


@dataclass
class StepOutput:
    """What one batch gives.

    `loss`: the scalar to backpropagate. `logits` [N, 1, H, W] and `labels` [N, 1, H, W] (in
    [0, 1]): the frames that the metrics score. `terms`: how many per-frame losses `loss`
    sums (the logged loss is `loss / terms`, the mean per-frame BCE of the release's log).
    """

    loss: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    terms: int = 1


class Task:
    """Base class of a training task around `model` (see the module docstring)."""

    prefix: str = "model"
    # The validation metric that picks the best checkpoint (higher is better).
    score_name: str = "S"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def set_train_mode(self, model: nn.Module) -> None:
        """Put the (unwrapped) model in training mode."""
        model.train()

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer updates (those with requires_grad)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise UserError(f"{type(self.model).__name__} has no trainable parameters")
        return params

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """Adam over the trainable parameters, the release's optimizer."""
        return torch.optim.Adam(self.trainable_parameters(), lr=lr)

    def ddp_options(self) -> dict[str, Any]:
        """Extra keyword arguments for DistributedDataParallel."""
        return {}

    def step(self, model: nn.Module, batch: Any) -> StepOutput:
        """Forward one batch (already on the device) through `model` (maybe DDP-wrapped)."""
        raise NotImplementedError

    def release_state_dict(self) -> dict[str, torch.Tensor]:
        """The plain state dict written to `<prefix>_current_best_model.pth` and `<prefix>_epoch-N.pth`."""
        return self.model.state_dict()


def frame_tensor(frame: Mapping[str, Any], key: str) -> torch.Tensor:
    """`frame[key]`, or a clear error when a batch lacks it (e.g. labels at training time)."""
    value = frame.get(key) if isinstance(frame, Mapping) else None
    if not isinstance(value, torch.Tensor):
        raise UserError(f"a training batch has no {key!r} tensor; training and validation need "
                          "annotated frames")
    return value


def bce_per_frame(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over pixels (and the batch), in float32 even under autocast."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class ImageSaliencyTask(Task):
    """RCRNet (ImageModel) on single frames: the image pretraining stage.

    A batch is a dict with `image` [B, 3, H, W] and `label` [B, 1, H, W]. BatchNorm trains.
    """

    prefix = "image"

    def step(self, model: nn.Module, batch: Any) -> StepOutput:
        images = frame_tensor(batch, "image")
        labels = frame_tensor(batch, "label")
        logits = model(images)
        return StepOutput(bce_per_frame(logits, labels), logits, labels)


class VideoSaliencyTask(Task):
    """RCRNet+NER (VideoModel) on clips: the release's video training.

    A batch is a list of T frame dicts (`image` [B, 3, H, W], `label` [B, 1, H, W]). The
    loss is the sum over the T frames of each frame's BCE, as in the release. The
    backbone's BatchNorm stays in eval mode while training (`freeze_bn`).
    """

    prefix = "video"

    def set_train_mode(self, model: nn.Module) -> None:
        model.train()
        model.freeze_bn()

    def step(self, model: nn.Module, batch: Any) -> StepOutput:
        if not isinstance(batch, Sequence) or not batch:
            raise UserError("the video stage expects clips (lists of frames) from the dataset")
        images = torch.stack([frame_tensor(f, "image") for f in batch], dim=1)
        labels = torch.stack([frame_tensor(f, "label") for f in batch], dim=1)
        logits = model(images)
        length = images.shape[1]
        loss = sum(bce_per_frame(logits[:, t], labels[:, t]) for t in range(length))
        return StepOutput(loss, logits.flatten(0, 1), labels.flatten(0, 1), terms=length)


class FGPLGTask(Task):
    """FGPLG on clips [left, middle, right]: logits of the middle frame from its labelled ends.

    A batch is a list of 3 frame dicts (`image` [B, 3, H, W], `label` [B, 1, H, W]); the loss is
    the BCE of the middle frame. The flow estimator is frozen and the backbone's BatchNorm stays
    in eval mode.
    """

    prefix = "fgplg"
    clip_len = 3

    def set_train_mode(self, model: nn.Module) -> None:
        model.train()
        model.freeze_bn()

    def step(self, model: nn.Module, batch: Any) -> StepOutput:
        if not isinstance(batch, Sequence) or len(batch) != self.clip_len:
            got = len(batch) if isinstance(batch, Sequence) else type(batch).__name__
            raise UserError(f"FGPLG trains on clips of 3 frames [labelled, target, labelled], got {got}")
        images = [frame_tensor(frame, "image") for frame in batch]
        labels = [frame_tensor(frame, "label") for frame in batch]
        logits, target = model(images, labels)
        return StepOutput(bce_per_frame(logits, target), logits, target)
