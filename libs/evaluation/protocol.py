"""Evaluation protocols: which frames are scored, how they are averaged, resized and scored.

Three presets are defined, each named after the benchmark code whose numbers it reproduces;
each convention can also be set on its own. docs/evaluation.md compares them.

`frames` is the project's default: every annotated frame of a dataset counts once (PySODMetrics
averages over all frames), maps sized unlike their label are resized bilinearly, metrics follow
PySODMetrics' definitions.

`davsod` reproduces DAVSOD's MATLAB benchmark, DengPingFan/DAVSOD EvaluateTool/main.m (Fan et
al., CVPR 2019), used by the VSOD papers that report on DAVSOD's benchmark:

* frames (`skip_first_last`): each video's first and last annotated frame are left out,
  `for i = 2:fileNUM-1` over the sorted ground-truth files (main.m:82). PySODEvalToolkit
  (lartpang/PySODEvalToolkit) has the same convention as `start_idx=1, end_idx=-1` of
  `metrics/video_metrics.py: cal_metrics` and `--ignore_head` / `--ignore_tail` of
  `eval_unvos_method.py`.
* averaging (`average="videos"`): every scalar is averaged over a video's frames
  (main.m:133-139), then over the videos (main.m:145-152), so each video weighs the same;
  the F-measure curve is averaged per video, then over videos, and max / mean F are the
  maximum / mean of that dataset curve (main.m:136, 148-150) - not the mean of per-video
  maxima. PySODEvalToolkit's counterpart is its `GroupedMetricRecorder`
  (utils/recorders/metric_recorder.py), which groups frames by video. The E-measure and
  weighted F, which main.m does not compute, are averaged the same way (the E curve like
  the F curve).
* resizing (`resize="bicubic-matlab"`): `imresize(sal, size(gt))` (main.m:100-101), i.e.
  MATLAB's bicubic with antialiasing, see `libs.evaluation.matlab.imresize`.
* definitions (`definitions="matlab"`): S-measure, adaptive / max / mean F and MAE as the
  MATLAB files define them, see `libs.evaluation.matlab`.

`sal-eval-toolbox` reproduces the averaged-curve convention of the MATLAB evaluation toolbox
for salient object detection, ArcherFMY/sal_eval_toolbox (Feng, 2018),
tools/Curve_BenchCode/performCalcu.m, which many SOD and VSOD tables of 2018-2020 used:

* F-measure (`fmeasure="f-of-mean-pr"`): precision and recall are computed per image at 256
  thresholds, each curve is averaged over all images of the dataset, the F-measure curve
  (beta^2 = 0.3) is computed from the two averaged curves and max F is its maximum (the
  `Fmeasure_Curve` and `MaxFmeasure` of performCalcu.m). The other presets average the
  per-image F-measure curves instead (`"mean-of-f"`), which gives a lower max F.
* frames every image counted once, MATLAB's imresize bicubic, the MATLAB definitions of S
  and MAE (the toolbox calls the same StructureMeasure.m as DAVSOD's main.m).

Label binarisation (> 128, main.m:92-94) and min-max normalisation of each map (main.m:111)
are the same under both definitions. Image datasets have no videos: there `average` and
`skip_first_last` do not apply and every image counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from .matlab import MatlabMetrics
from .metrics import F_BETA2, METRIC_NAMES, SaliencyMetrics

AVERAGES: tuple[str, ...] = ("frames", "videos")
RESIZES: tuple[str, ...] = ("bilinear", "bicubic-matlab")
DEFINITIONS: tuple[str, ...] = ("pysodmetrics", "matlab")
FMEASURES: tuple[str, ...] = ("mean-of-f", "f-of-mean-pr")


@dataclass(frozen=True)
class Protocol:
    """The conventions of one evaluation; see the module docstring for their sources."""

    name: str
    average: str = "frames"
    skip_first_last: bool = False
    resize: str = "bilinear"
    definitions: str = "pysodmetrics"
    fmeasure: str = "mean-of-f"

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.average, AVERAGES, "average"),
            (self.resize, RESIZES, "resize"),
            (self.definitions, DEFINITIONS, "definitions"),
            (self.fmeasure, FMEASURES, "fmeasure"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")

    def describe(self) -> dict:
        """The conventions as a JSON-ready dict."""
        return asdict(self)

    def caption(self) -> str:
        """One line naming the protocol and its conventions (for the Markdown table)."""
        edges = "first/last annotated frame of each video skipped" if self.skip_first_last else "all frames"
        return (
            f"protocol: {self.name} (average over {self.average}; {edges}; resize {self.resize}; "
            f"definitions {self.definitions}; F-measure {self.fmeasure})"
        )


PROTOCOLS: dict[str, Protocol] = {
    "frames": Protocol("frames"),
    "davsod": Protocol(
        "davsod", average="videos", skip_first_last=True, resize="bicubic-matlab", definitions="matlab"
    ),
    "sal-eval-toolbox": Protocol(
        "sal-eval-toolbox", resize="bicubic-matlab", definitions="matlab", fmeasure="f-of-mean-pr"
    ),
}


def make_protocol(
    name: str = "frames",
    *,
    average: str | None = None,
    skip_first_last: bool | None = None,
    resize: str | None = None,
    definitions: str | None = None,
    fmeasure: str | None = None,
) -> Protocol:
    """Protocol `name` with the conventions given explicitly overriding its own.

    A protocol with any convention overridden is named "<name>+custom".
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; expected one of {', '.join(PROTOCOLS)}")
    base = PROTOCOLS[name]
    given = {
        k: v
        for k, v in dict(
            average=average, skip_first_last=skip_first_last, resize=resize, definitions=definitions,
            fmeasure=fmeasure,
        ).items()
        if v is not None and getattr(base, k) != v
    }
    return replace(base, name=f"{name}+custom", **given) if given else base


def make_metrics(
    protocol: Protocol, metrics: Iterable[str] = METRIC_NAMES
) -> SaliencyMetrics | MatlabMetrics:
    """An empty accumulator for `metrics` under the protocol's definitions."""
    return MatlabMetrics(metrics) if protocol.definitions == "matlab" else SaliencyMetrics(metrics)


def select_frames(
    keys_by_video: Sequence[tuple[str, str]], skip_first_last: bool
) -> tuple[list[str], list[str]]:
    """(kept, skipped) keys of (video, key) pairs given in frame order.

    With `skip_first_last`, each video's first and last annotated frame are skipped
    (main.m:82); a video with one or two annotated frames is skipped whole.
    """
    if not skip_first_last:
        return [k for _, k in keys_by_video], []
    by_video: dict[str, list[str]] = {}
    for video, key in keys_by_video:
        by_video.setdefault(video, []).append(key)
    edges = {keys[0] for keys in by_video.values()} | {keys[-1] for keys in by_video.values()}
    kept = [k for _, k in keys_by_video if k not in edges]
    skipped = [k for _, k in keys_by_video if k in edges]
    return kept, skipped


_CURVE_METRICS = {
    "maxF": ("F", np.max),
    "meanF": ("F", np.mean),
    "maxE": ("E", np.max),
    "meanE": ("E", np.mean),
}


def average_videos(results: Sequence[dict], metrics: Sequence[str]) -> dict:
    """The dataset scores from per-video `get_results()` dicts, each video weighing the same.

    Scalars are means over videos (main.m:145-152); max / mean F (and E) are the max / mean
    of the mean over videos of the per-video mean curves (main.m:148-150). Curves are the
    means over videos; "frames" is the total number of frames scored.
    """
    if not results:
        raise ValueError("no video has a scored frame: nothing to average")
    names = [k for k in results[0]["curves"] if k != "threshold"]
    curves = {"threshold": results[0]["curves"]["threshold"]}
    curves.update({k: np.mean([r["curves"][k] for r in results], axis=0) for k in names})
    out: dict = {}
    for metric in metrics:
        if metric in _CURVE_METRICS:
            curve, reduce = _CURVE_METRICS[metric]
            out[metric] = float(reduce(curves[curve]))
        else:
            out[metric] = float(np.mean([r[metric] for r in results]))
    out["frames"] = int(sum(r["frames"] for r in results))
    out["curves"] = curves
    return out


def f_from_mean_pr(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """F-measure (beta^2 = 0.3) at each threshold from averaged precision and recall curves.

    performCalcu.m: `(1 + 0.3) .* Pre .* Recall ./ (0.3 * Pre + Recall)`; where both are 0
    MATLAB gives NaN, which `max` skips, so F is 0 there.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    denominator = F_BETA2 * precision + recall
    out = np.zeros_like(denominator)
    return np.divide((1 + F_BETA2) * precision * recall, denominator, out=out, where=denominator > 0)


def apply_fmeasure(protocol: Protocol, results: dict) -> dict:
    """`results` (scalars and "curves") with max / mean F taken as the protocol says.

    Under "f-of-mean-pr" the F curve becomes the F-measure of the averaged precision and
    recall curves, and max / mean F its maximum / mean; under "mean-of-f" nothing changes.
    """
    curves = results.get("curves") or {}
    if protocol.fmeasure != "f-of-mean-pr" or "precision" not in curves:
        return results
    f_curve = f_from_mean_pr(curves["precision"], curves["recall"])
    results["curves"] = {**curves, "F": f_curve}
    if "maxF" in results:
        results["maxF"] = float(f_curve.max())
    if "meanF" in results:
        results["meanF"] = float(f_curve.mean())
    return results
