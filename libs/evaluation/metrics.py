"""Saliency-map metrics built on PySODMetrics, the community's reference implementation.

`SaliencyMetrics` feeds each (prediction, ground truth) pair to the PySODMetrics
evaluators it needs and reports the numbers VSOD papers give: MAE, max / mean /
adaptive F-measure (beta^2 = 0.3), S-measure (alpha = 0.5), max / mean / adaptive
E-measure and weighted F-measure, plus the precision-recall and F-measure-vs-threshold
curves. The training loop's validation and `evaluate.py` both use it, so the numbers
they print are the same numbers.

PySODMetrics keeps one entry per frame and averages them at the end; `merge` appends
another instance's entries after this one's, so accumulators filled in worker
processes and merged in frame order give exactly the result of one sequential pass.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import py_sod_metrics as sod

# Every scalar metric, in the order tables list them after the paper's three.
METRIC_NAMES: tuple[str, ...] = ("MAE", "maxF", "meanF", "adpF", "S", "maxE", "meanE", "adpE", "wF")
# The metrics the RCRNet paper reports, in its order.
PAPER_METRICS: tuple[str, ...] = ("maxF", "S", "MAE")
# What the training loop's validation needs: cheap (no E-measure, no weighted F).
VALIDATION_METRICS: tuple[str, ...] = ("S", "MAE", "maxF")

F_BETA2 = 0.3  # beta^2 of the F-measure, weighting precision over recall (Achanta et al.)
S_ALPHA = 0.5  # balance of object- and region-aware structure in the S-measure
WF_BETA2 = 1.0  # beta^2 of the weighted F-measure (Margolin et al.)

_F_DYNAMIC = frozenset({"maxF", "meanF"})
_E_ALL = frozenset({"maxE", "meanE", "adpE"})


def _mean(values: list) -> np.ndarray:
    """The mean over frames, computed the way PySODMetrics' `get_results` does."""
    return np.mean(np.array(values, dtype=np.float64), axis=0)


class BorderSafeSmeasure(sod.Smeasure):
    """PySODMetrics' S-measure, except for one case where it (like the MATLAB original) gives NaN:
    an object whose centroid lies in the last row or column leaves a quadrant of the region
    score empty. That quadrant's weight is its area, zero, so it now adds 0 instead of NaN;
    every other frame scores exactly as in PySODMetrics."""

    def ssim(self, pred: np.ndarray, gt: np.ndarray) -> float:
        if pred.size == 0:
            return 0.0
        return super().ssim(pred, gt)


class SaliencyMetrics:
    """Accumulates saliency metrics over frames; PySODMetrics does the per-frame work.

    `metrics` picks which scalars to compute (any of `METRIC_NAMES`); only the
    evaluators they need are run, so `SaliencyMetrics(VALIDATION_METRICS)` skips the
    slow E-measure and weighted F-measure.
    """

    def __init__(self, metrics: Iterable[str] = METRIC_NAMES) -> None:
        requested = tuple(dict.fromkeys(metrics))
        unknown = [m for m in requested if m not in METRIC_NAMES]
        if unknown or not requested:
            raise ValueError(
                f"unknown metric(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                f"expected some of {', '.join(METRIC_NAMES)}"
            )
        self.metrics: tuple[str, ...] = tuple(m for m in METRIC_NAMES if m in requested)
        wanted = set(self.metrics)
        self.frames = 0
        self._mae = sod.MAE() if "MAE" in wanted else None
        self._sm = BorderSafeSmeasure(alpha=S_ALPHA) if "S" in wanted else None
        self._em = sod.Emeasure() if wanted & _E_ALL else None
        self._wfm = sod.WeightedFmeasure(beta=WF_BETA2) if "wF" in wanted else None
        # FmeasureV2 is PySODMetrics' maintained F-measure (the classic `Fmeasure`
        # warns that it will be removed); it gives the same numbers. Precision and
        # recall come from the same per-threshold counts, so the PR curve is almost free.
        self._fm = None
        self._handlers: dict[str, object] = {}
        dynamic = bool(wanted & _F_DYNAMIC)
        adaptive = "adpF" in wanted
        if dynamic or adaptive:
            self._fm = sod.FmeasureV2()
            self._handlers["fm"] = sod.FmeasureHandler(
                with_dynamic=dynamic, with_adaptive=adaptive, beta=F_BETA2
            )
            if dynamic:
                self._handlers["p"] = sod.PrecisionHandler(with_dynamic=True, with_adaptive=False)
                self._handlers["r"] = sod.RecallHandler(with_dynamic=True, with_adaptive=False)
            for name, handler in self._handlers.items():
                self._fm.add_handler(name, handler)

    def __len__(self) -> int:
        return self.frames

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one frame: `pred` a uint8 HxW saliency map, `gt` its uint8 HxW label.

        As PySODMetrics does, `pred` is min-max normalised per frame and `gt` is
        binarised at > 128 (pass 0/255 masks; `(mask > 0.5).astype(np.uint8) * 255`).
        """
        for what, array in (("pred", pred), ("gt", gt)):
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 2:
                got = (
                    f"{array.dtype} array of shape {array.shape}"
                    if isinstance(array, np.ndarray)
                    else type(array).__name__
                )
                raise ValueError(f"{what} must be a uint8 HxW numpy array (0..255); got {got}")
        if pred.shape != gt.shape:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in size; resize pred to gt size")
        for evaluator in (self._mae, self._sm, self._em, self._wfm, self._fm):
            if evaluator is not None:
                evaluator.step(pred, gt)
        self.frames += 1

    def _accumulators(self) -> list[list]:
        """The per-frame lists PySODMetrics keeps, in a fixed order (for `merge`)."""
        lists: list[list] = []
        if self._mae is not None:
            lists.append(self._mae.maes)
        if self._sm is not None:
            lists.append(self._sm.sms)
        if self._em is not None:
            lists += [self._em.adaptive_ems, self._em.changeable_ems]
        if self._wfm is not None:
            lists.append(self._wfm.weighted_fms)
        for name in sorted(self._handlers):
            handler = self._handlers[name]
            lists += [r for r in (handler.dynamic_results, handler.adaptive_results) if r is not None]
        return lists

    def merge(self, other: SaliencyMetrics) -> None:
        """Append `other`'s frames after this one's (same metrics required).

        The lists PySODMetrics averages are concatenated in order, so merging the
        accumulators of consecutive chunks equals one pass over all their frames.
        """
        if not isinstance(other, SaliencyMetrics) or other.metrics != self.metrics:
            raise ValueError("can only merge SaliencyMetrics that compute the same metrics")
        for mine, theirs in zip(self._accumulators(), other._accumulators(), strict=True):
            mine.extend(theirs)
        self.frames += other.frames

    def get_results(self) -> dict:
        """The scalars of `self.metrics` as floats, "frames", and "curves".

        "curves" maps to numpy arrays of 256 values indexed by the threshold t in 0..255
        (a pixel counts as salient when its normalised value * 255, rounded down, is
        >= t): "threshold", and, when computed, "precision", "recall", "F" (the
        F-measure vs threshold curve) and "E". Curves are means over frames.
        """
        if self.frames == 0:
            raise ValueError("no frames were added: nothing to average")
        results: dict = {}
        curves: dict[str, np.ndarray] = {"threshold": np.arange(256)}
        if self._mae is not None:
            results["MAE"] = float(_mean(self._mae.maes))
        if self._fm is not None:
            fm = self._handlers["fm"]
            if fm.dynamic_results is not None:
                f_curve = _mean(fm.dynamic_results)
                results["maxF"] = float(f_curve.max())
                results["meanF"] = float(f_curve.mean())
                # PySODMetrics orders curves from threshold 255 down to 0; flip to ascending.
                curves["F"] = f_curve[::-1].copy()
                curves["precision"] = _mean(self._handlers["p"].dynamic_results)[::-1].copy()
                curves["recall"] = _mean(self._handlers["r"].dynamic_results)[::-1].copy()
            if fm.adaptive_results is not None:
                results["adpF"] = float(_mean(fm.adaptive_results))
        if self._sm is not None:
            results["S"] = float(_mean(self._sm.sms))
        if self._em is not None:
            e_curve = _mean(self._em.changeable_ems)
            results["maxE"] = float(e_curve.max())
            results["meanE"] = float(e_curve.mean())
            curves["E"] = e_curve[::-1].copy()
            results["adpE"] = float(_mean(self._em.adaptive_ems))
        if self._wfm is not None:
            results["wF"] = float(_mean(self._wfm.weighted_fms))
        ordered = {m: results[m] for m in self.metrics}
        ordered["frames"] = self.frames
        ordered["curves"] = curves
        return ordered
