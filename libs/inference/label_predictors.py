"""Label predictors of pseudo-label generation: (frame, frame_l, frame_r, label_l, label_r) ->
saliency probabilities of the frame, from an FGPLG (the release's pseudo-label generator) or
from flow warping of the two labels (the paper's baseline)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flownet2.resample2d import resample2d
from libs.networks.fgplg import FGPLG, unnormalise
from libs.networks.flow import FlowEstimator
from libs.runtime.plan import RunPlan

from .optimize import inference_context, optimize_for_inference

# (frame, frame_l, frame_r, label_l, label_r) -> saliency probabilities [B, 1, H, W]
LabelPredictor = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def fgplg_predictor(model: FGPLG, plan: RunPlan) -> LabelPredictor:
    """An FGPLG's pseudo-labels as probabilities (sigmoid of its logits), computed as `plan` says
    (`libs.runtime.plan`; the model must have been built with `plan.decoder`): the release's
    computation for `--precision fp32`, a copy prepared by `libs.inference.optimize` (BatchNorm
    folded, channels-last, autocast) where the plan asks for it."""
    model = model.to(plan.device).eval()
    runner = optimize_for_inference(model, plan)
    fast = getattr(runner, "model", model)

    def predict(frame: Tensor, frame_l: Tensor, frame_r: Tensor, label_l: Tensor, label_r: Tensor) -> Tensor:
        with inference_context(plan.precision, plan.device):
            logits = fast.generate_pseudo_label(frame, frame_l, frame_r, label_l, label_r)
        return torch.sigmoid(logits.float())

    return predict


def warp_predictor(estimator: FlowEstimator) -> LabelPredictor:
    """The flow-warping baseline: the mean of the two neighbours' labels warped onto the frame."""

    def predict(frame: Tensor, frame_l: Tensor, frame_r: Tensor, label_l: Tensor, label_r: Tensor) -> Tensor:
        rgb = unnormalise(frame)
        flow_l = estimator.estimate(rgb, unnormalise(frame_l)).to(label_l.dtype)
        flow_r = estimator.estimate(rgb, unnormalise(frame_r)).to(label_r.dtype)
        return 0.5 * (resample2d(label_l, flow_l) + resample2d(label_r, flow_r))

    return predict
