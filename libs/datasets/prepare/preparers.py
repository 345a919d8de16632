"""Which preparer lays out which dataset, and `prepare`, the entry that runs one."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import DEFAULT_CONFIG, DatasetSpec, get_spec, load_dataset_config
from .files import PrepareError, need_dir
from .images import prepare_images
from .videos import prepare_davis, prepare_davsod, prepare_fbms, prepare_segtrack, prepare_vos
from .visal import prepare_visal

Preparer = Callable[[DatasetSpec, Path, Path, bool], list[str]]

PREPARERS: dict[str, Preparer] = {
    "DAVIS2016": prepare_davis,
    "FBMS": prepare_fbms,
    "SegTrackv2": prepare_segtrack,
    "VOS": prepare_vos,
    "DAVSOD": prepare_davsod,
    "ViSal": prepare_visal,
    "MSRA-B": prepare_images,
    "HKU-IS": prepare_images,
}


def prepare(
    name: str,
    source: str | Path,
    data: str | Path,
    *,
    copy: bool = False,
    config_path: str | Path = DEFAULT_CONFIG,
) -> list[str]:
    """Lay out the download at `source` as `<data>/<name>/`; returns lines saying what was done."""
    spec = get_spec(load_dataset_config(config_path), name)
    if name not in PREPARERS:
        raise PrepareError(f"{name}: no preparer; expected one of {', '.join(PREPARERS)}")
    source = Path(source)
    need_dir(source, f"the {name} download (--source)")
    return PREPARERS[name](spec, source, Path(data) / name, copy)
