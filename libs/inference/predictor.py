"""A model ready for inference: clips of normalised frames in, saliency probabilities out."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from libs.engine.runtime import AMP_DTYPES, check_amp, resolve_device
from libs.networks import ImageModel, VideoModel
from libs.utils.checkpoint import load_image_model, load_video_model, read_state_dict

NER_PREFIXES = ("non_local_block", "convgru_forward", "convgru_backward", "bidirection_conv")


def checkpoint_kind(path: str | Path) -> str:
    """"video" for a VideoModel (RCRNet+NER) file, "image" for an ImageModel (RCRNet) file."""
    keys = read_state_dict(path).keys()
    return "video" if any(k.startswith(NER_PREFIXES) for k in keys) else "image"


def load_model(path: str | Path, output_stride: int = 16) -> tuple[nn.Module, str]:
    """The model a checkpoint holds, loaded strictly (the release's files as they are) and its kind."""
    kind = checkpoint_kind(path)
    if kind == "video":
        model: nn.Module = VideoModel(output_stride=output_stride)
        load_video_model(model, path)
    else:
        model = ImageModel(output_stride=output_stride)
        load_image_model(model, path)
    return model, kind


class Predictor:
    """Runs a VideoModel on clips (or an ImageModel frame by frame) in eval mode.

    `predictor(clips [B, T, 3, H, W])` -> probabilities [B, T, 1, H, W] (float32, CPU).
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", amp: str = "off",
                 kind: str = "video") -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        check_amp(amp, self.device)
        self.amp = amp
        self.kind = kind
        self.model = model.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, output_stride: int = 16, device: str | torch.device = "auto",
                        amp: str = "off") -> Predictor:
        """Load `path` (VideoModel or ImageModel file) onto `device`."""
        model, kind = load_model(path, output_stride)
        return cls(model, device, amp, kind)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5:
            raise ValueError(f"expected clips [B, T, 3, H, W], got shape {tuple(clips.shape)}")
        batch, length = clips.shape[:2]
        x = clips.to(self.device, non_blocking=True)
        with self._autocast():
            if self.kind == "video":
                logits = self.model(x)
            else:
                logits = self.model(x.flatten(0, 1)).unflatten(0, (batch, length))
        return torch.sigmoid(logits.float()).cpu()
