"""The training loop shared by train.py (image and video stages) and train_fgplg.py.

Epochs are numbered from 1: `--epochs N` trains epochs start+1 .. N, where start is
`--start-epoch` (default 0) or the epoch stored in the resume file. Each epoch has a
train phase and a validation phase; validation scores every frame of the batches with
PySODMetrics (S-measure, MAE, max F-measure) and the best S-measure picks the best model.

Files written to `--save-folder` by rank 0 (all atomically):

- `<prefix>_current_best_model.pth`: plain state dict of the best model so far (release name),
- `<prefix>_epoch-N.pth`: plain state dict after epoch N, every `backup_epochs` epochs,
- `<prefix>_resume.pth`: model, optimizer, loss scaler, epoch, best score, every
  process's random generator states and the run's settings (lr, batch size and the
  recipe's `TrainConfig.settings`: frame size, output stride, clip length, ...), written
  after every epoch, for `--resume`,
- `<prefix>_log.csv` (+ TensorBoard in `tb/` when installed, + `<prefix>_log.png` with `--plot`).

Temporary files a killed run left in `--save-folder` (`libs.runtime.files`) are removed
when a run starts there.

Resuming with other flags: a new `--lr` is applied to the optimizer's parameter groups and
a new `--batch-size` to the loaders, each announced in one line; a different frame size,
output stride, clip length or other `settings` entry (what the model is trained on) is
refused. A resume with nothing left to do (`--epochs` not above the epoch in the file) is
refused too.

How the steps compute (precision, decoder, layout) is the run's `RunPlan` (`libs.runtime.plan`),
tuned once before the first epoch (`libs.engine.tuning`) and read by the loop; the model must
have been built with the plan's decoder.

Determinism: batches are shuffled by a DistributedSampler seeded with the run's seed and
the epoch (also with one process), DataLoader workers are seeded from a generator seeded
the same way, and the resume file restores the generators, so a run stopped after any
epoch and resumed ends with the same weights as one that never stopped.
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from libs.evaluation.maps import probabilities_to_uint8
from libs.evaluation.metrics import VALIDATION_METRICS, SaliencyMetrics
from libs.modules import to_channels_last
from libs.networks.weights import save_weights
from libs.runtime.errors import UserError, one_line
from libs.runtime.files import remove_stale_temporaries
from libs.runtime.plan import RunPlan
from libs.runtime.session import (
    Runtime,
    all_reduce_sum,
    broadcast_object,
    gather_objects,
    rng_state,
    seed_worker,
    set_rng_state,
)

from .checkpoints import (
    RESUME_FORMAT,
    WEIGHTS_FORMATS,
    backup_path,
    best_model_path,
    check_resume_settings,
    find_resume_file,
    read_resume_state,
    resume_path,
)
from .logs import RunLogger, log_path
from .tasks import StepOutput, Task
from .tuning import tune_training


@dataclass
class TrainConfig:
    """How to train: the release's flags plus resume, logging and test conveniences.

    `resume`: a resume file, or "auto" for `<save-folder>/<prefix>_resume.pth`.
    `steps_per_epoch`: cap on training batches per epoch (None: the whole set).
    `weights_format`: "pth" or "safetensors", the format of the best and backup weights (the
    resume file is always `.pth`: it holds the optimizer's state and random states too).
    `settings`: {flag: value} of what the model is trained on (e.g. {"--size": 448}); kept in
    the resume file, and a resume whose settings differ is refused.
    """

    save_folder: Path
    epochs: int = 50
    lr: float = 1e-5
    batch_size: int = 1
    num_workers: int = 1
    start_epoch: int = 0
    backup_epochs: int = 1
    eval_first: bool = False
    resume: str | Path | None = None
    plot: bool = False
    steps_per_epoch: int | None = None
    val_batch_size: int | None = None
    progress: bool = True
    tensorboard: bool = True
    weights_format: str = "pth"
    settings: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.weights_format not in WEIGHTS_FORMATS:
            raise UserError(f"--weights-format must be one of {', '.join(WEIGHTS_FORMATS)}, "
                            f"got {self.weights_format!r}")
        if self.epochs < 0:
            raise UserError(f"--epochs must be >= 0, got {self.epochs}")
        if self.start_epoch < 0:
            raise UserError(f"--start-epoch must be >= 0, got {self.start_epoch}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.backup_epochs < 1:
            raise UserError(f"--backup-epochs must be >= 1, got {self.backup_epochs}")
        if self.num_workers < 0:
            raise UserError(f"-j/--num_workers must be >= 0, got {self.num_workers}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UserError(f"steps per epoch must be >= 1, got {self.steps_per_epoch}")


@dataclass
class FitResult:
    """The outcome of `Trainer.fit` (the same on every process)."""

    best_score: float
    best_epoch: int
    last_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)

    def scores(self, phase: str = "val", key: str = "S") -> list[tuple[int, float]]:
        """(epoch, value) of `key` over the history rows of `phase`."""
        return [(r["epoch"], r[key]) for r in self.history if r["phase"] == phase and r.get(key) is not None]


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... of a dataset, in order and without padding (validation)."""

    def __init__(self, data: Sized, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, len(data), world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to `device`; other values stay."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def score_frames(metrics: SaliencyMetrics, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Add frames [N, 1, H, W] to `metrics` as 8-bit maps (the values inference writes) and
    0/255 labels (label >= 0.5, the release's binarisation)."""
    preds = probabilities_to_uint8(torch.sigmoid(logits.detach().float()))
    gts = ((labels.detach().float() >= 0.5).to(torch.uint8) * 255).cpu()
    for pred, gt in zip(preds, gts):
        metrics.step(pred[0].numpy(), gt[0].numpy())


class Trainer:
    """Trains `task.model` on `train_set`, validating on `val_set` after every epoch."""

    def __init__(self, task: Task, runtime: Runtime, config: TrainConfig, train_set: Dataset,
                 val_set: Dataset | None, plan: RunPlan | None = None) -> None:
        config.check()
        self.task = task
        self.runtime = runtime
        self.config = config
        self.train_set = train_set
        self.val_set = val_set
        self.save_folder = Path(config.save_folder)
        # resolved first: a missing resume file fails before any measuring below
        self.resume_file = find_resume_file(config.resume, self.save_folder, task.prefix)
        self.module: nn.Module = task.model.to(runtime.device)
        self.plan = self._tuned(plan if plan is not None else RunPlan(runtime.device))
        runtime.print(f"training plan: {self.plan.describe()}")
        if self.plan.channels_last:
            # channels-last convs (oneDNN and cuDNN then skip a layout reorder of every activation)
            to_channels_last(getattr(self.module, "backbone", self.module))
        self.optimizer = task.make_optimizer(config.lr)
        self.scaler = self.plan.grad_scaler()
        self.model: nn.Module = self.module
        if runtime.distributed:
            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.module, device_ids=ids, **task.ddp_options())
        self.best_score = -math.inf
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.logger: RunLogger | None = None

    def _tuned(self, plan: RunPlan) -> RunPlan:
        """`plan` tuned on rank 0 (`libs.engine.tuning`), the same on every process; the timing
        draws data and dropout masks, so the run's random streams are restored after it."""
        rt = self.runtime
        if not plan.auto:
            return plan
        if rt.is_main:
            states = rng_state()
            steps = len(self._loader(self.train_set, True, 0))
            if self.config.steps_per_epoch is not None:
                steps = min(steps, self.config.steps_per_epoch)
            def first_batch() -> Any:
                return to_device(next(iter(self._loader(self.train_set, True, 0))), rt.device)

            plan = tune_training(plan, self.task, self.module, first_batch, steps,
                                 lambda line: rt.print(f"note: {line}"))
            set_rng_state(states)
        return broadcast_object(rt, plan)

    # ------------------------------------------------------------------ data

    def _loader(self, dataset: Dataset, train: bool, epoch: int) -> DataLoader:
        rt = self.runtime
        generator = torch.Generator()
        generator.manual_seed((rt.seed * 1_000_003 + epoch * 2 + (0 if train else 1)) % 2**63)
        if train:
            sampler: Sampler[int] = DistributedSampler(dataset, num_replicas=rt.world_size, rank=rt.rank,
                                                       shuffle=True, seed=rt.seed, drop_last=False)
            sampler.set_epoch(epoch)
            batch_size = self.config.batch_size
        else:
            sampler = ShardSampler(dataset, rt.rank, rt.world_size)
            batch_size = self.config.val_batch_size or self.config.batch_size
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=train,
                          num_workers=self.config.num_workers, generator=generator,
                          worker_init_fn=seed_worker, pin_memory=rt.device.type == "cuda")

    # ------------------------------------------------------------------ phases

    def _progress(self, batches: Iterable[Any], desc: str, total: int) -> tqdm:
        return tqdm(batches, desc=desc, total=total, leave=False, dynamic_ncols=True,
                    disable=None if (self.runtime.is_main and self.config.progress) else True)

    def _forward(self, model: nn.Module, batch: Any) -> StepOutput:
        with self.plan.autocast():
            out = self.task.step(model, to_device(batch, self.runtime.device))
        if not isinstance(out, StepOutput):
            raise TypeError(f"{type(self.task).__name__}.step must return a StepOutput")
        return out

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training set; returns the logged values (mean over processes)."""
        start = time.perf_counter()
        loader = self._loader(self.train_set, True, epoch)
        total = len(loader)
        if total == 0:
            raise UserError(
                f"the training set has {len(self.train_set)} item(s) per {self.runtime.world_size} "
                f"process(es), fewer than --batch-size {self.config.batch_size}"
            )
        if self.config.steps_per_epoch is not None:
            total = min(total, self.config.steps_per_epoch)
        self.model.train()
        self.task.set_train_mode(self.module)
        loss_sum = mae_sum = frames = batches = 0.0
        bar = self._progress(itertools.islice(loader, total), f"train {epoch}", total)
        for step, batch in enumerate(bar):
            self.optimizer.zero_grad(set_to_none=True)
            out = self._forward(self.model, batch)
            if not torch.isfinite(out.loss.detach()):
                raise UserError(f"the training loss became {out.loss.item()} at epoch {epoch}, batch "
                                  f"{step + 1}; lower --lr or use --precision fp32 or bf16")
            self.scaler.scale(out.loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            with torch.no_grad():
                probs = torch.sigmoid(out.logits.detach().float())
                mae_sum += (probs - out.labels.float()).abs().mean(dim=(1, 2, 3)).sum().item()
            frame_loss = out.loss.item() / out.terms
            loss_sum += frame_loss
            frames += out.logits.shape[0]
            batches += 1
            bar.set_postfix(loss=f"{frame_loss:.4f}", refresh=False)
        bar.close()
        totals = all_reduce_sum(self.runtime, [loss_sum, mae_sum, frames, batches])
        loss_sum, mae_sum, frames, batches = totals
        return {"loss": loss_sum / max(batches, 1), "MAE": mae_sum / max(frames, 1),
                "lr": float(self.optimizer.param_groups[0]["lr"]), "frames": int(frames),
                "seconds": time.perf_counter() - start}

    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, Any]:
        """Score the validation set; returns loss, S, MAE, maxF (all processes' frames)."""
        start = time.perf_counter()
        if self.val_set is None:
            raise UserError("no validation set")
        loader = self._loader(self.val_set, False, epoch)
        self.module.eval()
        metrics = SaliencyMetrics(VALIDATION_METRICS)
        loss_sum = batches = 0.0
        # the unwrapped module: DDP's forward would synchronise processes, whose shards differ
        for batch in self._progress(loader, f"val {epoch}", len(loader)):
            out = self._forward(self.module, batch)
            loss_sum += out.loss.item() / out.terms
            batches += 1
            score_frames(metrics, out.logits, out.labels)
        loss_sum, batches = all_reduce_sum(self.runtime, [loss_sum, batches])
        shards = gather_objects(self.runtime, metrics)
        values = None
        if self.runtime.is_main:
            merged = SaliencyMetrics(VALIDATION_METRICS)
            for shard in shards:
                merged.merge(shard)
            if len(merged) == 0:
                raise UserError("the validation set is empty")
            results = merged.get_results()
            values = {"loss": loss_sum / max(batches, 1), "MAE": results["MAE"], "S": results["S"],
                      "maxF": results["maxF"], "frames": results["frames"]}
        values = broadcast_object(self.runtime, values)
        values["seconds"] = time.perf_counter() - start
        return values

    # ------------------------------------------------------------------ files

    def _save_weights(self, path: Path) -> None:
        save_weights(self.task.release_state_dict(), path)

    def _settings(self) -> dict[str, Any]:
        return {"--lr": float(self.config.lr), "--batch-size": int(self.config.batch_size),
                **self.config.settings}

    def _apply_settings(self, path: Path, saved: dict[str, Any]) -> None:
        """Refuse a resume whose model settings differ; apply and announce a new lr or batch size."""
        check_resume_settings(path, saved, self.config.settings)
        if "--lr" in saved and saved["--lr"] != self.config.lr:
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr
            self.runtime.print(f"--lr {self.config.lr:g} applied to the optimizer (the resumed run used "
                               f"{saved['--lr']:g})")
        if "--batch-size" in saved and saved["--batch-size"] != self.config.batch_size:
            self.runtime.print(f"--batch-size {self.config.batch_size} applied (the resumed run used "
                               f"{saved['--batch-size']}): the batches differ from an uninterrupted run's")

    def save_resume(self, epoch: int) -> Path:
        """Write `<prefix>_resume.pth` (every process must call: RNG states are gathered)."""
        states = gather_objects(self.runtime, rng_state())
        path = resume_path(self.save_folder, self.task.prefix)
        if self.runtime.is_main:
            save_weights({
                "format": RESUME_FORMAT,
                "prefix": self.task.prefix,
                "epoch": epoch,
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "best_score": float(self.best_score),
                "best_epoch": int(self.best_epoch),
                "seed": int(self.runtime.seed),
                "world_size": int(self.runtime.world_size),
                "rng": states,
                "settings": self._settings(),
            }, path)
        return path

    def load_resume(self, path: str | Path) -> int:
        """Restore a resume file; returns the last completed epoch it holds."""
        path = Path(path)
        state = read_resume_state(path, self.task.prefix)
        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(f"--resume: {path} does not fit this model/optimizer: {one_line(exc)}") from exc
        self._apply_settings(path, state.get("settings") or {})
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        states = state.get("rng") or []
        if len(states) == self.runtime.world_size:
            set_rng_state(states[self.runtime.rank])
        else:
            self.runtime.print(f"note: {path} was written by {len(states)} process(es), this run has "
                               f"{self.runtime.world_size}: random streams restart from the seed")
        if int(state.get("seed", self.runtime.seed)) != self.runtime.seed:
            self.runtime.print(f"note: resuming a run seeded {state.get('seed')} with seed "
                               f"{self.runtime.seed}")
        return int(state["epoch"])

    # ------------------------------------------------------------------ loop

    def _record(self, epoch: int, phase: str, values: dict[str, Any]) -> None:
        row = {"epoch": epoch, "phase": phase, **values}
        self.history.append(row)
        if self.logger is not None:
            self.logger.write(epoch, phase, values)
        parts = [f"loss {values['loss']:.4f}", f"MAE {values['MAE']:.4f}"]
        if phase == "val":
            parts += [f"S-measure {values['S']:.4f}", f"maxF {values['maxF']:.4f}"]
        self.runtime.print(f"epoch {epoch}/{self.config.epochs} {phase}: " + ", ".join(parts)
                           + f" ({values['frames']} frames, {values['seconds']:.1f} s)")

    def _validate_and_keep_best(self, epoch: int) -> dict[str, Any]:
        values = self.validate(epoch)
        self._record(epoch, "val", values)
        score = values[self.task.score_name]
        if score > self.best_score:
            self.best_score, self.best_epoch = float(score), epoch
            if self.runtime.is_main:
                path = best_model_path(self.save_folder, self.task.prefix, self.config.weights_format)
                self._save_weights(path)
                self.runtime.print(f"saved the best model so far ({self.task.score_name} {score:.4f}) "
                                   f"to {path}")
        return values

    def fit(self) -> FitResult:
        """Train epochs start+1 .. epochs; returns the best score, its epoch and the history."""
        cfg, rt = self.config, self.runtime
        start = cfg.start_epoch
        path = self.resume_file
        if path is not None:
            start = self.load_resume(path)
            if start >= cfg.epochs and not cfg.eval_first:
                raise UserError(f"--resume: nothing left to do: {path} holds epoch {start} and --epochs is "
                                f"{cfg.epochs}; pass --epochs above {start} to train more")
            rt.print(f"resumed from {path}: the {type(self.module).__name__} weights, optimizer, loss "
                     f"scaler and random states after epoch {start} (best {self.task.score_name} "
                     f"{self.best_score:.4f} at epoch {self.best_epoch})")
        if rt.is_main:
            try:
                self.save_folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"--save-folder {self.save_folder}: cannot create it: "
                                f"{exc.strerror or exc}") from None
            for stale in remove_stale_temporaries(self.save_folder):
                rt.print(f"removed {stale}, a temporary file left by a killed run")
            self.logger = RunLogger(self.save_folder, self.task.prefix, tensorboard=cfg.tensorboard,
                                    after=start, revalidate=cfg.eval_first)
        try:
            if cfg.eval_first:
                self._validate_and_keep_best(start)
            for epoch in range(start + 1, cfg.epochs + 1):
                self._record(epoch, "train", self.train_epoch(epoch))
                if self.val_set is not None:
                    self._validate_and_keep_best(epoch)
                if rt.is_main and epoch % cfg.backup_epochs == 0:
                    path = backup_path(self.save_folder, self.task.prefix, epoch, cfg.weights_format)
                    self._save_weights(path)
                self.save_resume(epoch)
                if rt.is_main and cfg.plot:
                    from .plot import plot_log

                    plot_log(log_path(self.save_folder, self.task.prefix))
                rt.barrier()
        finally:
            if self.logger is not None:
                self.logger.close()
        last = max([start, *(r["epoch"] for r in self.history)])
        if self.best_score > -math.inf:
            rt.print(f"best {self.task.score_name} {self.best_score:.4f} at epoch {self.best_epoch}")
        return FitResult(self.best_score, self.best_epoch, last, self.history)
