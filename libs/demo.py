"""`train.py --demo`: the whole recipe on synthetic data, from scratch, on a CPU, in minutes.

A toy: the models learn 64x64 synthetic shapes on textured backgrounds, which proves that data
generation, both training stages, checkpointing, inference and scoring run end to end on this
machine. Its checkpoints are not models of real video (on real frames they give noise); for
real maps use the release's `video_best_model.pth` (README, "Weights").

1. Synthetic DAVIS2016/FBMS/VOS/MSRA-B/HKU-IS datasets (`libs.datasets.synthetic`) are
   written to `data/synthetic/datasets` unless already there.
2. A freshly initialised RCRNet+NER is scored on VOS val: the "before" S-measure.
3. The paper's recipe, shortened: RCRNet pretrained on the synthetic MSRA-B + HKU-IS
   images (BatchNorm training, image augmentation; from scratch instead of ImageNet, so
   nothing is downloaded), then RCRNet+NER trained on the DAVIS2016 + FBMS + VOS clips
   from it (BatchNorm frozen), validated on VOS val after every epoch. Frames are 64x64.
4. The best video model predicts the held-out DAVIS2016 val, FBMS test and VOS test
   videos (inference.py's code path) and its maps are scored (evaluate.py's code path).

Everything is written under `data/synthetic/`: the run's checkpoints, logs and curves in
`run/image/` and `run/video/` (per stage: the best model, the last epoch's weights, the CSV
log and its PNG; no per-epoch backups, and the resume files are deleted when the demo
ends), the maps in `results/`. Each stage prints what it does and, when it ends, how long it
took. The last line printed is `demo: S-measure <before> -> <after>`.
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from libs.datasets.splits import VIDEO_TEST_SETS
from libs.datasets.synthetic import generate_synthetic
from libs.engine.recipes import RECIPES, RecipeOptions, build_datasets, build_model, train
from libs.engine.tasks import VideoSaliencyTask
from libs.engine.trainer import TrainConfig, Trainer, best_model_path, resume_path
from libs.evaluation import PAPER_METRICS, evaluate_results, markdown_table
from libs.inference import InferenceOptions, Predictor, infer_split
from libs.networks.weights import init_video_from_image
from libs.runtime.plan import plan_run
from libs.runtime.session import setup_runtime

DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "synthetic"


@dataclass(frozen=True)
class DemoSettings:
    """The demo's sizes and schedule (chosen to run in about five minutes on two CPU cores)."""

    size: int = 64
    videos: int = 4
    images: int = 48
    image_epochs: int = 8
    image_lr: float = 1e-4
    image_batch: int = 8
    video_epochs: int = 3
    video_lr: float = 1e-5
    video_batch: int = 1


@dataclass
class DemoResult:
    before: float
    after: float
    seconds: float
    table: str


@contextmanager
def _stage(name: str, what: str) -> Iterator[None]:
    """Print the stage's `name` and `what` it does as it begins, and its duration when it ends."""
    print(f"demo: {name}: {what}", flush=True)
    start = time.perf_counter()
    yield
    print(f"demo: {name} took {time.perf_counter() - start:.0f} s", flush=True)


def run_demo(device: str = "cpu", precision: str = "fp32", seed: int = 0, folder: str | Path = DEMO_DIR,
             settings: DemoSettings = DemoSettings(), progress: bool = True) -> DemoResult:
    """Run the demo (see the module docstring); prints as it goes and returns the scores."""
    start = time.perf_counter()
    folder = Path(folder)
    print("demo: a toy run on 64x64 synthetic shapes, to show the pipeline runs end to end here; its "
          "models give noise on real video (for real maps: models/video_best_model.pth, README 'Weights')",
          flush=True)
    with _stage("data", f"synthetic datasets in {folder / 'datasets'}"):
        config = generate_synthetic(folder / "datasets", seed=0, videos=settings.videos,
                                    images=settings.images)
        data = config.parent
    for stale in ("run", "results"):
        shutil.rmtree(folder / stale, ignore_errors=True)
    # the demo's numbers (README) are the same on every machine: `auto` would pick by measuring
    precision = "fp32" if precision == "auto" else precision
    runtime = setup_runtime(device, seed)
    image_recipe, video_recipe = RECIPES["image"], RECIPES["video"]
    fresh_options = RecipeOptions(data=data, dataset_config=config, size=settings.size, checkpoint="none")

    def train_config(stage: str, epochs: int, lr: float, batch: int, eval_first: bool = False) -> TrainConfig:
        # backup_epochs = epochs: only the last epoch's weights are written, not one file per epoch
        return TrainConfig(save_folder=folder / "run" / stage, epochs=epochs, lr=lr, batch_size=batch,
                           num_workers=0, backup_epochs=max(1, epochs), eval_first=eval_first,
                           progress=progress, tensorboard=False, plot=True)

    with _stage("baseline", "scoring a freshly initialised RCRNet+NER on VOS val"):
        fresh = build_model(video_recipe, fresh_options, log=False)
        _, val_set = build_datasets(video_recipe, fresh_options)
        probe = Trainer(VideoSaliencyTask(fresh), runtime, train_config("fresh", 0, 1e-5, 1),
                        val_set, val_set)
        before = probe.validate(0)["S"]
        print(f"demo: before training, VOS val S-measure {before:.3f}", flush=True)

    with _stage("image stage", f"RCRNet on synthetic MSRA-B + HKU-IS, {settings.image_epochs} epochs"):
        train(image_recipe, runtime, train_config("image", settings.image_epochs, settings.image_lr,
                                                  settings.image_batch), fresh_options, precision=precision)

    with _stage("video stage",
                f"RCRNet+NER on synthetic DAVIS2016 + FBMS + VOS, {settings.video_epochs} epochs"):
        video_model = build_model(video_recipe, fresh_options, log=False)
        init_video_from_image(video_model, best_model_path(folder / "run" / "image", image_recipe.prefix))
        result = train(video_recipe, runtime, train_config("video", settings.video_epochs, settings.video_lr,
                                                           settings.video_batch, eval_first=True),
                       fresh_options, model=video_model, precision=precision)
        after = result.best_score

    with _stage("inference", "the best video model on held-out synthetic videos, then scoring"):
        best = best_model_path(folder / "run" / "video", video_recipe.prefix)
        predictor = Predictor.from_checkpoint(best, plan_run("inference", runtime.device, precision))
        options = InferenceOptions(results_folder=folder / "results", size=settings.size, num_workers=0,
                                   progress=progress)
        scores = {}
        for dataset, split in VIDEO_TEST_SETS:
            infer_split(predictor, data, dataset, split, config, options)
            scores[dataset] = evaluate_results(options.results_folder, data, dataset, split,
                                               config_path=config, metrics=PAPER_METRICS)
    table = markdown_table({"RCRNet+NER (demo)": scores})
    for recipe in (image_recipe, video_recipe):
        resume_path(folder / "run" / recipe.name, recipe.prefix).unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    print(f"demo: trained model {best} (a toy: synthetic shapes only); saliency maps in "
          f"{options.results_folder}; curves in {folder / 'run' / 'video' / 'video_log.png'}")
    print(f"demo: held-out synthetic videos ({seconds:.0f} s in all):")
    print(table)
    print(f"demo: S-measure {before:.3f} -> {after:.3f}", flush=True)
    return DemoResult(before, after, seconds, table)
