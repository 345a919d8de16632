"""A model ready for inference: clips of normalised frames in, saliency probabilities out."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from libs.networks.weights import model_from_checkpoint
from libs.runtime.errors import UserError
from libs.runtime.precision import keep_float32_exact, resolve_precision
from libs.runtime.session import resolve_device

from .optimize import optimize_for_inference

COMPILE_CHOICES = ("auto", "on", "off")
# `--compile auto` compiles runs of at least this many frames: torch.compile costs ~15-30 s on a
# 2-core CPU and saves ~10% of the model time, which pays off after several hundred frames.
COMPILE_MIN_FRAMES = 1000


class Predictor:
    """Runs a VideoModel on clips (or an ImageModel frame by frame) in eval mode.

    `predictor(clips [B, T, 3, H, W])` -> probabilities [B, T, 1, H, W] (float32, CPU).

    `precision` (`libs.runtime.precision`): `fp32` runs the model as it is (the faithful path);
    `auto` picks `mixed` where bfloat16 is native (float32 with the full-resolution decoder in
    bfloat16, checked pixel by pixel: 8-bit maps within the tolerance) and `fp32` elsewhere;
    `bf16` / `fp16` autocast the whole model (fastest, but further from float32). `compile`: `on`,
    `off`, or `auto`
    (on for runs of at least `COMPILE_MIN_FRAMES` frames, told by `plan`; never for fp32).
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", kind: str = "video",
                 precision: str = "fp32", compile: str = "off") -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        if compile not in COMPILE_CHOICES:
            raise UserError(f"compile {compile!r}: expected one of {', '.join(COMPILE_CHOICES)}")
        self.precision = resolve_precision(precision, self.device)
        keep_float32_exact(self.precision)
        self.kind = kind
        self.compile = compile
        self.model = model.to(self.device).eval()
        self._runner: nn.Module | None = None
        self._batch = 0

    @classmethod
    def from_checkpoint(cls, path: str | Path, output_stride: int = 16, device: str | torch.device = "auto",
                        precision: str = "fp32", compile: str = "off") -> Predictor:
        """Load `path` (VideoModel or ImageModel file, read once) onto `device`."""
        model, kind = model_from_checkpoint(path, output_stride)
        return cls(model, device, kind, precision, compile)

    def plan(self, frames: int) -> None:
        """Tell the predictor how many frames the run will predict (decides `compile` auto)."""
        if self.compile == "auto" and self._runner is None:
            self.compile = "on" if frames >= COMPILE_MIN_FRAMES and self.precision != "fp32" else "off"

    @property
    def compiled(self) -> bool:
        return self.compile == "on"

    @property
    def runner(self) -> nn.Module:
        """What is called: the model itself (fp32, no compilation) or its optimised copy."""
        if self._runner is None:
            self._runner = optimize_for_inference(self.model, self.precision, self.device,
                                                  compile=self.compiled)
        return self._runner

    def describe(self) -> str:
        """The precision and compilation, for the scripts' logs."""
        text = f"precision {self.precision}"
        if self.precision == "mixed":
            text += " (float32, decoder in bfloat16 checked against float32)"
        return text + (", torch.compile" if self.compiled else "")

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5:
            raise ValueError(f"expected clips [B, T, 3, H, W], got shape {tuple(clips.shape)}")
        batch, length = clips.shape[:2]
        x = clips.to(self.device, non_blocking=True)
        runner = self.runner
        if self.compiled and batch < self._batch:
            # a short last batch: pad it to the compiled batch size instead of compiling again
            x = torch.cat([x, x[-1:].expand(self._batch - batch, *x.shape[1:])])
        self._batch = max(self._batch, batch)
        if self.kind == "video":
            logits = runner(x)
        else:
            logits = runner(x.flatten(0, 1)).unflatten(0, (x.shape[0], length))
        return torch.sigmoid(logits[:batch].float()).cpu()
