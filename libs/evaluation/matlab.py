"""The metric definitions and resizing of DAVSOD's MATLAB evaluation code.

Source: DengPingFan/DAVSOD, EvaluateTool/ (Fan et al., "Shifting More Attention to Video
Salient Object Detection", CVPR 2019). Per frame, main.m reads the map's first channel,
resizes it with `imresize(sal, size(gt))` when its size differs (main.m:100-101), scales it
with `im2double` and `mapminmax(sal(:)', 0, 1)` (main.m:108-111), binarises the label at
`gt > 128` (main.m:92-94) and computes:

* S-measure, `StructureMeasure.m` with alpha = 0.5 (main.m:113);
* adaptive F, `Fmeasure_calu.m` at threshold `2 * mean(sal)`, capped at 1 (main.m:116-118,
  Fmeasure_calu.m:4-6), a pixel being salient when `sal >= threshold` (Fmeasure_calu.m:9);
* the F-measure at the 256 thresholds `1:-1/255:0` (main.m:25, 123-127), beta^2 = 0.3
  (Fmeasure_calu.m:23), F = 0 when no salient pixel is hit (Fmeasure_calu.m:16-19);
* MAE on the normalised map, `mean2(abs(double(logical(gt)) - sal))` (main.m:121).

PySODMetrics (lartpang/PySODMetrics) follows the same formulas; where it departs from the
MATLAB code this module does what MATLAB does:

* max / mean F: PySODMetrics bins `uint8(pred * 255)` (truncation) into 256 bins, so a
  value lying exactly on a threshold, which `pred * 255` rounds to just below an integer,
  falls into the bin below; MATLAB compares `sal >= t` with the thresholds its colon
  operator produces. `matlab_thresholds` reproduces those doubles.
* S-measure region split: MATLAB rounds the 1-based centroid half away from zero
  (S_region.m:53-54); PySODMetrics rounds the 0-based centroid half to even, which moves
  the split by one pixel when the centroid lies exactly on .5.
* normalisation: `mapminmax` computes `(x - xmin) * (1 / (xmax - xmin))`; PySODMetrics
  divides by the range, which can differ in the last bit (and so, at a threshold, flip a
  pixel).

One case is not copied: a quadrant left empty because the centroid lies on the last row or
column makes MATLAB's `ssim` return NaN, and NaN * 0 poisons the whole average; here the
empty quadrant adds 0 (its weight is 0), as `BorderSafeSmeasure` does.

main.m computes neither the E-measure nor the weighted F-measure; `MatlabMetrics` scores
them with PySODMetrics.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .metrics import F_BETA2, METRIC_NAMES, S_ALPHA, SaliencyMetrics

_EPS = np.finfo(np.float64).eps  # MATLAB's eps
_MATLAB_METRICS = frozenset({"MAE", "maxF", "meanF", "adpF", "S"})


# --------------------------------------------------------------------------- imresize


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5, the kernel of MATLAB's `imresize(..., 'bicubic')`."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights, 0-based source indices), each [out_len, P], of a 1-D bicubic resize.

    As MATLAB's imresize does: output pixel x (1-based) samples the input at
    u = x / s + (1 - 1 / s) / 2 with s = out_len / in_len; when shrinking (s < 1) the kernel is
    stretched by 1 / s (antialiasing); weights are normalised to sum to 1; indices outside
    the image are mirrored (symmetric padding); all-zero columns are dropped.
    """
    scale = out_len / in_len
    width = 4.0
    if scale < 1:
        width /= scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    indices = left + np.arange(taps)[None, :]
    weights = kernel(u - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _round_uint8(values: np.ndarray) -> np.ndarray:
    """MATLAB's conversion of doubles to uint8: round half away from zero, saturate."""
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def imresize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 HxW map resized to `size` (H, W) as MATLAB's `imresize(image, size)` does.

    Bicubic (Keys, a = -0.5) with antialiasing when shrinking; the dimension shrunk most is
    resized first, and each pass rounds back to uint8, as imresize does for uint8 input.
    """
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"imresize needs a uint8 HxW array, got {image.dtype} of shape {image.shape}")
    out = image
    scales = (size[0] / image.shape[0], size[1] / image.shape[1])
    for dim in sorted(range(2), key=lambda d: scales[d]):
        if out.shape[dim] == size[dim]:
            continue
        weights, indices = _contributions(out.shape[dim], size[dim])
        moved = np.moveaxis(out.astype(np.float64), dim, 0)
        resized = np.einsum("op,op...->o...", weights, moved[indices])
        out = np.moveaxis(_round_uint8(resized), 0, dim)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------- per-frame metrics


def matlab_thresholds() -> np.ndarray:
    """The 256 doubles of MATLAB's `1:-1/255:0` (main.m:25), in ascending order.

    MATLAB's colon operator computes the first half of a range from its start and the
    second half from its end: element k (0-based) of a:d:b with n = 255 steps is a + k*d for
    k <= n/2 and b - (n - k)*d above, so threshold t/255 is t * (1/255) for t <= 127 and
    1 - (255 - t) * (1/255) for t >= 128.
    """
    step = 1.0 / 255.0
    t = np.arange(256, dtype=np.float64)
    return np.where(t <= 127, t * step, 1.0 - (255.0 - t) * step)


_THRESHOLDS = matlab_thresholds()


def mapminmax(pred: np.ndarray) -> np.ndarray:
    """`mapminmax(im2double(pred)(:)', 0, 1)` of main.m:108-111: (x - min) * (1 / (max - min)).

    A constant map keeps its values (x / 255), as mapminmax does for a row without range.
    """
    sal = pred.astype(np.float64) / 255.0
    low, high = sal.min(), sal.max()
    if high == low:
        return sal
    return (sal - low) * (1.0 / (high - low))


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """`ssim` of S_region.m:105-146 (an empty region scores 0 instead of NaN)."""
    n = pred.size
    if n == 0:
        return 0.0
    dgt = gt.astype(np.float64)
    x, y = pred.mean(), dgt.mean()
    sigma_x2 = np.sum((pred - x) ** 2) / (n - 1 + _EPS)
    sigma_y2 = np.sum((dgt - y) ** 2) / (n - 1 + _EPS)
    sigma_xy = np.sum((pred - x) * (dgt - y)) / (n - 1 + _EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x * x + y * y) * (sigma_x2 + sigma_y2)
    if alpha != 0:
        return float(alpha / (beta + _EPS))
    return 1.0 if beta == 0 else 0.0


def _object(values: np.ndarray) -> float:
    """`Object` of S_object.m:31-58: 2x / (x^2 + 1 + std + eps) with the sample std."""
    if values.size == 0:
        return 0.0
    x = values.mean()
    sigma = values.std(ddof=1) if values.size > 1 else 0.0
    return float(2.0 * x / (x * x + 1.0 + sigma + _EPS))


def s_measure(sal: np.ndarray, gt: np.ndarray) -> float:
    """`StructureMeasure.m` (alpha = 0.5) of a [0, 1] map and a boolean label."""
    y = gt.mean()
    if y == 0:
        return float(1.0 - sal.mean())
    if y == 1:
        return float(sal.mean())
    u = y
    s_obj = u * _object(sal[gt]) + (1 - u) * _object((1.0 - sal)[~gt])
    rows, cols = gt.shape
    total = gt.sum()
    # S_region.m:50-54: the 1-based centroid, rounded half away from zero.
    cx = int(np.floor(gt.sum(axis=0) @ np.arange(1, cols + 1) / total + 0.5))
    cy = int(np.floor(gt.sum(axis=1) @ np.arange(1, rows + 1) / total + 0.5))
    area = rows * cols
    w1 = cx * cy / area
    w2 = (cols - cx) * cy / area
    w3 = cx * (rows - cy) / area
    w4 = 1.0 - w1 - w2 - w3
    s_reg = (
        w1 * _ssim(sal[:cy, :cx], gt[:cy, :cx])
        + w2 * _ssim(sal[:cy, cx:], gt[:cy, cx:])
        + w3 * _ssim(sal[cy:, :cx], gt[cy:, :cx])
        + w4 * _ssim(sal[cy:, cx:], gt[cy:, cx:])
    )
    q = S_ALPHA * s_obj + (1 - S_ALPHA) * s_reg
    return float(max(q, 0.0))


def _f_from_counts(hits: np.ndarray, predicted: np.ndarray, positives: int) -> tuple:
    """Precision, recall and F (beta^2 = 0.3) as Fmeasure_calu.m:16-24 forms them."""
    hits = np.asarray(hits, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    ok = hits > 0
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=ok)
    recall = np.divide(hits, float(positives), out=np.zeros_like(hits), where=ok)
    denom = F_BETA2 * precision + recall
    f = np.divide((1 + F_BETA2) * precision * recall, denom, out=np.zeros_like(hits), where=ok)
    return precision, recall, f


def f_curves(
    sal: np.ndarray, gt: np.ndarray, thresholds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F) at the 256 ascending `thresholds`, salient when sal >= threshold.

    `thresholds` defaults to `matlab_thresholds()`. Octave computes `1:-1/255:0` as
    1 + i * (-1/255) for every element, which differs from MATLAB's in the last bit for 72 of
    the 256 thresholds; pass those to compare with Octave.
    """
    thresholds = _THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    order = np.searchsorted(thresholds, sal.ravel(), side="right")  # thresholds <= value
    fg = gt.ravel()
    predicted = np.cumsum(np.bincount(order, minlength=257)[::-1])[::-1][1:]
    hits = np.cumsum(np.bincount(order[fg], minlength=257)[::-1])[::-1][1:]
    return _f_from_counts(hits, predicted, int(fg.sum()))


def adaptive_f(sal: np.ndarray, gt: np.ndarray) -> float:
    """F at `min(2 * mean(sal), 1)` (main.m:116, Fmeasure_calu.m:4-9)."""
    threshold = min(2.0 * sal.mean(), 1.0)
    binary = sal >= threshold
    hits, predicted = np.array([np.count_nonzero(binary & gt)]), np.array([binary.sum()])
    _, _, f = _f_from_counts(hits, predicted, int(gt.sum()))
    return float(f[0])


class MatlabMetrics:
    """Per-frame metrics as DAVSOD's main.m defines them, with `SaliencyMetrics`' interface.

    MAE, S, adaptive F and the F curves (max / mean F) follow the MATLAB files; E-measure
    and weighted F, which main.m does not compute, come from PySODMetrics. Curves are means
    over frames, indexed by ascending threshold t = 0..255.
    """

    def __init__(self, metrics: Iterable[str] = METRIC_NAMES) -> None:
        requested = tuple(dict.fromkeys(metrics))
        self._others = None
        rest = [m for m in requested if m not in _MATLAB_METRICS]
        if rest:
            self._others = SaliencyMetrics(rest)
        unknown = [m for m in requested if m not in METRIC_NAMES]
        if unknown or not requested:
            SaliencyMetrics(requested)  # raises its error naming the unknown metrics
        self.metrics: tuple[str, ...] = tuple(m for m in METRIC_NAMES if m in requested)
        self.frames = 0
        self._lists: dict[str, list] = {m: [] for m in ("MAE", "S", "adpF") if m in self.metrics}
        self._curves = bool({"maxF", "meanF"} & set(self.metrics))
        self._prf: list[np.ndarray] = []

    def __len__(self) -> int:
        return self.frames

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Score one uint8 map against its uint8 label (salient where > 128)."""
        if pred.shape != gt.shape:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in size; resize pred to gt size")
        sal = mapminmax(pred)
        mask = gt > 128
        if "MAE" in self._lists:
            self._lists["MAE"].append(float(np.mean(np.abs(mask.astype(np.float64) - sal))))
        if "S" in self._lists:
            self._lists["S"].append(s_measure(sal, mask))
        if "adpF" in self._lists:
            self._lists["adpF"].append(adaptive_f(sal, mask))
        if self._curves:
            self._prf.append(np.stack(f_curves(sal, mask)))
        if self._others is not None:
            self._others.step(pred, gt)
        self.frames += 1

    def merge(self, other: MatlabMetrics) -> None:
        """Append `other`'s frames after this one's (same metrics required)."""
        if not isinstance(other, MatlabMetrics) or other.metrics != self.metrics:
            raise ValueError("can only merge MatlabMetrics that compute the same metrics")
        for name, values in self._lists.items():
            values.extend(other._lists[name])
        self._prf.extend(other._prf)
        if self._others is not None:
            self._others.merge(other._others)
        self.frames += other.frames

    def get_results(self) -> dict:
        """The scalars of `self.metrics`, "frames" and "curves", as `SaliencyMetrics.get_results`."""
        if self.frames == 0:
            raise ValueError("no frames were added: nothing to average")
        results: dict = {}
        curves: dict[str, np.ndarray] = {"threshold": np.arange(256)}
        if self._others is not None:
            other = self._others.get_results()
            curves.update({k: v for k, v in other.pop("curves").items() if k != "threshold"})
            results.update(other)
        for name, values in self._lists.items():
            results[name] = float(np.mean(values))
        if self._curves:
            precision, recall, f = np.mean(np.stack(self._prf), axis=0)
            results["maxF"], results["meanF"] = float(f.max()), float(f.mean())
            curves.update(precision=precision, recall=recall, F=f)
        ordered = {m: results[m] for m in self.metrics}
        ordered["frames"] = self.frames
        ordered["curves"] = curves
        return ordered
