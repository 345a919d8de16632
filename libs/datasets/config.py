"""Dataset descriptions read from `config/datasets.yaml`.

Each entry says where a dataset's frames and labels live under `<root>/<name>/` and
which videos (or image ids) make up each split. Image datasets carry `split_dir`;
video datasets carry `default_label_interval` and `video_split`.

Two optional keys, beyond the release's, describe benchmarks packed one folder per
video (DAVSOD, ViSal): `image_subdir` / `label_subdir` name the folder inside each
video folder that holds its frames / labels. A split may also be given as a folder
pattern (a string such as `"Easy-35/*"`, or list items holding `*`, `?` or `[`),
expanded against `<root>/<name>/<image_dir>` when the dataset is opened.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from libs.runtime.errors import UserError

# The checkout (or editable install) this package runs from.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The dataset config every script and library call reads unless told otherwise: the project's
# own file, found from any working directory.
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "datasets.yaml"
# Where the <dataset>/ folders are looked for unless told otherwise: the release's default,
# relative to the working directory.
DEFAULT_DATA = "data/datasets/"


class DatasetConfigError(UserError, ValueError):
    """A dataset config file, entry, split or folder is not as expected."""


class DatasetFileError(DatasetConfigError, FileNotFoundError):
    """A folder or file the dataset needs is missing (also a FileNotFoundError)."""


class DatasetReadError(DatasetConfigError):
    """A file is there but cannot be used: unreadable, corrupt, or of the wrong size."""


_PATTERN_CHARS = frozenset("*?[")


def is_video_pattern(entry: str) -> bool:
    """Whether a `video_split` item is a folder pattern rather than a video name."""
    return any(ch in entry for ch in _PATTERN_CHARS)


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of the dataset config."""

    name: str
    image_dir: str
    label_dir: str
    image_ext: str
    label_ext: str
    split_dir: str | None = None
    default_label_interval: int | None = None
    video_split: dict[str, list[str]] = field(default_factory=dict)
    image_subdir: str = ""
    label_subdir: str = ""

    @property
    def is_video(self) -> bool:
        return self.default_label_interval is not None

    @property
    def splits(self) -> list[str]:
        return list(self.video_split)

    def videos(self, split: str, root: str | Path | None = None) -> list[str]:
        """The video folders of `split` (video datasets only).

        Folder patterns in the split are expanded under `image_folder(root)` (hidden
        folders skipped), sorted by name, so `root` is required for splits that use them.
        """
        if not self.is_video:
            raise DatasetConfigError(f"dataset {self.name!r} is an image dataset: it has no videos")
        if split not in self.video_split:
            raise DatasetConfigError(
                f"dataset {self.name!r} has no split {split!r}; "
                f"expected one of {', '.join(self.video_split) or '(none)'}"
            )
        entries = self.video_split[split]
        if not entries:
            raise DatasetConfigError(f"split {split!r} of dataset {self.name!r} lists no videos")
        videos: list[str] = []
        for entry in entries:
            if not is_video_pattern(entry):
                videos.append(entry)
                continue
            if root is None:
                raise DatasetConfigError(
                    f"split {split!r} of dataset {self.name!r} is the folder pattern {entry!r}; "
                    "pass the dataset root to list its videos"
                )
            base = self.image_folder(root)
            if not base.is_dir():
                raise DatasetFileError(f"image folder not found: {base} (dataset {self.name!r})")
            found = sorted(
                rel for rel in (p.relative_to(base).as_posix() for p in base.glob(entry) if p.is_dir())
                if not any(part.startswith(".") for part in rel.split("/"))
            )
            if not found:
                raise DatasetConfigError(
                    f"split {split!r} of dataset {self.name!r}: pattern {entry!r} matches no video "
                    f"folder under {base}"
                )
            videos.extend(found)
        return videos

    def image_ids(self, root: str | Path, split: str) -> list[str]:
        """The ids listed in `<root>/<name>/<split_dir>/<split>_id.txt` (image datasets)."""
        if self.is_video or self.split_dir is None:
            raise DatasetConfigError(f"dataset {self.name!r} is a video dataset: it has no id lists")
        path = Path(root) / self.name / self.split_dir / f"{split}_id.txt"
        if not path.is_file():
            raise DatasetFileError(f"split file not found: {path} (dataset {self.name!r}, split {split!r})")
        ids = [line.strip() for line in read_text_file(path, "split file").splitlines() if line.strip()]
        if not ids:
            raise DatasetConfigError(f"split file {path} lists no images")
        return ids

    def image_folder(self, root: str | Path) -> Path:
        return Path(root) / self.name / self.image_dir

    def label_folder(self, root: str | Path) -> Path:
        return Path(root) / self.name / self.label_dir

    def video_image_folder(self, root: str | Path, video: str) -> Path:
        """Where the frames of `video` live."""
        folder = self.image_folder(root) / video
        return folder / self.image_subdir if self.image_subdir else folder

    def video_label_folder(self, root: str | Path, video: str) -> Path:
        """Where the labels of `video` live."""
        folder = self.label_folder(root) / video
        return folder / self.label_subdir if self.label_subdir else folder


_REQUIRED = ("image_dir", "label_dir", "image_ext", "label_ext")
_OPTIONAL_TEXT = ("split_dir", "image_subdir", "label_subdir")


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; a file that cannot be read or is not UTF-8 is one
    DatasetConfigError naming it (and the offset of the first byte that is not UTF-8)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetReadError(f"cannot read {what} {path}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetConfigError(f"{what} {path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                                 f"{err.start}); save it as UTF-8") from None


def _kind(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _text(path: Path, name: str, key: str, value: object) -> str:
    """A text value of the entry, or an error naming the file, entry and key."""
    if not isinstance(value, str):
        raise DatasetConfigError(f"{path}: {name}.{key} must be text, got {_kind(value)}")
    return value


def _split_entries(path: Path, name: str, split: str, value: object) -> list[str]:
    """A split's videos: a list of names, or one string (a name or a folder pattern)."""
    where = f"{path}: {name}.video_split.{split}"
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise DatasetConfigError(f"{where} must be a list of video names or a folder pattern, "
                                 f"got {_kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise DatasetConfigError(f"{where}[{index}] must be a video name (text; quote names such as "
                                     f"'01'), got {_kind(item)}")
    return list(value)


def _parse_entry(path: Path, name: str, entry: object) -> DatasetSpec:
    if not isinstance(entry, dict):
        raise DatasetConfigError(f"{path}: entry {name!r} must be a mapping of keys, got {_kind(entry)}")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise DatasetConfigError(f"{path}: entry {name!r} lacks key(s) {', '.join(missing)}")
    layout = {"name": name, **{key: _text(path, name, key, entry[key]) for key in _REQUIRED}}
    extras = {key: _text(path, name, key, entry[key]) for key in _OPTIONAL_TEXT if entry.get(key) is not None}
    is_video = "video_split" in entry or "default_label_interval" in entry
    if is_video:
        split = entry.get("video_split")
        if not isinstance(split, dict) or not split:
            raise DatasetConfigError(f"{path}: {name}.video_split must be a non-empty mapping of split names "
                                     f"to video lists, got {_kind(split)}")
        interval = entry.get("default_label_interval")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise DatasetConfigError(f"{path}: {name}.default_label_interval must be a positive integer, "
                                     f"got {_kind(interval)}")
        for key in split:
            if not isinstance(key, str):
                raise DatasetConfigError(f"{path}: {name}.video_split: split names must be text, "
                                         f"got {_kind(key)}")
        return DatasetSpec(**layout, default_label_interval=interval,
                           video_split={k: _split_entries(path, name, k, v) for k, v in split.items()},
                           image_subdir=extras.get("image_subdir", ""),
                           label_subdir=extras.get("label_subdir", ""))
    if "split_dir" not in extras:
        raise DatasetConfigError(
            f"{path}: entry {name!r} needs 'split_dir' (image dataset) or 'video_split' (video dataset)"
        )
    return DatasetSpec(**layout, split_dir=extras["split_dir"])


def load_dataset_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, DatasetSpec]:
    """Read a dataset config file into {name: DatasetSpec}; every value is type-checked, and a
    wrong one is one DatasetConfigError naming the file, the entry and the key."""
    path = Path(path)
    if not path.is_file():
        raise DatasetConfigError(f"dataset config not found: {path}")
    text = read_text_file(path, "dataset config")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise DatasetConfigError(f"{path}: not valid YAML ({detail})") from None
    if not isinstance(raw, dict) or not raw:
        raise DatasetConfigError(f"{path}: expected a mapping of dataset names to entries")
    for name in raw:
        if not isinstance(name, str):
            raise DatasetConfigError(f"{path}: dataset names must be text, got {_kind(name)}")
    return {name: _parse_entry(path, name, entry) for name, entry in raw.items()}


def get_spec(config: dict[str, DatasetSpec], name: str) -> DatasetSpec:
    """The entry `name`, or an error listing the known datasets."""
    if name not in config:
        raise DatasetConfigError(
            f"unknown dataset {name!r}; the config defines {', '.join(sorted(config))}"
        )
    return config[name]
