"""ImageModel (RCRNet) and VideoModel (RCRNet+NER, the non-locally enhanced recurrent network)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import nn

from libs.modules import RELEASE_DECODER, ConvGRUCell, NonLocalBlock3D, fresh_init_

from .rcrnet import RCRNet

# fresh initialisation of VideoModel's NER module: "spec" (what the release's code intends: Kaiming
# normal fan-out, biases 0.001) or "release" (what it did: PyTorch's defaults; see README, Deviations)
NER_INITS = ("spec", "release")

Result = TypeVar("Result")


class ImageModel(nn.Module):
    """RCRNet on single frames: forward(frames [B, 3, H, W]) -> logits [B, 1, H, W].

    `decoder`: "release" (the default, the release's computation) or "factored" (`RCRNet`)."""

    def __init__(self, output_stride: int = 16, decoder: str = RELEASE_DECODER) -> None:
        super().__init__()
        self.backbone = RCRNet(n_classes=1, output_stride=output_stride, input_channels=3, decoder=decoder)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.backbone(frame)

    def freeze_bn(self) -> None:
        """Put every BatchNorm of the backbone in eval mode; call after `train()`."""
        self.backbone.freeze_bn()


class VideoModel(nn.Module):
    """RCRNet+NER: RCRNet whose ASPP features pass a non-local block, a bidirectional ConvGRU and a
    second non-local block across the clip before the pixel-wise classifier (the release's
    libs/networks/models.py).

    forward(list of T frames [B, 3, H, W]) -> list of T logits [B, 1, H, W], as in the release;
    forward(clip [B, T, 3, H, W]) -> logits [B, T, 1, H, W]. `decoder`: "release" (the default,
    the release's computation) or "factored" (`RCRNet`). `parallel_frames` (default 1, the
    release's loop): see `forward_clip`.
    """

    def __init__(self, output_stride: int = 16, ner_init: str = "spec",
                 decoder: str = RELEASE_DECODER, frames_as_batch: bool = False,
                 parallel_frames: int = 1) -> None:
        super().__init__()
        if ner_init not in NER_INITS:
            raise ValueError(f"ner_init {ner_init!r}: expected one of {', '.join(NER_INITS)}")
        if parallel_frames < 1:
            raise ValueError(f"parallel_frames {parallel_frames}: expected an integer >= 1")
        self.backbone = RCRNet(n_classes=1, output_stride=output_stride, input_channels=3, decoder=decoder)
        self.convgru_forward = ConvGRUCell(256, 256, 3)
        self.convgru_backward = ConvGRUCell(256, 256, 3)
        self.bidirection_conv = nn.Conv2d(512, 256, kernel_size=3, padding=1)
        fresh_init_(self.bidirection_conv)
        self.non_local_block = NonLocalBlock3D(256)
        self.non_local_block2 = NonLocalBlock3D(256)
        if ner_init == "release":
            self._release_ner_init()
        # True: the B*T frames of a clip go through the spatial extractor and the classifier as one
        # batch (the video recipe builds its model so: faster a step, other float32 rounding);
        # False (the release's loop): frame by frame
        self.frames_as_batch = frames_as_batch
        self.parallel_frames = parallel_frames
        # the release builds its VideoModel with a frozen backbone BatchNorm
        self.freeze_bn()

    def _release_ner_init(self) -> None:
        """The release code's actual NER initialisation: its ConvGRU init loop never matched a layer
        and it set none for `bidirection_conv` or the non-local theta, phi and g, so those keep
        PyTorch's default (the non-local output conv W is zero either way)."""
        layers = [self.bidirection_conv]
        for cell in (self.convgru_forward, self.convgru_backward):
            layers += [cell.reset_gate, cell.update_gate, cell.output_gate]
        for block in (self.non_local_block, self.non_local_block2):
            layers += [block.theta, block.phi, block.g]
        for layer in layers:
            layer.reset_parameters()

    def freeze_bn(self) -> None:
        """Put every BatchNorm of the backbone in eval mode; video training calls it after `train()`."""
        self.backbone.freeze_bn()

    def forward(self, clip: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(clip, torch.Tensor):
            if clip.dim() != 5:
                raise ValueError(f"VideoModel expects a clip [B, T, 3, H, W], got shape {tuple(clip.shape)}")
            return self.forward_clip(clip)
        frames = list(clip)
        if not frames or any(not isinstance(f, torch.Tensor) or f.dim() != 4 for f in frames):
            raise ValueError("VideoModel expects a non-empty list of frames [B, 3, H, W] or a tensor")
        return list(self.forward_clip(torch.stack(frames, dim=1)).unbind(dim=1))

    def forward_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, 1, H, W] of a clip [B, T, 3, H, W].

        By default time step by time step (each [B, 3, H, W]) through the spatial extractor and the
        classifier, as the release's loop: oneDNN's convolutions are not batch-invariant (ASPP's
        dilated convs round differently for four frames than for one), and a trained NER module can
        amplify the spatial features' rounding into other maps. With `frames_as_batch` the B*T
        frames go as one batch: the same values up to rounding while the backbone's BatchNorm uses
        running statistics (eval mode or `freeze_bn`, as in every recipe).

        With `parallel_frames` k > 1, in eval mode, when T is a multiple of k, the spatial
        features of k time steps at a time, and then their classifiers, are computed side by side,
        each in its own thread with 1/k of the torch threads (at least one): each frame exactly as
        the release's loop computes it in a process with that many threads, with fewer
        synchronisations between threads than one frame on all of them. oneDNN splits some 1x1
        convolutions' sums between threads, so the rounding is that of the smaller thread count
        (docs/deviations.md).
        """
        size = clip.shape[3:]
        if self.frames_as_batch:
            batch, length = clip.shape[:2]
            features = self.backbone.spatial_features(clip.flatten(0, 1))
            enhanced = self.enhance(features.aspp.unflatten(0, (batch, length)).transpose(1, 2))
            logits = self.backbone.classify_pixels(features, enhanced.transpose(1, 2).flatten(0, 1), size)
            return logits.unflatten(0, (batch, length))
        steps = self._per_frame(lambda t: self.backbone.spatial_features(clip[:, t]), clip.shape[1])
        enhanced = self.enhance(torch.stack([features.aspp for features in steps], dim=2))
        return torch.stack(self._per_frame(
            lambda t: self.backbone.classify_pixels(steps[t], enhanced[:, :, t], size), len(steps)), dim=1)

    def _per_frame(self, step: Callable[[int], Result], length: int) -> list[Result]:
        """[step(0), ..., step(length - 1)]: in order, or `parallel_frames` side by side (see
        `forward_clip`)."""
        workers = self.parallel_frames
        # in training mode BatchNorm may update its statistics: one frame at a time
        if workers == 1 or length % workers or self.training or torch.compiler.is_compiling():
            return [step(t) for t in range(length)]
        threads = max(1, torch.get_num_threads() // workers)
        # grad and inference mode are per thread: the workers take the caller's
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def run(t: int) -> Result:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                return step(t)

        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
            return list(pool.map(run, range(length)))

    def enhance(self, feats: torch.Tensor) -> torch.Tensor:
        """Non-locally enhanced recurrent module over ASPP features [B, 256, T, h, w] (same shape out)."""
        feats = self.non_local_block(feats)
        steps = feats.unbind(dim=2)
        hidden = steps[0]
        forward_states = []
        for x in steps:
            hidden = self.convgru_forward(x, hidden)
            forward_states.append(hidden)
        hidden = forward_states[-1]
        backward_states = []
        for x in reversed(forward_states):
            hidden = self.convgru_backward(x, hidden)
            backward_states.append(hidden)
        backward_states.reverse()
        # frame by frame and stacked as the release does: the stacked tensor's memory layout (which
        # follows the conv's output) decides how non_local_block2's 1x1 Conv3d rounds
        fused = [torch.tanh(self.bidirection_conv(torch.cat(pair, dim=1)))
                 for pair in zip(forward_states, backward_states)]
        return self.non_local_block2(torch.stack(fused, dim=2))
