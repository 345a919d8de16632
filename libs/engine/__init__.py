"""The one training loop (`Trainer`), its tasks, runtime setup and command-line pieces.

train.py (RCRNet image and video stages) and train_fgplg.py use the same loop; a `Task`
says how a batch becomes a loss and predictions. See README.md, "Training".
"""
from .cli import (
    ArgumentParser,
    add_data_arguments,
    add_model_arguments,
    add_runtime_arguments,
    add_training_arguments,
    run_cli,
    train_config_from_args,
)
from .errors import USER_ERRORS, EngineError, one_line
from .logs import LOG_COLUMNS, RunLogger, log_path, read_log
from .runtime import Runtime, runtime_session, setup_runtime, teardown_runtime
from .tasks import ImageSaliencyTask, StepOutput, Task, VideoSaliencyTask, bce_per_frame
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
    "USER_ERRORS",
    "ArgumentParser",
    "EngineError",
    "FitResult",
    "ImageSaliencyTask",
    "RunLogger",
    "Runtime",
    "StepOutput",
    "Task",
    "TrainConfig",
    "Trainer",
    "VideoSaliencyTask",
    "add_data_arguments",
    "add_model_arguments",
    "add_runtime_arguments",
    "add_training_arguments",
    "backup_path",
    "bce_per_frame",
    "best_model_path",
    "log_path",
    "one_line",
    "plot_log",
    "read_log",
    "resume_path",
    "run_cli",
    "runtime_session",
    "score_frames",
    "setup_runtime",
    "teardown_runtime",
    "train_config_from_args",
]


def __getattr__(name: str) -> object:
    # imported on first use, so that `python -m libs.engine.plot` runs the module only once
    if name == "plot_log":
        from .plot import plot_log

        return plot_log
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
