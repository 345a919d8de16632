"""The one command-line parser of every script and `python -m` entry point.

It lives at the bottom layer so that modules with their own command line (dataset
preparation, checkpoint conversion, ONNX export, log plots, synthetic data) use the same
parser as the top-level scripts: usage errors are one line (`prog: error: ... (see --help)`,
exit status 2) and `--help` shows each flag's default and allowed range.

An argparse `type` declares its range with `@allowed("...")`; the help formatter appends it.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

T = TypeVar("T", bound=Callable[[str], Any])


def allowed(description: str) -> Callable[[T], T]:
    """Decorator for argparse types: `description` is shown in --help as the flag's range."""

    def mark(function: T) -> T:
        function.allowed = description  # type: ignore[attr-defined]
        return function

    return mark


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and allowed ranges and keeps the description's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        description = getattr(action.type, "allowed", None)
        if description and description not in text and not action.choices:
            text = f"{text} [{description}]"
        if action.default in (None, False, "", argparse.SUPPRESS) or "%(default)" in text:
            return text
        return text + super()._get_help_string(action)[len(action.help or ""):]  # the default's note


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2) and defaults shown in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


@allowed("an integer >= 1")
def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@allowed("an integer >= 0")
def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


@allowed("a number > 0")
def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
