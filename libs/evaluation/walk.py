"""Walking a folder tree that may hold symlinks, without ever entering a folder twice.

Results folders are often assembled from symlinks (a method's maps linked in from another
run), so links are followed; a link back to a folder above (`ln -s .. loop`) or two links to
one folder would otherwise make the walk endless or count files twice. Each folder is
identified by its device and inode, and a folder already entered is skipped.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def walk_files(root: str | Path) -> Iterator[tuple[str, Path]]:
    """(path relative to `root` in POSIX form, file) for every file under `root`.

    Folders and files are visited in name order; hidden entries (a leading dot) are skipped;
    symlinked folders are followed unless they lead to a folder already entered.
    """
    root = Path(root)
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        identity = os.stat(dirpath)
        key = (identity.st_dev, identity.st_ino)
        if key in seen:
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        rel = base.relative_to(root).as_posix()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = base / name
            if path.is_file():
                yield (name if rel == "." else f"{rel}/{name}"), path
