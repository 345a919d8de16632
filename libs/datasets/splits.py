"""The dataset splits of the release's recipes, written out once.

The release trains RCRNet+NER and FGPLG on the DAVIS 2016, FBMS and VOS training videos and
validates on VOS val (its train.py and train_fgplg.py); generate_pseudo_labels.py labels the
same training videos. The image pretraining stage the paper describes uses MSRA-B and HKU-IS.
"""
from __future__ import annotations

from collections.abc import Sequence

DatasetSplits = tuple[tuple[str, str], ...]

VIDEO_TRAIN_SETS: DatasetSplits = (("DAVIS2016", "train"), ("FBMS", "train"), ("VOS", "train"))
VIDEO_VAL_SETS: DatasetSplits = (("VOS", "val"),)
IMAGE_TRAIN_SETS: DatasetSplits = (("MSRA-B", "train"), ("HKU-IS", "train"))
IMAGE_VAL_SETS: DatasetSplits = (("MSRA-B", "val"), ("HKU-IS", "val"))
PSEUDO_LABEL_SETS: DatasetSplits = VIDEO_TRAIN_SETS
# the held-out video benchmarks the paper reports on
VIDEO_TEST_SETS: DatasetSplits = (("DAVIS2016", "val"), ("FBMS", "test"), ("VOS", "test"))


def names_and_splits(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(names, splits) of (name, split) pairs, the two lists `get_datasets` takes."""
    return [name for name, _ in pairs], [split for _, split in pairs]


def pair_dataset_splits(names: Sequence[str], splits: Sequence[str]) -> DatasetSplits:
    """(name, split) pairs of repeated --dataset/--split flags, paired in order (one split applies
    to every name), duplicates dropped; a ValueError says what does not pair."""
    if len(splits) == 1:
        splits = list(splits) * len(names)
    if not names or len(splits) != len(names):
        raise ValueError(f"got {len(names)} --dataset and {len(splits)} --split: give one --split per "
                         "--dataset, or a single --split for all")
    return tuple(dict.fromkeys(zip(names, splits)))


def parse_dataset_splits(items: Sequence[str]) -> DatasetSplits:
    """`NAME:SPLIT` strings as (name, split) pairs; a ValueError names the first malformed item."""
    pairs = []
    for item in items:
        name, sep, split = item.partition(":")
        if not sep or not name or not split:
            raise ValueError(f"{item!r}: expected NAME:SPLIT, e.g. DAVIS2016:train")
        pairs.append((name, split))
    return tuple(pairs)
