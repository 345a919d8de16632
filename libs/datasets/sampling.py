"""Which frames of a video are used, and how they are grouped into clips.

These are the release's rules, as pure functions over frame indices (positions in the
video's frame list sorted by file name), so they can be checked without any files:

1. Annotated frames: the labels of the video, sorted by file name; while training (and
   validating) only every `label_interval`-th of them is kept, starting with the first.
2. Frame list: the kept annotated frames; with `frame_between_label_num` m > 0, after
   each kept frame but the last come m unannotated frames at offsets
   s, 2s, ..., ms with s = (label_interval * default_label_interval) // (m + 1).
3. Clips of `clip_len` frames (m + 2 when m > 0): a frame list shorter than a clip is
   padded by repeating its last frame; windows start at 0 and advance by clip_len - 1
   while training (consecutive clips share a frame) or clip_len at inference, while a
   whole window fits; if frames remain after the last window, one more window is
   aligned to the end of the list.
"""
from __future__ import annotations

from collections.abc import Sequence


def kept_label_positions(num_labels: int, label_interval: int, training: bool) -> list[int]:
    """Positions (in the sorted label list) of the labels that are used."""
    if label_interval < 1:
        raise ValueError(f"label_interval must be at least 1, got {label_interval}")
    step = label_interval if training else 1
    return list(range(0, num_labels, step))


def unlabelled_spacing(label_interval: int, default_label_interval: int, frame_between_label_num: int) -> int:
    """The step s between a kept annotated frame and the unannotated frames after it."""
    if frame_between_label_num < 0:
        raise ValueError(f"frame_between_label_num must be >= 0, got {frame_between_label_num}")
    if frame_between_label_num >= label_interval * default_label_interval:
        raise ValueError(
            f"frame_between_label_num ({frame_between_label_num}) must be smaller than "
            f"label_interval * default_label_interval ({label_interval} * {default_label_interval})"
        )
    return (label_interval * default_label_interval) // (frame_between_label_num + 1)


def frame_list(label_indices: Sequence[int], frame_between_label_num: int, spacing: int) -> list[int]:
    """Kept annotated frame indices with the unannotated ones inserted after each but the last."""
    if not label_indices:
        return []
    out: list[int] = []
    for index in label_indices[:-1]:
        out.append(index)
        out.extend(index + spacing * (j + 1) for j in range(frame_between_label_num))
    out.append(label_indices[-1])
    return out


def clip_windows(indices: Sequence[int], clip_len: int, training: bool) -> list[list[int]]:
    """Split a frame list into clips of `clip_len` frames (rule 3 above).

    With clip_len 1 while training the release's step (clip_len - 1 = 0) never ends;
    here the step is then 1.
    """
    if clip_len < 1:
        raise ValueError(f"clip_len must be at least 1, got {clip_len}")
    if not indices:
        return []
    indices = list(indices)
    if len(indices) < clip_len:
        indices += [indices[-1]] * (clip_len - len(indices))
    step = max(clip_len - 1, 1) if training else clip_len
    clips: list[list[int]] = []
    start = 0
    while start <= len(indices) - clip_len:
        clips.append(indices[start:start + clip_len])
        start += step
    if start < len(indices):
        clips.append(indices[len(indices) - clip_len:])
    return clips
