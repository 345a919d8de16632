"""The errors a user can cause (bad flags, missing or unfit files) and how scripts report them.

Scripts report these as one `prog: error: ...` message on stderr with exit status 2 and no
traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import re

from libs.datasets.config import DatasetConfigError
from libs.utils.checkpoint import CheckpointError


class EngineError(RuntimeError):
    """A training or inference run cannot go on for a reason the user can fix."""


def _evaluation_error() -> tuple[type[BaseException], ...]:
    try:
        from libs.utils.evaluation import EvaluationError
    except ImportError:  # the evaluation library is optional for training
        return ()
    return (EvaluationError,)


# Exceptions that mean "the input is wrong", not "the code is wrong".
USER_ERRORS: tuple[type[BaseException], ...] = (
    EngineError,
    CheckpointError,
    DatasetConfigError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    *_evaluation_error(),
)


def one_line(exc: BaseException) -> str:
    """The message of `exc` as text for a one-line report (ANSI codes removed, lines joined)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Original Traceback (most recent call last):" in lines and lines:
        # raised in a DataLoader worker: the original "module.Error: message" is the last line
        lines = [re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])]
    return "; ".join(lines) if lines else type(exc).__name__
