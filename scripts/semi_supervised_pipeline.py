"""The semi-supervised pipeline of the paper, end to end on synthetic videos, with DIS flow (CPU).

    python -m scripts.semi_supervised_pipeline --out runs/semi_supervised

(run from the checkout: each step runs the project's top-level scripts).

Steps (each a run of the project's scripts, so this is also their end-to-end check):

0. synthetic datasets (`libs.datasets.synthetic`): DAVIS2016/FBMS videos annotated on every
   frame, VOS every 15th, MSRA-B/HKU-IS images;
1. RCRNet pretrained on the synthetic images (`train.py --stage image`, fresh init): the
   image-pretrained checkpoint every later stage starts from, as in the release;
2. (a) pseudo-labels by plain flow warping: the mean of the two labelled neighbours' labels
   warped by DIS flow (`generate_pseudo_labels.py --warp-only --flow dis`);
3. FGPLG trained on the training videos with every `--label_interval`-th label
   (`train_fgplg.py --flow dis`), then (b) its pseudo-labels (`generate_pseudo_labels.py`);
   (a) and (b) are scored against the true masks of the frames they replace;
4. (c) RCRNet+NER trained on (b)'s folder (`train.py --pseudo-label-folder .../m_l`) and on
   the sparse ground truth only (the kept labels alone, `.../0_l`), with the same number of
   optimisation steps, seed and validation; both best models are then scored on the held-out,
   fully annotated DAVIS2016 val and FBMS test videos.

Every step is skipped when its output exists (delete the folder, or pass --fresh, to redo
it; --fresh deletes only a folder this pipeline wrote, one holding its `pipeline.log`); a training
step stopped before its output was written starts again (`--overwrite`). Results go to
`<out>/results.json` and `<out>/results.md`, written atomically. CPU threads are limited to
`--threads` (default 1) for torch, OpenMP and OpenCV, so the run shares a machine politely. A
step that fails stops the pipeline with one line naming its log.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from libs.cli import ArgumentParser, frame_size, positive_float, positive_int, run_cli
from libs.datasets import get_datasets, get_transforms, use_pseudo_labels
from libs.datasets.synthetic import generate_synthetic
from libs.evaluation.metrics import SaliencyMetrics
from libs.inference.label_jobs import clip_datasets, plan_jobs
from libs.networks import VideoModel
from libs.networks.weights import load_weights
from libs.runtime.errors import UserError
from libs.runtime.files import write_atomic

PROG = "python -m scripts.semi_supervised_pipeline"
# The checkout, whose top-level scripts the steps run.
ROOT = Path(__file__).resolve().parents[1]

METRICS = ("MAE", "S", "maxF")
TRAIN_SETS = (("DAVIS2016", "train"), ("FBMS", "train"), ("VOS", "train"))
TEST_SETS = (("DAVIS2016", "val"), ("FBMS", "test"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The pipeline's flags (usage errors: one line, exit status 2)."""
    parser = ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--out", default="runs/semi_supervised", metavar="DIR",
                        help="work folder (data, checkpoints, labels)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete --out first (only a folder this pipeline wrote) and redo every step")
    parser.add_argument("--seed", type=int, metavar="N", default=0,
                        help="seed of the data and of every training run")
    parser.add_argument("--threads", type=positive_int, metavar="N", default=1, help="CPU threads per step")
    parser.add_argument("--label-interval", "--label_interval", dest="label_interval", type=positive_int,
                        metavar="N", default=5, help="keep every l-th label (l)")
    parser.add_argument("--frame-between-label-num", "--frame_between_label_num",
                        dest="frame_between_label_num", type=positive_int, metavar="N", default=1,
                        help="pseudo-labels generated between two kept labels (m)")
    parser.add_argument("--size", type=frame_size, metavar="N", default=64,
                        help="network input size (frames are 64x64)")
    counts = (("--videos", 8, "synthetic videos per training split"),
              ("--frames", 40, "frames per DAVIS2016/FBMS video"),
              ("--vos-frames", 160, "frames per VOS video (labelled every 15th)"),
              ("--images", 300, "synthetic images per image-dataset train split"))
    for flag, default, text in counts:
        parser.add_argument(flag, type=positive_int, metavar="N", default=default, help=text)
    for stage, epochs, lr, what in (("image", 6, 3e-4, "image pretraining"), ("fgplg", 18, 1e-4, "FGPLG"),
                                    ("video", 4, 1e-4, "RCRNet+NER on the pseudo-labels")):
        note = " (the sparse run gets as many steps)" if stage == "video" else ""
        parser.add_argument(f"--{stage}-epochs", type=positive_int, metavar="N", default=epochs,
                            help=f"{what}: epochs{note}")
        parser.add_argument(f"--{stage}-lr", type=positive_float, metavar="LR", default=lr,
                            help=f"{what}: learning rate of Adam")
    return parser.parse_args(argv)


class Pipeline:
    """The steps, their folders and the shared flags."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out).resolve()
        self.data = self.out / "data"
        self.config = self.data / "datasets.yaml"
        self.m, self.l = args.frame_between_label_num, args.label_interval
        self.env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                        OPENCV_FOR_THREADS_NUM=str(args.threads))
        self.log = self.out / "pipeline.log"
        self.results: dict[str, Any] = {}

    # ---------------------------------------------------------------- helpers

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        with self.log.open("a") as handle:
            handle.write(line + "\n")

    def run(self, name: str, script: str, *flags: Any) -> float:
        """Run one of the project's scripts (output appended to <out>/logs/<name>.log); returns seconds."""
        command = [sys.executable, str(ROOT / script), *map(str, flags)]
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.say(f"{name}: {' '.join(command[1:])}")
        start = time.perf_counter()
        with (logs / f"{name}.log").open("a") as handle:
            status = subprocess.run(command, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        if status.returncode != 0:
            lines = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()
            last = f": {lines[-1].strip()}" if lines else ""
            raise UserError(f"step {name} failed (exit {status.returncode}); its log is "
                            f"{logs / f'{name}.log'}{last}")
        self.say(f"{name}: done in {seconds / 60:.1f} min")
        return seconds

    def common(self) -> list[Any]:
        return ["--data", self.data, "--dataset-config", self.config, "--size", self.args.size, "-j", 0,
                "--device", "cpu"]

    # ---------------------------------------------------------------- steps

    def synthetic(self) -> None:
        a = self.args
        generate_synthetic(self.data, seed=a.seed, height=64, width=64, videos=a.videos, frames=a.frames,
                           vos_frames=a.vos_frames, images=a.images)
        self.say(f"synthetic data in {self.data}")

    def image_model(self) -> Path:
        folder = self.out / "image"
        path = folder / "image_current_best_model.pth"
        if not path.is_file():
            seconds = self.run("image", "train.py", "--stage", "image", "--checkpoint", "none",
                               *self.common(), "--epochs", self.args.image_epochs, "--batch-size", 8,
                               "--lr", self.args.image_lr, "--seed", self.args.seed, "--save-folder", folder,
                               "--overwrite")
            self.results["image_minutes"] = seconds / 60
        return path

    def pseudo_labels(self, name: str, *flags: Any, m: int | None = None) -> Path:
        m = self.m if m is None else m
        root = self.out / f"pseudo-{name}"
        folder = root / f"{m}_{self.l}"
        marker = root / f".{m}_{self.l}.done"
        if not marker.is_file():
            self.run(f"pseudo-{name}", "generate_pseudo_labels.py", *self.common(), "--flow", "dis",
                     "--label_interval", self.l, "--frame_between_label_num", m,
                     "--pseudo-label-folder", root, *flags)
            marker.touch()
        return folder

    def fgplg(self, image_checkpoint: Path) -> Path:
        folder = self.out / "fgplg"
        path = folder / f"fgplg_epoch-{self.args.fgplg_epochs}.pth"
        if not path.is_file():
            seconds = self.run("fgplg", "train_fgplg.py", "--flow", "dis", "--checkpoint", image_checkpoint,
                               *self.common(), "--label_interval", self.l, "--epochs", self.args.fgplg_epochs,
                               "--lr", self.args.fgplg_lr, "--seed", self.args.seed, "--save-folder", folder,
                               "--overwrite")
            self.results["fgplg_minutes"] = seconds / 60
        return path

    def video_model(self, name: str, labels: Path, epochs: int, image_checkpoint: Path) -> Path:
        folder = self.out / f"video-{name}"
        path = folder / "video_current_best_model.pth"
        if not (folder / f"video_epoch-{epochs}.pth").is_file():
            seconds = self.run(f"video-{name}", "train.py", "--checkpoint", image_checkpoint,
                               *self.common(), "--pseudo-label-folder", labels, "--epochs", epochs,
                               "--lr", self.args.video_lr, "--seed", self.args.seed, "--save-folder", folder,
                               "--overwrite")
            self.results[f"video_{name}_minutes"] = seconds / 60
        return path

    # ---------------------------------------------------------------- scoring

    def score_pseudo_labels(self, folder: Path) -> dict[str, float]:
        """Score the generated labels in `folder` against the true masks of their frames (where known)."""
        dataset = get_datasets([n for n, _ in TRAIN_SETS], [s for _, s in TRAIN_SETS], self.config, self.data,
                               True, None, read_clip=True, label_interval=self.l,
                               frame_between_label_num=self.m, clip_len=self.m + 2)
        parts = clip_datasets(dataset)
        metrics = SaliencyMetrics(METRICS)
        for job in plan_jobs(parts, folder):
            spec = parts[job.part].spec
            for _, path in job.generate:
                video = path.parent.relative_to(folder / spec.name)
                truth = spec.video_label_folder(self.data, str(video)) / f"{path.stem}{spec.label_ext}"
                if truth.is_file():
                    gt = np.asarray(Image.open(truth).convert("L"))
                    pred = np.asarray(Image.open(path).convert("L"))
                    metrics.step(pred, ((gt > 127) * 255).astype(np.uint8))
        return _results(metrics)

    def training_clips(self, labels: Path) -> int:
        dataset = get_datasets([n for n, _ in TRAIN_SETS], [s for _, s in TRAIN_SETS], self.config, self.data,
                               True, None, read_clip=True, random_reverse_clip=True, clip_len=4)
        return len(use_pseudo_labels(dataset, labels, clip_len=4))

    @torch.no_grad()
    def score_video_model(self, checkpoint: Path) -> dict[str, float]:
        """A VideoModel's saliency on the held-out, fully annotated videos (clips of 4, every frame)."""
        model = VideoModel()
        load_weights(model, checkpoint)
        model.eval()
        transforms = get_transforms(image_mode=False, input_size=self.args.size)
        dataset = get_datasets([n for n, _ in TEST_SETS], [s for _, s in TEST_SETS], self.config, self.data,
                               False, transforms["test"], read_clip=True, clip_len=4)
        metrics = SaliencyMetrics(METRICS)
        seen: set[tuple[str, str]] = set()
        for part in clip_datasets(dataset):
            for index in range(len(part)):
                clip = part[index]
                logits = model(torch.stack([f["image"] for f in clip])[None])[0]
                for frame, logit in zip(clip, logits):
                    key = (frame["dataset"], frame["image_id"])
                    if key in seen or "label" not in frame:
                        continue
                    seen.add(key)
                    size = (frame["height"], frame["width"])
                    prob = _resize(torch.sigmoid(logit), size)
                    truth = _resize(frame["label"], size)
                    metrics.step((prob * 255).round().to(torch.uint8).numpy(),
                                 ((truth >= 0.5).to(torch.uint8) * 255).numpy())
        return _results(metrics)

    # ---------------------------------------------------------------- all

    def main(self) -> dict[str, Any]:
        a = self.args
        if a.fresh and self.out.exists():
            if not (self.out / "pipeline.log").is_file() and any(self.out.iterdir()):
                raise UserError(f"--fresh: {self.out} holds no pipeline.log, so this pipeline did not write "
                                "it; refusing to delete it")
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(a.threads)
        self.synthetic()
        image = self.image_model()
        warp = self.pseudo_labels("warp", "--warp-only")
        self.results["a_warp"] = self.score_pseudo_labels(warp)
        self.say(f"(a) flow warping: {_line(self.results['a_warp'])}")
        fgplg = self.fgplg(image)
        generated = self.pseudo_labels("fgplg", "--checkpoint", fgplg)
        self.results["b_fgplg"] = self.score_pseudo_labels(generated)
        self.say(f"(b) FGPLG: {_line(self.results['b_fgplg'])}")
        sparse = self.pseudo_labels("sparse", "--warp-only", m=0)
        pseudo_clips, sparse_clips = self.training_clips(generated), self.training_clips(sparse)
        sparse_epochs = max(1, math.floor(a.video_epochs * pseudo_clips / sparse_clips + 0.5))
        self.results["steps"] = {"pseudo": pseudo_clips * a.video_epochs,
                                 "sparse": sparse_clips * sparse_epochs}
        self.say(f"video training: {pseudo_clips} clips x {a.video_epochs} epochs with pseudo-labels, "
                 f"{sparse_clips} clips x {sparse_epochs} epochs with sparse ground truth")
        with_pseudo = self.video_model("pseudo", generated, a.video_epochs, image)
        with_sparse = self.video_model("sparse", sparse, sparse_epochs, image)
        for name, path in (("c_pseudo", with_pseudo), ("c_sparse", with_sparse)):
            self.results[name] = self.score_video_model(path)
            self.results[name]["val_S"] = _best_val(path.parent)
            self.say(f"({name}) RCRNet+NER: {_line(self.results[name])}")
        text = json.dumps(self.results, indent=1) + "\n"
        write_atomic(self.out / "results.json", lambda handle: handle.write(text.encode()))
        write_atomic(self.out / "results.md", lambda handle: handle.write(self.table().encode()))
        self.say(f"results in {self.out / 'results.md'}")
        print(self.table())
        return self.results

    def table(self) -> str:
        r = self.results
        rows = [
            "| what | scored on | MAE | S-measure | max F |",
            "| --- | --- | --- | --- | --- |",
        ]
        for key, what, where in (
            ("a_warp", "(a) pseudo-labels: DIS flow warping", "the frames they replace"),
            ("b_fgplg", "(b) pseudo-labels: FGPLG (DIS flow)", "the frames they replace"),
            ("c_pseudo", "(c) RCRNet+NER on (b)'s pseudo-labels", "held-out videos"),
            ("c_sparse", "(c) RCRNet+NER on sparse ground truth only", "held-out videos"),
        ):
            if key in r:
                v = r[key]
                rows.append(f"| {what} | {where} ({v['frames']} frames) | {v['MAE']:.4f} | {v['S']:.4f} | "
                            f"{v['maxF']:.4f} |")
        return "\n".join(rows) + "\n"


def _resize(map_: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[1, h, w] -> [H, W], bilinear."""
    return torch.nn.functional.interpolate(map_[None], size=size, mode="bilinear", align_corners=False)[0, 0]


def _results(metrics: SaliencyMetrics) -> dict[str, float]:
    values = metrics.get_results()
    return {**{k: float(values[k]) for k in METRICS}, "frames": int(values["frames"])}


def _line(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {values[k]:.4f}" for k in METRICS) + f" ({values['frames']} frames)"


def _best_val(folder: Path) -> float | None:
    """The best validation S-measure in a training run's CSV log."""
    log = folder / "video_log.csv"
    if not log.is_file():
        return None
    import csv

    with log.open() as handle:
        rows = list(csv.DictReader(handle))
    scores = [float(row["S"]) for row in rows if row.get("phase") == "val" and row.get("S")]
    return max(scores) if scores else None


def main(argv: list[str] | None = None) -> int:
    """Command line: run every step (those whose output exists are skipped)."""
    args = parse_args(argv)

    def run() -> int:
        Pipeline(args).main()
        return 0

    return run_cli(run, PROG)


if __name__ == "__main__":
    sys.exit(main())
