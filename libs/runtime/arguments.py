"""The one command line of every script and `python -m` entry point: parser, flag types, runner.

It lives at the bottom layer so that modules with their own command line (dataset
preparation, checkpoint conversion, ONNX export, log plots, synthetic data, the
semi-supervised pipeline) behave as the top-level scripts do:

- `ArgumentParser`: usage errors are one line (`prog: error: ... (see --help)`, exit status 2)
  and `--help` shows each flag's default and allowed range (`HelpFormatter`).
- argparse types declare their range with `@allowed("...")` (shown in --help); `int_at_least`
  makes the integer types (`positive_int`, `non_negative_int`, the scripts' frame sizes).
- `run_command(main, prog)`: runs a command's body, reporting user errors (`UserError`,
  `OSError`) as one `prog: error: ...` line with exit status 2 and Ctrl-C with status 130.
  `libs.cli.run_cli` is this runner plus the training runtime's teardown.
"""
from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from .errors import UserError, one_line

T = TypeVar("T", bound=Callable[[str], Any])

# Exceptions that mean "the input or the environment is wrong", not "the code is wrong".
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError)


def allowed(description: str) -> Callable[[T], T]:
    """Decorator for argparse types: `description` is shown in --help as the flag's range."""

    def mark(function: T) -> T:
        function.allowed = description  # type: ignore[attr-defined]
        return function

    return mark


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and allowed ranges and keeps the description's line breaks.

    A flag's default is appended as `(default: ...)` unless its help already says what the
    default is (it says "(default" or "the default"), so that no flag shows its default twice; the range
    comes before the default. Lines are not broken at hyphens, so that flags and paths
    (`--results-folder`, `<save-folder>`) stay whole.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        description = getattr(action.type, "allowed", None)
        if description and description not in text and not action.choices:
            before, said, after = text.partition(" (default")
            text = f"{before} [{description}]{said}{after}"
        already_said = "%(default)" in text or re.search(r"\(default\b|\bthe default\b", text) is not None
        # identity, not equality: a default of 0 is shown, the False of a store_true flag is not
        default = action.default
        unset = default is None or default is False or default is argparse.SUPPRESS or default == ""
        if unset or already_said:
            return text
        return text + super()._get_help_string(action)[len(action.help or ""):]  # the default's note

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2) and defaults shown in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_at_least(minimum: int, name: str, why: str = "") -> Callable[[str], int]:
    """An argparse type accepting integers >= `minimum`; `why` is added to its error message.

    `name` is the type's name in argparse's "invalid <name> value" message.
    """

    @allowed(f"an integer >= {minimum}")
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            reason = f": {why}" if why else ""
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}{reason}")
        return value

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = f"argparse type: an integer >= {minimum}."
    return parse


positive_int = int_at_least(1, "positive_int")
non_negative_int = int_at_least(0, "non_negative_int")


@allowed("a number > 0")
def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def run_command(main: Callable[[], int | None], prog: str,
                user_errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """Run `main()` and return its exit status (None counts as 0).

    An exception of `user_errors` becomes one `prog: error: <message>` line on stderr and
    status 2; Ctrl-C becomes `prog: interrupted` and status 130. Anything else is a bug in
    the code and keeps its traceback.
    """
    try:
        status = main()
    except user_errors as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
    return int(status or 0)
