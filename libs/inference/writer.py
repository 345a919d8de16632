"""Turning saliency probabilities into the release's PNG files, off the main thread.

The release wrote `to_pil_image(sigmoid(logits))` (8 bits, values truncated: 255 * p
rounded down) resized with Pillow's default filter (bicubic in current Pillow) to the
frame's original width x height. `saliency_to_uint8` and `resize_to_original` do the
same. The PNGs hold the same pixels as the release's, compressed with zlib's run-length
strategy instead of Pillow's default (level 6, default strategy): saliency maps are mostly
long runs of one value, which that strategy encodes several times faster into slightly
smaller files (docs/performance.md). Files are
written atomically (a temporary file renamed into place), so a run that is killed leaves
only complete PNGs, and a resumed run can trust any PNG it finds.
`SaliencyWriter` does the resizing, optional overlay panels and PNG encoding in a small
thread pool (Pillow and zlib release the GIL), with a bound on work in flight.
"""
from __future__ import annotations

import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from libs.evaluation.maps import probabilities_to_uint8
from libs.runtime.errors import UserError
from libs.runtime.files import FileWriteError, write_atomic

OVERLAY_COLOUR = np.array([255, 40, 40], dtype=np.float32)
# Pillow's PNG options: zlib's Z_RLE strategy suits saliency maps (long runs after PNG's filters)
PNG_PARAMS: dict[str, object] = {"compress_type": zlib.Z_RLE}


def saliency_to_uint8(probs: torch.Tensor) -> np.ndarray:
    """Probabilities [..., H, W] in [0, 1] -> uint8 numpy (`libs.evaluation.maps.probabilities_to_uint8`)."""
    return probabilities_to_uint8(probs).numpy()


def resize_to_original(saliency: np.ndarray, height: int, width: int) -> Image.Image:
    """An 8-bit map [h, w] as a grey image of the original size (bicubic, like the release)."""
    image = Image.fromarray(np.ascontiguousarray(saliency, dtype=np.uint8))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return image


def save_atomic(image: Image.Image, path: str | Path, **params: object) -> None:
    """Save `image` to `path` atomically (`libs.runtime.files.write_atomic`), in the format its
    extension names (PNGs with `PNG_PARAMS` unless `params` say otherwise)."""
    image_format = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    if image_format == "PNG":
        params = {**PNG_PARAMS, **params}
    write_atomic(path, lambda handle: image.save(handle, format=image_format, **params))


def overlay_panel(frame: np.ndarray, saliency: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """frame | saliency | overlay, side by side (uint8 [H, 3W, 3]); frame [H, W, 3], saliency [H, W]."""
    weight = saliency.astype(np.float32)[..., None] / 255.0 * alpha
    blended = frame.astype(np.float32) * (1 - weight) + OVERLAY_COLOUR * weight
    grey = np.repeat(saliency[..., None], 3, axis=2)
    return np.concatenate([frame, grey, np.clip(blended, 0, 255).astype(np.uint8)], axis=1)


def write_saliency(saliency: np.ndarray, path: Path, height: int, width: int,
                   overlay_path: Path | None = None, original: np.ndarray | None = None) -> None:
    """Resize one map to the original size and write it (and, when asked, its overlay panel)."""
    image = resize_to_original(saliency, height, width)
    save_atomic(image, path)
    if overlay_path is not None and original is not None:
        frame = original
        if frame.shape[:2] != (height, width):
            frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))
        save_atomic(Image.fromarray(overlay_panel(frame, np.asarray(image))), overlay_path, quality=90)


class SaliencyWriter:
    """Writes maps in background threads; `close()` waits and re-raises the first error.

    Two writes of one path run in submission order (the later one waits for the earlier),
    so a frame predicted by two clips ends with the later clip's map, as in the release.
    `written` counts the distinct paths written, so such a frame counts once. A failed
    write (a `FileWriteError` raised in a thread) is raised in the caller's thread by the
    next `submit` or by `close`; leaving the `with` block on an error (or Ctrl-C) cancels the
    queued writes and waits for the running ones, each of which completes or leaves nothing.
    An input error found after some clips (a `UserError` other than a failed write, such as a
    truncated video) first completes the queued writes: those maps were computed from frames
    that decoded, and are kept.
    `threads=0` writes synchronously (in the caller's thread).
    """

    def __init__(self, threads: int = 2, max_pending: int = 64) -> None:
        self._pool = (ThreadPoolExecutor(max_workers=threads, thread_name_prefix="png")
                      if threads > 0 else None)
        self._slots = threading.BoundedSemaphore(max(1, max_pending))
        self._pending: dict[Path, Future] = {}
        self._written: set[Path] = set()

    @property
    def written(self) -> int:
        """How many distinct paths have been written so far."""
        return len(self._written)

    def submit(self, saliency: np.ndarray, path: Path, height: int, width: int,
               overlay_path: Path | None = None, original: np.ndarray | None = None) -> None:
        """Queue one map (blocks while `max_pending` are in flight)."""
        path = Path(path)
        if self._pool is None:
            write_saliency(saliency, path, height, width, overlay_path, original)
            self._written.add(path)
            return
        self._collect(wait=False)
        earlier = self._pending.pop(path, None)
        if earlier is not None:
            earlier.result()
            self._written.add(path)
        self._slots.acquire()
        future = self._pool.submit(write_saliency, saliency, path, height, width, overlay_path, original)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending[path] = future

    def _collect(self, wait: bool) -> None:
        """Account for finished writes (all of them, waiting, when `wait`); raise the first error."""
        for path, future in list(self._pending.items()):
            if wait or future.done():
                del self._pending[path]
                future.result()
                self._written.add(path)

    def close(self) -> None:
        """Wait for every queued write; raise the first failure."""
        if self._pool is None:
            return
        try:
            self._collect(wait=True)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SaliencyWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, UserError) and not issubclass(exc_type, FileWriteError):
            self.close()
        elif self._pool is not None:
            # already failing: drop the queued writes, let the running ones finish, raise nothing new
            self._pool.shutdown(wait=True, cancel_futures=True)
