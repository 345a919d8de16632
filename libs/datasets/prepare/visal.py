"""ViSal, from its authors' download or from the DAVSOD benchmark's re-packaging.

The authors (Wang, Shen & Shao, TIP 2015) distribute one folder per video holding its
frames, `ViSal/<video>/<prefix><number>.<bmp|png>`, where the prefix need not be the folder's
name (`cow/cow4_frame0001.bmp`, `gokart/gokart56.bmp`), and one flat `ViSal/GroundTruth/`
folder with a mask for each labelled frame, named as that frame. The DAVSOD benchmark
re-packages it as `ViSal/<video>/Imgs/*.jpg` and `ViSal/<video>/ground-truth/*.png`, the
layout config/datasets.yaml describes; the authors' layout is converted into it (frames in
the config's extension, masks as 0/255 PNG beside them in the masks' video).
"""
from __future__ import annotations

from pathlib import Path

from ..config import DatasetSpec
from .files import PrepareError, images, need_dir, place, place_frame, place_mask, subdirs

AUTHORS_MASKS = "GroundTruth"


def _repackaged(spec: DatasetSpec, videos: list[Path], dest: Path, copy: bool) -> list[str]:
    for video in videos:
        place(video, dest / video.name, copy)
    return [f"linked {len(videos)} ViSal video(s) (DAVSOD benchmark layout)"]


def _authors(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    """Frames of every video folder; each GroundTruth/ mask goes to the video holding its frame."""
    owner: dict[str, tuple[str, Path]] = {}
    videos = [v for v in subdirs(source) if v.name != AUTHORS_MASKS]
    for video in videos:
        for frame in images(video):
            if frame.stem in owner:
                raise PrepareError(
                    f"{frame}: a frame of this name is also in {owner[frame.stem][1].parent}; "
                    "expected frame names unique across ViSal's videos"
                )
            owner[frame.stem] = (video.name, frame)
    masks = images(need_dir(source / AUTHORS_MASKS, "ViSal's masks, GroundTruth/"))
    if not masks:
        raise PrepareError(f"{source / AUTHORS_MASKS}: expected one mask per labelled frame")
    labelled: dict[str, int] = {}
    for mask in masks:
        if mask.stem not in owner:
            raise PrepareError(f"{mask}: expected a frame named {mask.stem}.* in one of the video folders")
        video, _ = owner[mask.stem]
        place_mask([mask], dest / video / spec.label_subdir / f"{mask.stem}{spec.label_ext}", copy)
        labelled[video] = labelled.get(video, 0) + 1
    for stem, (video, frame) in owner.items():
        place_frame(frame, dest / video / spec.image_subdir / f"{stem}{spec.image_ext}", copy)
    unlabelled = [v.name for v in videos if v.name not in labelled]
    lines = [f"ViSal from its authors' layout: {len(videos)} video(s), {len(owner)} frame(s), "
             f"{len(masks)} labelled frame(s)"]
    if unlabelled:
        lines.append(f"video(s) without a mask in GroundTruth/: {', '.join(unlabelled)}")
    return lines


def prepare_visal(spec: DatasetSpec, source: Path, dest: Path, copy: bool) -> list[str]:
    """ViSal in its authors' layout (a GroundTruth/ folder) or the DAVSOD benchmark's."""
    need_dir(source, "the ViSal folder")
    if (source / AUTHORS_MASKS).is_dir():
        return _authors(spec, source, dest, copy)
    videos = [v for v in subdirs(source) if (v / spec.image_subdir).is_dir()]
    if not videos:
        raise PrepareError(
            f"{source}: expected ViSal as its authors distribute it (<video>/<frames> and GroundTruth/) "
            f"or as the DAVSOD benchmark does (<video>/{spec.image_subdir}/ and <video>/{spec.label_subdir}/)"
        )
    return _repackaged(spec, videos, dest, copy)
