"""The errors a user can cause and the one-line form in which every script reports them.

`UserError` is the base of every error that means "the input is wrong" (a bad flag value,
a missing or unfit file, a dataset config that does not match the disk) rather than "the
code is wrong". Library code raises it (or a subclass) with facts: the file, key or
value, what was expected and what was found; the command-line layer (`libs.cli`) prints
it as one `prog: error: ...` line with exit status 2 and may add advice about flags.
"""
from __future__ import annotations

import re


class UserError(Exception):
    """An input problem the user can fix; reported as one line, without a traceback."""


def one_line(exc: BaseException) -> str:
    """The message of `exc` as one line of text (ANSI codes removed, lines joined by "; ")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Original Traceback (most recent call last):" in lines:
        # raised in a DataLoader worker: the original "module.Error: message" is the last line
        lines = [re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])]
    return "; ".join(lines) if lines else type(exc).__name__


def first_line(exc: BaseException) -> str:
    """`exc` as its type and the first line of its message, for reasons quoted inside another message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    first = text.splitlines()[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
