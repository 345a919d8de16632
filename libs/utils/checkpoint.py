"""Reading, strictly loading and atomically saving checkpoints.

The release's files are plain state dicts saved by PyTorch 0.4.1; others wrap them in a
`state_dict` (or `model`) entry or carry DataParallel's `module.` prefixes. All are read
with `weights_only=True`. Loading is strict: the only keys ever dropped are the ones named
by the caller (for the release's files, the unused ImageNet classifier
`backbone.resnet.fc.*`), and any other difference is one error listing every missing key,
unexpected key and shape mismatch.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from libs.networks import RCRNet

PathLike = str | os.PathLike[str]

RELEASE_UNUSED_PREFIXES = ("backbone.resnet.fc.",)
IMAGENET_UNUSED_PREFIXES = ("fc.",)
BACKBONE_PREFIX = "backbone."
DATA_PARALLEL_PREFIX = "module."
WRAPPER_KEYS = ("state_dict", "model")
MAX_KEYS_LISTED = 40
WEIGHTS_ONLY_REFUSAL = "Weights only load failed"


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read, or its tensors do not fit the model."""


def _first_line(exc: BaseException) -> str:
    """`exc` as one line of plain text: its type and the first line of its message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    first = text.splitlines()[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """The state dict stored at `path`, on the CPU, with wrappers and `module.` prefixes removed.

    Accepts a plain state dict or a dict holding one under `state_dict` or `model`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged or foreign files
        if isinstance(exc, pickle.UnpicklingError) and WEIGHTS_ONLY_REFUSAL in str(exc):
            raise CheckpointError(
                f"checkpoint {path}: holds pickled objects other than tensors, which weights_only=True "
                "refuses to load; save a state dict (model.state_dict()) instead"
            ) from exc
        reason = _first_line(exc)
        raise CheckpointError(f"checkpoint {path}: cannot be read as a PyTorch file: {reason}") from exc
    if isinstance(obj, Mapping):
        for wrapper in WRAPPER_KEYS:
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path}: holds {type(obj).__name__}, not a state dict")
    if not obj:
        raise CheckpointError(f"checkpoint {path}: holds an empty dict, not a state dict")
    not_tensors = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not_tensors:
        listed = _listing(map(str, not_tensors))
        raise CheckpointError(f"checkpoint {path}: not a state dict (entries that are not tensors: {listed})")
    state_dict: dict[str, torch.Tensor] = {}
    for key, tensor in obj.items():
        name = key
        while name.startswith(DATA_PARALLEL_PREFIX):
            name = name[len(DATA_PARALLEL_PREFIX) :]
        if name in state_dict:
            raise CheckpointError(f"checkpoint {path}: key {name!r} appears both with and without 'module.'")
        state_dict[name] = tensor
    return state_dict


def _listing(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:MAX_KEYS_LISTED])
    if len(keys) > MAX_KEYS_LISTED:
        shown += f", ... ({len(keys) - MAX_KEYS_LISTED} more)"
    return shown


def _shape(shape: torch.Size) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _check_fits(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str, target: str
) -> None:
    """Raise one CheckpointError listing every key `given` lacks, every extra key and every shape mismatch."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [k for k in given if k in expected and given[k].shape != expected[k].shape]
    if not (missing or unexpected or mismatched):
        return
    lines = [
        f"{source or 'state dict'} does not fit {target}: {len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(mismatched)} with another shape"
    ]
    if missing:
        lines.append(f"  missing keys: {_listing(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys: {_listing(unexpected)}")
    if mismatched:
        pairs = [
            f"{k} (checkpoint {_shape(given[k].shape)}, model {_shape(expected[k].shape)})"
            for k in mismatched
        ]
        lines.append(f"  shape mismatches: {_listing(pairs)}")
    raise CheckpointError("\n".join(lines))


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    ignore_prefixes: Iterable[str] = (),
    source: str = "",
) -> None:
    """Load `state_dict` into `model`, dropping only keys that start with one of `ignore_prefixes`.

    Any other difference raises one CheckpointError naming `source` and listing the missing
    keys, unexpected keys and shape mismatches.
    """
    prefixes = tuple(ignore_prefixes)
    kept = {k: v for k, v in state_dict.items() if not (prefixes and k.startswith(prefixes))}
    _check_fits(model.state_dict(), kept, source, type(model).__name__)
    model.load_state_dict(kept, strict=True)


def save_checkpoint(obj: Any, path: PathLike) -> None:
    """Save `obj` (a module is saved as its state dict) to `path` atomically.

    Writes a temporary file in the same folder, flushes and fsyncs it, then renames it over
    `path`, so readers see either the old file or the complete new one. Creates parent folders.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
    """Make the rename durable where the platform allows syncing a directory."""
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


def _load_release_style(model: nn.Module, path: PathLike) -> None:
    state_dict = read_state_dict(path)
    load_state_dict_strict(model, state_dict, ignore_prefixes=RELEASE_UNUSED_PREFIXES, source=str(path))


def load_image_model(model: nn.Module, path: PathLike) -> None:
    """Load an ImageModel checkpoint (e.g. the release's `image_pretrained_model.pth`) strictly."""
    _load_release_style(model, path)


def load_video_model(model: nn.Module, path: PathLike) -> None:
    """Load a VideoModel checkpoint (e.g. the release's `video_best_model.pth`) strictly."""
    _load_release_style(model, path)


def init_video_from_image(video_model: nn.Module, path: PathLike) -> None:
    """Initialise a VideoModel's backbone from an ImageModel checkpoint; the NER layers keep their init.

    Every `backbone.*` tensor of the file must load (the classifier `backbone.resnet.fc.*`
    excepted), and the file may hold nothing else.
    """
    state_dict = read_state_dict(path)
    kept = {k: v for k, v in state_dict.items() if not k.startswith(RELEASE_UNUSED_PREFIXES)}
    backbone = video_model.backbone
    expected = {BACKBONE_PREFIX + k: v for k, v in backbone.state_dict().items()}
    _check_fits(expected, kept, str(path), f"{type(video_model).__name__}.backbone")
    backbone.load_state_dict({k[len(BACKBONE_PREFIX) :]: v for k, v in kept.items()}, strict=True)


def _download_imagenet_resnet50() -> dict[str, torch.Tensor]:
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot fetch torchvision's ResNet50_Weights.IMAGENET1K_V1 from {weights.url} "
            f"({_first_line(exc)}); download that file elsewhere and pass its local path instead"
        ) from exc


def init_backbone_from_imagenet(rcrnet: RCRNet, weights: PathLike | None = None) -> None:
    """Load ImageNet ResNet-50 weights into `rcrnet.resnet`; the other layers keep their fresh init.

    `weights`: None fetches torchvision's `ResNet50_Weights.IMAGENET1K_V1` (the weights the
    release used; cached under TORCH_HOME), or a local `.pth` of torchvision's resnet50 state
    dict. The classifier `fc.*` is dropped. When the stem takes more than 3 input channels
    (FGPLG), its first 3 come from the file and the others keep their fresh init.
    """
    from libs.networks.rcrnet import RCRNet

    if not isinstance(rcrnet, RCRNet):
        raise TypeError(f"init_backbone_from_imagenet expects an RCRNet, got {type(rcrnet).__name__}")
    if weights is None:
        state_dict, source = _download_imagenet_resnet50(), "torchvision ResNet50_Weights.IMAGENET1K_V1"
    else:
        state_dict, source = read_state_dict(weights), str(weights)
    kept = {k: v for k, v in state_dict.items() if not k.startswith(IMAGENET_UNUSED_PREFIXES)}
    resnet = rcrnet.resnet
    stem = resnet.conv1.weight
    given_stem = kept.get("conv1.weight")
    rgb_stem_shape = (stem.shape[0], 3, *stem.shape[2:])
    if given_stem is not None and stem.shape[1] > 3 and given_stem.shape == rgb_stem_shape:
        merged = stem.detach().clone()
        merged[:, :3] = given_stem
        kept["conv1.weight"] = merged
    _check_fits(resnet.state_dict(), kept, source, f"{type(rcrnet).__name__}.resnet")
    resnet.load_state_dict(kept, strict=True)
