"""A model ready for inference: clips of normalised frames in, saliency probabilities out."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from libs.networks.weights import model_from_checkpoint
from libs.runtime.plan import RunPlan
from libs.runtime.tuner import tune

from .optimize import optimize_for_inference, prepare_model

# `--compile auto` considers torch.compile for runs of at least this many frames only: compiling
# costs tens of seconds on a CPU, and is then kept only where it measures faster.
COMPILE_MIN_FRAMES = 1000


class Predictor:
    """Runs a VideoModel on clips (or an ImageModel frame by frame) in eval mode, under
    `torch.inference_mode`, as its `RunPlan` (`libs.runtime.plan`) says.

    `predictor(clips [B, T, 3, H, W])` -> probabilities [B, T, 1, H, W] (float32, CPU).

    The model must have been built with `plan.decoder` and `plan.parallel_frames`
    (`from_checkpoint` does so). A plan with `compile` "auto" is tuned on the first batch when
    the run has at least `COMPILE_MIN_FRAMES` frames (told by `expect`): eager and compiled are
    timed on that batch and the chosen one's output is the batch's result (`libs.runtime.tuner`);
    shorter runs stay eager. `report` receives the one-line account of the plan.
    """

    def __init__(self, model: nn.Module, plan: RunPlan, kind: str = "video",
                 report: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.device = plan.device
        self.kind = kind
        self.model = model.to(self.device).eval()
        self.report = report
        self._runner: nn.Module | None = None
        self._frames = 0
        self._batch = 0

    @classmethod
    def from_checkpoint(cls, path: str | Path, plan: RunPlan, output_stride: int = 16,
                        report: Callable[[str], None] | None = None) -> Predictor:
        """Load `path` (VideoModel or ImageModel file, read once), built with `plan.decoder` (and a
        VideoModel with `plan.parallel_frames`)."""
        model, kind = model_from_checkpoint(path, output_stride, decoder=plan.decoder,
                                            parallel_frames=plan.parallel_frames)
        return cls(model, plan.for_model(kind), kind, report)

    def expect(self, frames: int) -> None:
        """Tell the predictor how many frames the run will predict (`compile` auto considers
        compiling runs of at least `COMPILE_MIN_FRAMES`)."""
        self._frames = frames

    @property
    def compiled(self) -> bool:
        return self.plan.compile == "on"

    def describe(self) -> str:
        """The plan in one line, for the scripts' logs."""
        return self.plan.describe()

    def _call(self, runner: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "video":
            return runner(x)
        return runner(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def _build(self, x: torch.Tensor) -> torch.Tensor | None:
        """Build what is called (tuning `compile` auto on `x` for long runs); returns the output on
        `x` if the tuner computed it."""
        plan, output = self.plan, None
        if plan.compile == "auto" and self._frames >= COMPILE_MIN_FRAMES:
            candidates = {"eager": plan.replace(compile="off"), "compiled": plan.replace(compile="on")}

            def work(candidate: RunPlan) -> Callable[[], torch.Tensor]:
                runner = prepare_model(self.model, candidate)
                return lambda: self._call(runner, x)

            tuned = tune(f"compile {self.kind} {tuple(x.shape)}", candidates, "eager", work)
            plan, output = tuned.plan, tuned.output
            if self.report is not None:
                self.report(f"compile auto: {tuned.decision.describe()}")
        elif plan.compile == "auto":
            plan = plan.replace(compile="off")
        self.plan = plan
        self._runner = optimize_for_inference(self.model, plan)
        return output

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5:
            raise ValueError(f"expected clips [B, T, 3, H, W], got shape {tuple(clips.shape)}")
        batch = clips.shape[0]
        x = clips.to(self.device, non_blocking=True)
        logits = self._build(x) if self._runner is None else None
        if self.compiled and batch < self._batch:
            # a short last batch: pad it to the compiled batch size instead of compiling again
            x = torch.cat([x, x[-1:].expand(self._batch - batch, *x.shape[1:])])
        self._batch = max(self._batch, batch)
        if logits is None:
            logits = self._call(self._runner, x)
        return torch.sigmoid(logits[:batch].float()).cpu()
