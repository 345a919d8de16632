"""The shared training loop (libs.engine) on a tiny model: files, resume, DDP, AMP, errors."""
from __future__ import annotations

import csv
import os
import random
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from libs.cli import run_cli
from libs.datasets import DatasetConfigError
from libs.engine import (
    StepOutput,
    Task,
    TrainConfig,
    Trainer,
    VideoSaliencyTask,
    backup_path,
    best_model_path,
    log_path,
    read_log,
    resume_path,
)
from libs.engine.plot import plot_log
from libs.networks.weights import CheckpointError
from libs.runtime.errors import UserError, one_line
from libs.runtime.plan import plan_run
from libs.runtime.session import Runtime, rng_state, set_rng_state, setup_runtime, teardown_runtime


class TinyNet(nn.Module):
    """Conv, BatchNorm, Dropout: every kind of state the loop must carry."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout2d(0.3)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.bn(self.conv(x)))))


class TinySet(Dataset):
    """Frames whose salient region is the bright square; random flips use Python's `random`."""

    def __init__(self, n: int = 12, size: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            label = torch.zeros(1, size, size)
            y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
            label[:, y:y + size // 2, x:x + size // 2] = 1
            image = torch.randn(3, size, size, generator=g) * 0.3 + label
            self.items.append((image, label))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        image, label = self.items[index]
        if random.random() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return {"image": image, "label": label}


class TinyTask(Task):
    prefix = "tiny"

    def step(self, model: nn.Module, batch: dict) -> StepOutput:
        logits = model(batch["image"])
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), batch["label"])
        return StepOutput(loss, logits, batch["label"])


def cpu_runtime(seed: int = 0) -> Runtime:
    return setup_runtime("cpu", seed)


def fit(folder, epochs: int, resume=None, seed: int = 0, workers: int = 0, precision: str = "fp32",
        **kwargs) -> tuple[Trainer, object]:
    runtime = cpu_runtime(seed)
    torch.manual_seed(123)  # model init, independent of the run's seed
    task = TinyTask(TinyNet())
    config = TrainConfig(save_folder=folder, epochs=epochs, lr=1e-2, batch_size=4, num_workers=workers,
                         resume=resume, progress=False, tensorboard=False, **kwargs)
    trainer = Trainer(task, runtime, config, TinySet(12), TinySet(8, seed=1),
                      plan_run("training", runtime.device, precision))
    return trainer, trainer.fit()


def test_fit_writes_release_files_and_log(tmp_path):
    trainer, result = fit(tmp_path, epochs=3, backup_epochs=2, eval_first=True, plot=True)
    assert result.last_epoch == 3
    assert 0 <= result.best_epoch <= 3
    best = torch.load(best_model_path(tmp_path, "tiny"), weights_only=True)
    assert set(best) == set(trainer.module.state_dict())  # a plain state dict, as the release wrote
    assert backup_path(tmp_path, "tiny", 2).is_file()
    assert not backup_path(tmp_path, "tiny", 1).exists() and not backup_path(tmp_path, "tiny", 3).exists()
    state = torch.load(resume_path(tmp_path, "tiny"), weights_only=True)
    assert state["epoch"] == 3 and {"model", "optimizer", "scaler", "rng", "best_score"} <= set(state)
    with log_path(tmp_path, "tiny").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["epoch"], r["phase"]) for r in rows] == [("0", "val")] + [
        (str(epoch), phase) for epoch in (1, 2, 3) for phase in ("train", "val")]
    assert all(r["S"] for r in rows if r["phase"] == "val")
    assert log_path(tmp_path, "tiny").with_suffix(".png").is_file()
    scores = result.scores()
    assert max(s for _, s in scores) == pytest.approx(result.best_score)


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_gives_the_same_weights(tmp_path, workers):
    whole, _ = fit(tmp_path / "whole", epochs=3, workers=workers)
    fit(tmp_path / "parts", epochs=1, workers=workers)
    torch.manual_seed(999)  # whatever happens between the two runs must not matter
    random.random()
    resumed, result = fit(tmp_path / "parts", epochs=3, resume="auto", workers=workers)
    assert result.last_epoch == 3
    assert [r["epoch"] for r in result.history] == [2, 2, 3, 3]
    for key, value in whole.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    # the resumed run's log continues the first one's
    assert [r["epoch"] for r in read_log(log_path(tmp_path / "parts", "tiny"))] == [1, 1, 2, 2, 3, 3]


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a, _ = fit(tmp_path / "a", epochs=1, seed=5)
    b, _ = fit(tmp_path / "b", epochs=1, seed=5)
    c, _ = fit(tmp_path / "c", epochs=1, seed=6)
    assert torch.equal(a.module.conv.weight, b.module.conv.weight)
    assert not torch.equal(a.module.conv.weight, c.module.conv.weight)


def test_resume_errors(tmp_path):
    with pytest.raises(UserError, match="no resume file"):
        fit(tmp_path, epochs=1, resume="auto")
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        fit(tmp_path, epochs=1, resume=bad)
    torch.save({"model": {}}, bad)
    with pytest.raises(UserError, match="not a resume file"):
        fit(tmp_path, epochs=1, resume=bad)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_trains(tmp_path, precision):
    trainer, result = fit(tmp_path, epochs=1, precision=precision)
    assert result.history[0]["loss"] > 0
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    state = torch.load(resume_path(tmp_path, "tiny"), weights_only=True)
    assert bool(state["scaler"]) == (precision == "fp16")


def test_non_finite_loss_is_an_error(tmp_path):
    class NanTask(TinyTask):
        def step(self, model, batch):
            out = super().step(model, batch)
            return StepOutput(out.loss * float("nan"), out.logits, out.labels)

    runtime = cpu_runtime()
    config = TrainConfig(save_folder=tmp_path, epochs=1, batch_size=4, num_workers=0, progress=False)
    with pytest.raises(UserError, match="loss became nan"):
        Trainer(NanTask(TinyNet()), runtime, config, TinySet(8), TinySet(4)).fit()


def test_config_and_dataset_size_errors(tmp_path):
    with pytest.raises(UserError, match="--batch-size"):
        TrainConfig(save_folder=tmp_path, batch_size=0).check()
    runtime = cpu_runtime()
    config = TrainConfig(save_folder=tmp_path, epochs=1, batch_size=20, num_workers=0, progress=False)
    with pytest.raises(UserError, match="fewer than --batch-size"):
        Trainer(TinyTask(TinyNet()), runtime, config, TinySet(8), TinySet(4)).fit()


def test_rng_state_round_trip():
    state = rng_state()
    first = (random.random(), torch.rand(3))
    set_rng_state(state)
    assert random.random() == first[0] and torch.equal(torch.rand(3), first[1])


def test_one_line_messages():
    worker = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback "
                         "(most recent call last):\n  File \"x.py\", line 1\nlibs.runtime.errors.UserError: "
                         "bad frame")
    assert one_line(worker) == "bad frame"
    assert one_line(CheckpointError("a does not fit\n  missing keys: x")) == "a does not fit; missing keys: x"
    missing = FileNotFoundError(2, "No such file or directory", "/x")
    assert one_line(missing) == "No such file or directory: /x"


def test_run_cli_reports_user_errors(capsys):
    def fails(exc):
        def main():
            raise exc
        return main

    for exc in (UserError("bad value"), DatasetConfigError("bad config"), CheckpointError("bad file")):
        assert run_cli(fails(exc), "prog") == 2
        err = capsys.readouterr().err
        assert err.startswith("prog: error: ") and err.count("\n") == 1
    assert run_cli(lambda: 0, "prog") == 0
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_cli(lambda: 1 / 0, "prog")


def test_plot_log_keeps_last_row_per_epoch(tmp_path):
    path = tmp_path / "x_log.csv"
    path.write_text("time,epoch,phase,loss,MAE,S,maxF,lr,frames,seconds\n"
                    "t,1,train,0.5,0.2,,,1e-05,4,1\nt,1,val,0.4,0.2,0.6,0.5,,4,1\n"
                    "t,1,train,0.45,0.2,,,1e-05,4,1\nt,2,train,0.3,0.1,,,1e-05,4,1\n")
    rows = read_log(path)
    assert [(r["epoch"], r["phase"], r["loss"]) for r in rows] == [
        (1, "train", 0.45), (1, "val", 0.4), (2, "train", 0.3)]
    assert plot_log(path).stat().st_size > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, folder: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        runtime = setup_runtime("cpu", 3)
        torch.manual_seed(123)
        task = TinyTask(TinyNet())
        config = TrainConfig(save_folder=folder, epochs=2, lr=1e-2, batch_size=2, num_workers=0,
                             progress=False, tensorboard=False)
        result = Trainer(task, runtime, config, TinySet(12), TinySet(7, seed=1)).fit()
        params = {name: p.detach() for name, p in task.model.named_parameters()}
        torch.save({"state": params, "best": result.best_score,
                    "frames": [r["frames"] for r in result.history]}, f"{out}.{rank}")
    finally:
        teardown_runtime()


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path):
    folder, out = tmp_path / "run", str(tmp_path / "out")
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(folder), out), nprocs=2, join=True,
                       start_method="spawn" if sys.platform == "darwin" else "fork")
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    # DDP keeps the replicas' parameters identical (BatchNorm statistics are rank 0's when saved)
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert ranks[0]["best"] == ranks[1]["best"]
    # the train phase sees the 12 items split over 2 processes; validation scores all 7 frames once
    assert ranks[0]["frames"] == [12, 7, 12, 7]
    assert best_model_path(folder, "tiny").is_file() and resume_path(folder, "tiny").is_file()
    state = torch.load(resume_path(folder, "tiny"), weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2


@pytest.mark.parametrize("winner, precision, channels_last", [
    ("fp32", "fp32", False),
    ("fp32, channels-last", "fp32", True),
    ("bf16 autocast, channels-last", "bf16", True),
])
def test_training_auto_precision_is_the_tuned_choice(tmp_path, monkeypatch, capsys, winner, precision,
                                                     channels_last):
    """`--precision auto` for training: the tuner times each candidate's step once (a fake clock makes
    `winner` the fastest) where that is affordable, and the trainer trains with the choice, weights
    untouched and the shared runtime unchanged."""
    from libs.engine import tuning
    from libs.runtime import calibration, tuner

    monkeypatch.setenv(calibration.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(tuning, "native_bf16", lambda device: True)
    monkeypatch.setattr(tuner, "CHOOSING_SHARE", 100.0)  # the tiny epoch may pay for the timing
    real = calibration.time_alternately
    timings: list[int] = []

    def clocked(candidates, rounds, warmup, timer=None):
        timings.append(1)
        order: list[str] = []
        timed = {name: (lambda n=name, run=run: (order.append(n), run())) for name, run in candidates.items()}
        clock = [0.0, False]

        def fake() -> float:
            if clock[1]:
                clock[0] += 0.1 if order[-1] == winner else 1.0
            clock[1] = not clock[1]
            return clock[0]

        return real(timed, rounds, warmup, fake)

    monkeypatch.setattr(calibration, "time_alternately", clocked)
    runtime = cpu_runtime(0)
    torch.manual_seed(123)
    task = TinyTask(TinyNet())
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    config = TrainConfig(save_folder=tmp_path / "run", epochs=1, lr=1e-2, batch_size=4, num_workers=0,
                         progress=False, tensorboard=False)
    auto = plan_run("training", runtime.device)
    trainer = Trainer(task, runtime, config, TinySet(12), TinySet(8, seed=1), auto)
    assert trainer.plan.precision == precision and trainer.plan.channels_last == channels_last
    assert trainer.module.conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert all(torch.equal(before[k], v) for k, v in task.model.state_dict().items())
    assert f"training plan: {trainer.plan.name()}" in capsys.readouterr().out
    assert timings == [1]
    again = Trainer(task, runtime, config, TinySet(12), TinySet(8, seed=1), auto)
    assert again.plan.name() == trainer.plan.name() and timings == [1]  # nothing timed twice


def test_training_auto_does_not_time_what_the_first_epoch_cannot_pay_for(tmp_path, monkeypatch, capsys):
    from libs.runtime import calibration

    monkeypatch.setattr(calibration, "time_alternately", lambda *a, **k: pytest.fail("timed"))
    runtime = cpu_runtime(0)
    config = TrainConfig(save_folder=tmp_path / "run", epochs=1, lr=1e-2, batch_size=4, num_workers=0,
                         progress=False, tensorboard=False)
    trainer = Trainer(TinyTask(TinyNet()), runtime, config, TinySet(12), TinySet(8, seed=1),
                      plan_run("training", runtime.device))
    assert trainer.plan.precision == "fp32" and not trainer.plan.channels_last
    assert "too few to pay for timing" in capsys.readouterr().out


def test_video_training_batches_a_clips_frames_with_the_backbone_batchnorm_frozen():
    """The video recipe builds its model to pass a clip's frames as one batch (faster); the public
    constructor keeps the release's frame loop, and setting the train mode changes neither."""
    from libs.engine.recipes import RECIPES, RecipeOptions, build_model
    from libs.networks import VideoModel

    assert not VideoModel().frames_as_batch
    model = build_model(RECIPES["video"], RecipeOptions(checkpoint="none"), log=False)
    assert model.frames_as_batch
    VideoSaliencyTask(model).set_train_mode(model)
    assert model.frames_as_batch and model.training
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d))
