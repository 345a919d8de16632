"""Training: the one loop (`Trainer`) shared by train.py and train_fgplg.py, its tasks, the
three recipes (image, video, FGPLG) and the run logs. See README.md, "Training"."""
from .logs import LOG_COLUMNS, RunLogger, log_path, read_log
from .recipes import RECIPES, Recipe, RecipeOptions, build_datasets, build_model, get_recipe, make_task, train
from .tasks import FGPLGTask, ImageSaliencyTask, StepOutput, Task, VideoSaliencyTask, bce_per_frame
from .trainer import (
    FitResult,
    TrainConfig,
    Trainer,
    backup_path,
    best_model_path,
    resume_path,
    score_frames,
)

__all__ = [
    "LOG_COLUMNS",
    "RECIPES",
    "FGPLGTask",
    "FitResult",
    "ImageSaliencyTask",
    "Recipe",
    "RecipeOptions",
    "RunLogger",
    "StepOutput",
    "Task",
    "TrainConfig",
    "Trainer",
    "VideoSaliencyTask",
    "backup_path",
    "bce_per_frame",
    "best_model_path",
    "build_datasets",
    "build_model",
    "get_recipe",
    "log_path",
    "make_task",
    "read_log",
    "resume_path",
    "score_frames",
    "train",
]
