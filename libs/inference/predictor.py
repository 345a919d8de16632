"""A model ready for inference: clips of normalised frames in, saliency probabilities out."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from libs.networks.weights import model_from_checkpoint
from libs.runtime.allocator import KEPT, check_memory_choice, choose_memory
from libs.runtime.calibration import Decision, measured_choice
from libs.runtime.errors import UserError
from libs.runtime.precision import keep_float32_exact, resolve_precision
from libs.runtime.session import resolve_device

from .optimize import optimize_for_inference, prepare_model

COMPILE_CHOICES = ("auto", "on", "off")
# `--compile auto` considers torch.compile for runs of at least this many frames only: compiling
# costs tens of seconds on a CPU, and is then kept only where it measures faster.
COMPILE_MIN_FRAMES = 1000
# `--precision auto`'s float32 candidates (name -> prepare_model options); the first is
# `--precision fp32`'s computation, the release's, and the baseline. The factored decoder runs
# after the NER module, so its rounding reaches the maps as it is; BatchNorm folding and
# channels-last change the backbone's, which an ill-conditioned NER amplifies (a VideoModel
# trained by `train.py --demo`: 2 levels on 0.03% of the DAVIS sample's pixels with folding),
# and they are not candidates.
PLAIN = "fp32"
AUTO_CANDIDATES: dict[str, dict[str, bool]] = {
    PLAIN: {"factored_decoder": False, "fold_bn": False, "channels_last": False},
    "fp32, factored decoder": {"factored_decoder": True, "fold_bn": False, "channels_last": False},
}


class Predictor:
    """Runs a VideoModel on clips (or an ImageModel frame by frame) in eval mode, under
    `torch.inference_mode`.

    `predictor(clips [B, T, 3, H, W])` -> probabilities [B, T, 1, H, W] (float32, CPU).

    `precision` (`libs.runtime.precision`): `fp32` runs the model as the release computes it
    (its decoder resizes, then convolves); `auto` runs float32 too, the fastest of
    `AUTO_CANDIDATES` on the first batch's size as measured on this machine
    (`libs.runtime.calibration`; plain fp32 unless another is clearly faster); `bf16` / `fp16`
    autocast the whole model (faster where bfloat16 is native, far from float32). `compile`:
    `on`, `off`, or `auto` (for runs of at least `COMPILE_MIN_FRAMES` frames, told by `plan`:
    compiled where it measures faster). `memory` (`libs.runtime.allocator`): `glibc` (malloc as
    it is), `kept` (freed memory kept for the next pass) or `auto` (measured on the first batch
    after the rest is chosen).
    `report` receives the one-line account of each measured decision.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", kind: str = "video",
                 precision: str = "fp32", compile: str = "off", memory: str = "glibc",
                 report: Callable[[str], None] | None = None) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        if compile not in COMPILE_CHOICES:
            raise UserError(f"compile {compile!r}: expected one of {', '.join(COMPILE_CHOICES)}")
        self.auto = precision == "auto"
        self.precision = resolve_precision(precision, self.device)
        keep_float32_exact(self.precision)
        self.kind = kind
        self.compile = compile
        self.memory = check_memory_choice(memory)
        self.model = model.to(self.device).eval()
        self.report = report
        self.decisions: list[Decision] = []
        self.chosen = PLAIN if self.auto else self.precision
        self._runner: nn.Module | None = None
        self._frames = 0
        self._batch = 0

    @classmethod
    def from_checkpoint(cls, path: str | Path, output_stride: int = 16, device: str | torch.device = "auto",
                        precision: str = "fp32", compile: str = "off", memory: str = "glibc",
                        report: Callable[[str], None] | None = None) -> Predictor:
        """Load `path` (VideoModel or ImageModel file, read once) onto `device`."""
        model, kind = model_from_checkpoint(path, output_stride)
        return cls(model, device, kind, precision, compile, memory, report)

    def plan(self, frames: int) -> None:
        """Tell the predictor how many frames the run will predict (`compile` auto considers
        compiling runs of at least `COMPILE_MIN_FRAMES`)."""
        self._frames = frames

    @property
    def compiled(self) -> bool:
        return self.compile == "on"

    def describe(self) -> str:
        """The precision, compilation and memory setting, for the scripts' logs."""
        text = f"precision {self.precision}"
        if self.auto:
            text = f"precision auto: {self.chosen}" if self._runner is not None else \
                "precision auto (float32; speed-ups measured on the first batch)"
        text += ", torch.compile" if self.compiled else ""
        return text + (f", {KEPT}" if self.memory == "kept" else "")

    def _call(self, runner: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "video":
            return runner(x)
        return runner(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def _decide(self, what: str, builders: dict[str, Callable[[], nn.Module]], baseline: str,
                x: torch.Tensor) -> tuple[nn.Module, torch.Tensor | None]:
        """The measured choice among `builders`' models on `x` (each built only when first run, so a
        cached decision builds the chosen one alone) and, when measured now, its output on `x`."""
        built: dict[str, nn.Module] = {}
        outputs: dict[str, torch.Tensor] = {}

        def get(name: str) -> nn.Module:
            if name not in built:
                built[name] = builders[name]()
            return built[name]

        def call(name: str) -> Callable[[], None]:
            def run() -> None:
                outputs[name] = self._call(get(name), x)
            return run

        decision = measured_choice(f"{what} {self.kind} {tuple(x.shape)}", {n: call(n) for n in builders},
                                   baseline, self.device)
        self.decisions.append(decision)
        if self.report is not None:
            self.report(f"{what}: {decision.describe()}")
        return get(decision.choice), outputs.get(decision.choice)

    def _build(self, x: torch.Tensor) -> torch.Tensor | None:
        """Build what is called (measuring where `auto` asks); returns the output on `x` if computed."""
        output = None
        if self.auto:
            builders = {name: (lambda o=options: prepare_model(self.model, "fp32", self.device, **o))
                        for name, options in AUTO_CANDIDATES.items()}
            runner, output = self._decide("precision auto", builders, PLAIN, x)
            self.chosen = self.decisions[-1].choice
            options = AUTO_CANDIDATES[self.chosen]
        else:
            runner = optimize_for_inference(self.model, self.precision, self.device)
            options = {}
        if self.compile == "auto" and self._frames >= COMPILE_MIN_FRAMES:
            eager = runner
            runner, compiled_output = self._decide(
                "compile auto", {"eager": lambda: eager, "compiled": lambda: prepare_model(
                    self.model, self.precision, self.device, compile=True, **options)}, "eager", x)
            self.compile = "on" if self.decisions[-1].choice == "compiled" else "off"
            if self.compiled:
                output = compiled_output
        elif self.compile == "on":
            runner = prepare_model(self.model, self.precision, self.device, compile=True, **options)
            output = None
        else:
            self.compile = "off"
        self._runner = runner
        measured = self.memory == "auto"
        decision = choose_memory(self.memory, f"{self.kind} {tuple(x.shape)}", lambda: self._call(runner, x),
                                 self.device)
        self.memory = "kept" if decision.choice == KEPT else "glibc"
        if measured:
            self.decisions.append(decision)
            if self.report is not None and decision.ratios:
                self.report(f"memory auto: {decision.describe()}")
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
