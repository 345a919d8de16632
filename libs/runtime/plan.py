"""A run's decisions in one value: `RunPlan`, resolved once where a run is prepared.

Inference, pseudo-label generation and training each resolve their flags (`--device`,
`--precision`, `--compile`) into a `RunPlan` at the top (`plan_run`); the layers below read
the plan and apply it (build the model with `plan.decoder`, fold BatchNorm, channels-last,
autocast, compile) and never decide again. What cannot be known from the flags and the
hardware alone is tuned once by `libs.runtime.tuner`, which returns another plan.

`--precision auto` resolves by arithmetic where the answer does not depend on timing:

- float32 (the release's numbers up to rounding);
- on a CPU the factored decoder (`libs.modules.factored_decoder`): it is the same linear map
  as the release's resize-then-conv in about a seventh of the arithmetic at a 4x resize, so it
  is chosen without timing. On CUDA the release's decoder (a GPU is bound by memory traffic,
  not arithmetic, and the factored decoder was never measured faster there).
- in inference on a CPU with two torch threads, a clip's frames two at a time through the
  backbone and ASPP, and after the NER module through the classifier, one thread each
  (`VideoModel`'s `parallel_frames`): the release's loop as it computes with one thread, with
  no synchronisation between threads inside a frame. Chosen where it was measured (two
  threads); with more threads it is not a candidate.

`--precision fp32` is the release's computation as it is: its decoder, no folding, no layout
change, the process's threads on one frame at a time. `bf16` / `fp16` autocast the whole model
(inference also folds BatchNorm and uses channels-last; training uses channels-last).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch

from .precision import autocast, keep_float32_exact, resolve_precision

RELEASE_DECODER = "release"  # the names of libs.modules.DECODERS
FACTORED_DECODER = "factored"
JOBS = ("inference", "training")
COMPILE_CHOICES = ("auto", "on", "off")
PARALLEL_FRAMES = 2  # frames side by side in CPU inference with two torch threads
PARALLEL_FRAMES_WHY = "; a clip's frames side by side, one thread each"


@dataclass(frozen=True)
class RunPlan:
    """How a run computes: device, concrete precision, decoder, layout, BatchNorm folding and
    compilation, frames side by side (`parallel_frames`, VideoModel inference), and one line
    saying why.

    `compile`: "on", "off", or "auto" (to be tuned on the job's first clips; see
    `libs.runtime.tuner`). `tuned`: whether the plan still has choices to time
    (`candidates` of the job, e.g. training's channels-last or bf16).
    """

    device: torch.device
    precision: str = "fp32"
    decoder: str = RELEASE_DECODER
    channels_last: bool = False
    fold_bn: bool = False
    compile: str = "off"
    parallel_frames: int = 1
    auto: bool = False  # `--precision auto`: the tuner may still choose among `candidates`
    why: str = "--precision fp32: the release's computation"

    @property
    def release(self) -> bool:
        """Whether the plan is the release's computation (float32, its decoder, nothing changed)."""
        return (self.precision == "fp32" and self.decoder == RELEASE_DECODER and not self.channels_last
                and not self.fold_bn and self.compile != "on" and self.parallel_frames == 1)

    def replace(self, **changes: object) -> RunPlan:
        return dataclasses.replace(self, **changes)

    def for_model(self, kind: str) -> RunPlan:
        """The plan for a model of `kind` ("video", "image", "fgplg"): frames side by side are
        VideoModel's alone (its clips), so other models run one frame at a time."""
        if kind == "video" or self.parallel_frames == 1:
            return self
        return self.replace(parallel_frames=1, why=self.why.replace(PARALLEL_FRAMES_WHY, ""))

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the plan's precision on its device (a no-op for fp32)."""
        return autocast(self.precision, self.device)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled for float16 only (bfloat16 keeps float32's exponent range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def name(self) -> str:
        """The computation in a few words, e.g. "fp32, factored decoder + channels-last"."""
        text = self.precision if self.precision == "fp32" else f"{self.precision} autocast"
        extras = [what for what, on in (("factored decoder", self.decoder == FACTORED_DECODER),
                                        ("BatchNorm folded", self.fold_bn),
                                        ("channels-last", self.channels_last),
                                        ("torch.compile", self.compile == "on"),
                                        (f"{self.parallel_frames} frames side by side",
                                         self.parallel_frames > 1)) if on]
        return text + (", " + " + ".join(extras) if extras else "")

    def describe(self) -> str:
        """One line: what was chosen and why."""
        return f"{self.name()} ({self.why})"


def plan_run(job: str, device: torch.device, precision: str = "auto", compile: str = "off") -> RunPlan:
    """Resolve `--precision` and `--compile` for `job` ("inference", "training") on `device`: the
    one place a run's precision is resolved (cuDNN's TF32 is turned off for fp32 here)."""
    if job not in JOBS:
        raise ValueError(f"job {job!r}: expected one of {', '.join(JOBS)}")
    if compile not in COMPILE_CHOICES:
        raise ValueError(f"compile {compile!r}: expected one of {', '.join(COMPILE_CHOICES)}")
    device = torch.device(device)
    concrete = resolve_precision(precision, device, training=job == "training")
    keep_float32_exact(concrete)
    if precision == "auto":
        cpu = device.type == "cpu"
        decoder = FACTORED_DECODER if cpu else RELEASE_DECODER
        why = ("--precision auto: float32; the factored decoder, fewer operations than resize-then-conv"
               if cpu else "--precision auto: float32, the release's decoder on CUDA")
        frames = PARALLEL_FRAMES if cpu and job == "inference" and torch.get_num_threads() == 2 else 1
        if frames > 1:
            why += PARALLEL_FRAMES_WHY
        return RunPlan(device, "fp32", decoder, compile=compile, parallel_frames=frames, auto=True, why=why)
    if concrete == "fp32":
        return RunPlan(device, compile=compile)
    why = f"--precision {concrete}: autocast everywhere"
    if job == "inference":
        return RunPlan(device, concrete, FACTORED_DECODER, channels_last=True, fold_bn=True, compile=compile,
                       why=why)
    return RunPlan(device, concrete, channels_last=True, compile=compile, why=why)
