"""FGPLG: the flow-guided pseudo-label generator (the release's libs/networks/pseudo_label_generator.py).

The labels of the two annotated neighbours of a frame are warped onto it with optical
flow, and an RCRNet with a 7-channel stem (RGB, the two warped labels, the two flow
magnitudes) turns them into the frame's saliency logits. The flow estimator is frozen:
FlowNet 2.0 as in the release (`flow="flownet2"`, state-dict keys `flownet.*`), or OpenCV's
DIS (`flow="dis"`, no weights, so the state dict holds `backbone.*` only).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flownet2.resample2d import resample2d
from libs.modules import RELEASE_DECODER

from .flow import FlowEstimator, build_flow_estimator
from .rcrnet import RCRNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FGPLG_INPUT_CHANNELS = 7


def unnormalise(frames: Tensor) -> Tensor:
    """ImageNet-normalised frames [B, 3, H, W] back to RGB in [0, 1] (x * std + mean)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return frames * std + mean


def flow_magnitude(flow: Tensor) -> Tensor:
    """|flow| with u divided by the width and v by the height: [B, 2, H, W] -> [B, 1, H, W]."""
    height, width = flow.shape[-2:]
    u = flow[:, 0:1] / width
    v = flow[:, 1:2] / height
    return torch.sqrt(u * u + v * v)


class FGPLG(nn.Module):
    """Flow-guided pseudo-label generator.

    `flow`: "flownet2" (the release's), "dis", or a `FlowEstimator` instance. `rgb_max` and
    `fp16` are the release's FlowNet2 settings (see `FlowNet2Estimator`). The estimator is
    frozen and always in eval mode; the backbone's BatchNorm layers always use their running
    statistics (as in the release's training), while dropout follows train/eval. `decoder`:
    "release" (the default, the release's computation) or "factored" (`RCRNet`).
    """

    def __init__(self, output_stride: int = 16, flow: str | FlowEstimator = "flownet2",
                 rgb_max: float = 1.0, fp16: bool = False, decoder: str = RELEASE_DECODER) -> None:
        super().__init__()
        if isinstance(flow, FlowEstimator):
            self.flownet = flow
        else:
            self.flownet = build_flow_estimator(flow, rgb_max=rgb_max, half_precision=fp16)
        for parameter in self.flownet.parameters():
            parameter.requires_grad_(False)
        self.backbone = RCRNet(n_classes=1, output_stride=output_stride, input_channels=FGPLG_INPUT_CHANNELS,
                               decoder=decoder)
        self.train(self.training)

    @property
    def flow_name(self) -> str:
        """Which flow estimator this generator uses: "flownet2" or "dis"."""
        return self.flownet.name

    def train(self, mode: bool = True) -> FGPLG:
        """Set train/eval mode; the flow estimator stays in eval mode and the backbone's BatchNorm frozen."""
        super().train(mode)
        self.flownet.eval()
        self.freeze_bn()
        return self

    def freeze_bn(self) -> None:
        """Put every BatchNorm of the backbone in eval mode (affine parameters still train)."""
        self.backbone.freeze_bn()

    def compute_flow(self, frame: Tensor, reference: Tensor) -> Tensor:
        """Flow [B, 2, H, W] (pixels) from `frame` to `reference`, both ImageNet-normalised, per sample."""
        with torch.no_grad():
            flow = self.flownet.estimate(unnormalise(frame.detach()), unnormalise(reference.detach()))
        return flow.to(frame.dtype)

    def generate_pseudo_label(self, frame: Tensor, frame_l: Tensor, frame_r: Tensor,
                              label_l: Tensor, label_r: Tensor) -> Tensor:
        """Saliency logits [B, 1, H, W] of `frame` from its labelled neighbours.

        Frames are ImageNet-normalised [B, 3, H, W]; labels are [B, 1, H, W] in [0, 1].
        """
        for name, tensor, channels in (("frame", frame, 3), ("frame_l", frame_l, 3), ("frame_r", frame_r, 3),
                                       ("label_l", label_l, 1), ("label_r", label_r, 1)):
            if tensor.dim() != 4 or tensor.shape[1] != channels or tensor.shape[0] != frame.shape[0] \
                    or tensor.shape[2:] != frame.shape[2:]:
                raise ValueError(
                    f"FGPLG: {name} must be [B, {channels}, H, W] with the frame's batch and size "
                    f"{tuple(frame.shape[:1])} x {tuple(frame.shape[2:])}, got {tuple(tensor.shape)}"
                )
        flow_l = self.compute_flow(frame, frame_l)
        flow_r = self.compute_flow(frame, frame_r)
        warped_l = resample2d(label_l.to(flow_l.dtype), flow_l).to(frame.dtype)
        warped_r = resample2d(label_r.to(flow_r.dtype), flow_r).to(frame.dtype)
        inputs = torch.cat((frame, warped_l, warped_r, flow_magnitude(flow_l), flow_magnitude(flow_r)), dim=1)
        return self.backbone(inputs)

    def forward(self, clip: Sequence[Tensor] | Tensor,
                clip_labels: Sequence[Tensor] | Tensor) -> tuple[Tensor, Tensor]:
        """(logits of the middle frame, its label) for a clip [left, middle, right] and its labels.

        `clip`: three frames [B, 3, H, W] (a list, as in the release, or a tensor [B, 3, 3, H, W]);
        `clip_labels`: their labels likewise (the middle one is only passed through).
        """
        frames = list(clip.unbind(dim=1)) if isinstance(clip, Tensor) else list(clip)
        labels = list(clip_labels.unbind(dim=1)) if isinstance(clip_labels, Tensor) else list(clip_labels)
        if len(frames) != 3 or len(labels) != 3:
            raise ValueError(
                f"FGPLG expects a clip of 3 frames and 3 labels [left, middle, right], got "
                f"{len(frames)} and {len(labels)}"
            )
        logits = self.generate_pseudo_label(frames[1], frames[0], frames[2], labels[0], labels[2])
        return logits, labels[1]
