"""Measured choices between ways of running the same computation: `--precision auto`.

A candidate (e.g. BatchNorm folded, channels-last, `torch.compile`, bf16 training) is chosen
only where it measures faster than the baseline (plain float32) on this machine and input
size: the candidates are timed alternately, round after round, and one wins only if its
median time beats the baseline's by `MARGIN`; otherwise the baseline is kept, so `auto` is
never slower than `--precision fp32` by more than the timing noise. Decisions are cached per
machine (CPU or GPU model, torch version, device, what was measured) in
`~/.cache/rcrnet/decisions.json` (`$RCRNET_CACHE_DIR` overrides the folder), so later runs
skip the measurement.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .files import FileWriteError, write_atomic

MARGIN = 0.05  # a candidate must be at least 5% faster than the baseline to be chosen
CACHE_ENV = "RCRNET_CACHE_DIR"
CACHE_FILE = "decisions.json"

Timer = Callable[[], float]


@dataclass(frozen=True)
class Decision:
    """What was chosen, the measured speed of each option relative to the baseline, and whether
    it came from the cache."""

    choice: str
    baseline: str
    ratios: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def describe(self) -> str:
        """One line: the choice and why."""
        if not self.ratios:
            return f"{self.choice} (not measured)"
        others = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in self.ratios.items()
                           if name != self.baseline)
        source = "cached measurement" if self.cached else "measured now"
        if self.choice == self.baseline:
            why = f"no option beat {self.baseline} by {MARGIN:.0%}"
        else:
            why = f"{self.ratios[self.choice]:.2f}x {self.baseline}"
        return f"{self.choice} ({why}; {source} vs {self.baseline}: {others})"


def hardware_name(device: torch.device | str = "cpu") -> str:
    """The CPU model (from /proc/cpuinfo) or, for a CUDA device, the GPU's name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(device: torch.device | str, what: str) -> str:
    """The cache key of a decision: hardware, torch version, device type, threads and `what`."""
    device = torch.device(device)
    return f"{hardware_name(device)} | torch {torch.__version__} | {device.type} | " \
           f"{torch.get_num_threads()} threads | {what}"


def cache_path() -> Path:
    """`$RCRNET_CACHE_DIR/decisions.json`, by default under ~/.cache/rcrnet/."""
    folder = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rcrnet"
    return Path(folder) / CACHE_FILE


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_decision(key: str, options: Sequence[str]) -> Decision | None:
    """The cached decision for `key`, if any and if its choice is still one of `options`."""
    entry = _read_cache(cache_path()).get(key)
    if not isinstance(entry, dict) or entry.get("choice") not in options:
        return None
    ratios = {str(k): float(v) for k, v in entry.get("ratios", {}).items()}
    return Decision(entry["choice"], str(entry.get("baseline", options[0])), ratios, cached=True)


def store_decision(key: str, decision: Decision) -> None:
    """Add `decision` to the cache (best effort: an unwritable cache only costs a new measurement)."""
    path = cache_path()
    data = _read_cache(path)
    data[key] = {"choice": decision.choice, "baseline": decision.baseline, "ratios": decision.ratios}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(data, indent=1, sort_keys=True).encode()
        write_atomic(path, lambda f: f.write(text))
    except (OSError, FileWriteError):
        pass


def time_alternately(candidates: Mapping[str, Callable[[], object]], rounds: int = 2, warmup: int = 1,
                     timer: Timer = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of each candidate's call: `warmup` untimed calls of each, then `rounds` rounds in which
    every candidate runs once, the order rotating from round to round (a shared machine's load
    then falls on all of them alike)."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = timer()
            candidates[name]()
            times[name].append(timer() - start)
    return times


def time_in_turn(candidates: Mapping[str, Callable[[], object]], rounds: int = 2, warmup: int = 1,
                 timer: Timer = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of each candidate's call, one candidate after the other (`warmup` untimed calls, then
    `rounds` timed ones): for candidates whose calls change process-wide state that the next
    candidate's first call would undo (`libs.runtime.allocator`)."""
    times: dict[str, list[float]] = {}
    for name, call in candidates.items():
        for _ in range(warmup):
            call()
        times[name] = []
        for _ in range(rounds):
            start = timer()
            call()
            times[name].append(timer() - start)
    return times


def pick_fastest(times: Mapping[str, Sequence[float]], baseline: str, margin: float = MARGIN) -> Decision:
    """The candidate with the shortest median time if it beats `baseline`'s median by `margin`,
    else `baseline`; with every candidate's speed relative to `baseline`."""
    base = statistics.median(times[baseline])
    ratios = {name: base / max(statistics.median(t), 1e-12) for name, t in times.items()}
    best = max(ratios, key=lambda name: (ratios[name], name == baseline))
    choice = best if ratios[best] >= 1 + margin else baseline
    return Decision(choice, baseline, ratios)


def measured_choice(what: str, candidates: Mapping[str, Callable[[], object]], baseline: str,
                    device: torch.device | str = "cpu", rounds: int = 2, warmup: int = 1,
                    timer: Timer = time.perf_counter, use_cache: bool = True,
                    interleaved: bool = True) -> Decision:
    """Choose among `candidates` (name -> one call of the work; `baseline` among them) by timing
    them here (alternately, or with `interleaved=False` one after the other in their order), or
    take the cached decision for this machine and `what`."""
    if baseline not in candidates:
        raise ValueError(f"baseline {baseline!r} is not a candidate")
    key = machine_key(device, what)
    if use_cache:
        found = cached_decision(key, list(candidates))
        if found is not None:
            return found
    if len(candidates) == 1:
        return Decision(baseline, baseline)
    timing = time_alternately if interleaved else time_in_turn
    decision = pick_fastest(timing(candidates, rounds, warmup, timer), baseline)
    if use_cache:
        store_decision(key, decision)
    return decision
