"""Files written atomically and PyTorch files read safely: the only ways this project writes
results or reads pickled tensors.

`write_atomic` writes a temporary file beside the target, flushes and fsyncs it, gives it
the mode the user's umask gives new files, and renames it over the target, so readers see
the old file or the whole new one, never half a file; any failure (a full disk, a read-only
folder, a path through a file) is one `FileWriteError` naming the target and the system's
reason.

A temporary file names the process that owns it:
`.<name>.<host>.<pid>.<8 random characters>.rcrnet-tmp` (`<host>`: the host name with every
character other than a letter, digit or dash replaced by a dash). A process killed between
creating and renaming leaves its temporary file behind; `remove_stale_temporaries`, called
when a run starts, deletes such files only when their owner is known to be dead: written on
this host by a process id that no longer runs. Files of another host, of a live process
(another run sharing the folder), or without an owner in their name are kept.
`read_torch_file` is `torch.load(..., weights_only=True)` on the CPU, with every failure
turned into one `FileReadError` naming the file.
"""
from __future__ import annotations

import errno
import os
import pickle
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import UserError

PathLike = str | os.PathLike[str]
TEMP_SUFFIX = ".rcrnet-tmp"
# `.<name>.<host>.<pid>.<random>.rcrnet-tmp`, the random part being what tempfile.mkstemp draws
TEMP_PATTERN = re.compile(r"\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}"
                          + re.escape(TEMP_SUFFIX))
WEIGHTS_ONLY_REFUSAL = "Weights only load failed"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL = b"\x80"


class FileReadError(UserError):
    """A file cannot be read as what it should be (missing, damaged or of another kind)."""


class FileWriteError(UserError):
    """A file cannot be written (disk full, read-only folder, no permission, a parent that is a file)."""


def _reason(exc: OSError) -> str:
    if exc.strerror:
        return exc.strerror
    return os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)


def host_tag() -> str:
    """This host's name as temporary file names carry it (letters, digits and dashes only)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "localhost"


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a process of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # cannot tell: keep what it may own
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable where the platform allows syncing a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace `path` with what `write(handle)` writes to an open binary file.

    Parent folders are created. On any failure the temporary file is removed and the old
    `path`, if any, is left as it was; an `OSError` becomes a `FileWriteError` "cannot write
    <path>: <reason>" (other exceptions, Ctrl-C included, pass through).
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{host_tag()}.{os.getpid()}.",
                                   suffix=TEMP_SUFFIX)
    except OSError as exc:
        blocking = next((p for p in path.parents if p.exists()), None)
        if isinstance(exc, (FileExistsError, NotADirectoryError)) and blocking and not blocking.is_dir():
            raise FileWriteError(f"cannot write {path}: {blocking} is a file, not a folder") from exc
        raise FileWriteError(f"cannot write {path}: {_reason(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FileWriteError(f"cannot write {path}: {_reason(exc)}") from exc
        raise
    _fsync_directory(path.parent)


def temporary_owner(path: PathLike) -> tuple[str, int] | None:
    """(host, pid) of the process that created `write_atomic`'s temporary file `path`, or None
    when `path` is not named as those files are."""
    match = TEMP_PATTERN.fullmatch(Path(path).name)
    return (match["host"], int(match["pid"])) if match else None


def is_stale_temporary(path: PathLike) -> bool:
    """Whether `path` is a temporary file of `write_atomic` whose owner process is dead: created
    on this host by a process that no longer runs (this process's own files are never stale)."""
    owner = temporary_owner(path)
    if owner is None or owner[0] != host_tag():
        return False
    return owner[1] != os.getpid() and not process_alive(owner[1])


def remove_stale_temporaries(folder: PathLike, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that killed runs left in `folder` (and below, when `recursive`).

    Only regular files that `is_stale_temporary` finds to be a dead process's are removed,
    so another run writing to the same folder keeps its own; a missing folder is no error.
    Returns the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    walk = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for parent, _, names in walk:
        for name in names:
            candidate = Path(parent) / name
            if is_stale_temporary(candidate) and candidate.is_file() and not candidate.is_symlink():
                try:
                    candidate.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise FileWriteError(f"cannot remove the stale temporary file {candidate}: "
                                         f"{_reason(exc)}") from exc
                removed.append(candidate)
    return removed


def save_torch(obj: Any, path: PathLike) -> None:
    """`torch.save(obj)` to `path` atomically (`write_atomic`)."""
    write_atomic(path, lambda handle: torch.save(obj, handle))


def read_torch_file(path: PathLike, what: str = "checkpoint") -> Any:
    """What `torch.save` stored at `path`, read with `weights_only=True` onto the CPU.

    `what` names the file's role in messages ("checkpoint", "resume file"). A missing file,
    a damaged one, a file of another format and one holding pickled objects other than
    tensors and plain containers are all one `FileReadError`; no pickled code ever runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileReadError(f"{what} {path}: {'not a file' if path.exists() else 'no such file'}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    # torch.save writes a zip archive, or (legacy format, PyTorch < 1.6) a pickle of protocol 2+
    if not (magic.startswith(ZIP_MAGIC) or magic[:1] == PICKLE_PROTOCOL):
        raise FileReadError(f"cannot read {what} {path}: not a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged or foreign files
        if isinstance(exc, pickle.UnpicklingError) and WEIGHTS_ONLY_REFUSAL in str(exc):
            raise FileReadError(f"{what} {path}: holds pickled objects other than tensors, which are "
                                "never loaded (only tensors, numbers, strings and containers are)") from None
        raise FileReadError(f"cannot read {what} {path}: a damaged file written by torch.save "
                            f"({type(exc).__name__})") from None
