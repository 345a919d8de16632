"""The one tuner: times the choices of a `RunPlan` that arithmetic cannot settle, once.

`tune` takes candidate plans (name -> `RunPlan`, the baseline among them) and a `work`
factory (plan -> one call of the job's own work under that plan) and returns the chosen plan,
its reason in one line, and the chosen candidate's output of the timed calls, so a caller that
times on the job's first clips keeps those outputs instead of computing them again. Timing
goes through `libs.runtime.calibration` (alternating rounds, a margin over the baseline, the
per-machine decision cache): a decision is measured once per machine and input, and a run
never times the same choice twice.

`affordable` says whether timing pays for itself within a job: training times its candidates
only when the timed steps are at most `CHOOSING_SHARE` of the first epoch.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import calibration
from .calibration import Decision, Note, stderr_note
from .plan import RunPlan

CHOOSING_SHARE = 0.05  # the most of a job's first pass that choosing may cost
WARMUP = 1  # untimed calls of each candidate
ROUNDS = 2  # timed calls of each candidate


@dataclass(frozen=True)
class Tuned:
    """A tuner's answer: the plan to run, the decision behind it, and (when timed now) the chosen
    candidate's output of its last timed call."""

    plan: RunPlan
    decision: Decision
    output: object | None = None


def calls_per_candidate() -> int:
    """How many times `tune` calls each candidate's work when it measures."""
    return WARMUP + ROUNDS


def affordable(candidates: int, steps: int, share: float | None = None) -> bool:
    """Whether timing `candidates` (each called `calls_per_candidate()` times) costs at most `share`
    (default `CHOOSING_SHARE`) of a pass of `steps` calls of the same work."""
    share = CHOOSING_SHARE if share is None else share
    return candidates > 1 and candidates * calls_per_candidate() <= share * steps


def tune(what: str, candidates: Mapping[str, RunPlan], baseline: str,
         work: Callable[[RunPlan], Callable[[], object]], note: Note | None = stderr_note) -> Tuned:
    """The fastest of `candidates` on `work` (each candidate's call built when first run, so a
    cached decision builds none), cached per machine and `what`; the chosen plan says why."""
    calls: dict[str, Callable[[], object]] = {}
    outputs: dict[str, object] = {}

    def timed(name: str) -> Callable[[], None]:
        def run() -> None:
            if name not in calls:
                calls[name] = work(candidates[name])
            outputs[name] = calls[name]()
        return run

    device = candidates[baseline].device
    decision = calibration.measured_choice(what, {name: timed(name) for name in candidates}, baseline, device,
                                           rounds=ROUNDS, warmup=WARMUP, note=note)
    chosen = candidates[decision.choice]
    plan = chosen.replace(why=f"{chosen.why}; {what}: {decision.describe()}")
    return Tuned(plan, decision, outputs.get(decision.choice))
