"""Lay out official dataset downloads as config/datasets.yaml expects, and check them.

    python -m libs.datasets.prepare NAME --source DOWNLOAD --data data/datasets [--copy]
    python -m libs.datasets.prepare NAME --data data/datasets --check

Files are symlinked (default) or copied (`--copy`); files that must change are written: masks
of several objects merged into one foreground (SegTrack v2, FBMS), frames not in the
extension the config names converted (SegTrack v2 .bmp -> .png, ViSal's authors' .bmp/.png
-> .jpg), split files listed one id a line (MSRA-B, HKU-IS). `--check` counts videos, frames
and annotated frames per split and compares them with the figures the datasets' authors
publish (config/dataset_counts.yaml). docs/datasets.md describes the layout each preparer
reads and which were checked on real files.

Modules: `files` (placing files), `videos`, `visal` and `images` (the preparers),
`preparers` (which dataset uses which), `counts` and `check` (`--check`), `command` (the
command line).
"""
from __future__ import annotations

from .check import SplitCount, check
from .command import build_parser, main
from .counts import DEFAULT_COUNTS, Published, load_counts
from .files import PrepareError
from .preparers import PREPARERS, prepare

__all__ = [
    "DEFAULT_COUNTS",
    "PREPARERS",
    "PrepareError",
    "Published",
    "SplitCount",
    "build_parser",
    "check",
    "load_counts",
    "main",
    "prepare",
]
