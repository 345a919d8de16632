"""Measured choices between ways of running the same computation (used by `libs.runtime.tuner`).

A candidate (e.g. channels-last or bf16 training, `torch.compile`) is chosen only where it
measures faster than the baseline on this machine and input size: the candidates are timed
alternately, round after round, and one wins only if its median time beats the baseline's by
`MARGIN`; otherwise the baseline is kept. Decisions are cached per machine (CPU or GPU model,
torch version, device, threads, what was measured) in `decisions.json` under
`$RCRNET_CACHE_DIR`, else `$XDG_CACHE_HOME/rcrnet`, else `~/.cache/rcrnet`, so later runs skip
the measurement. An unreadable or corrupt cache, or an entry of the wrong shape, is measured
again with one note line; an unwritable cache only costs the next run a measurement.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import one_line
from .files import FileWriteError, write_atomic

MARGIN = 0.05  # a candidate must be at least 5% faster than the baseline to be chosen
CACHE_ENV = "RCRNET_CACHE_DIR"
CACHE_FILE = "decisions.json"

Timer = Callable[[], float]
Note = Callable[[str], None]


def stderr_note(line: str) -> None:
    """The default way a cache problem is told: one `note:` line on stderr."""
    print(f"note: {line}", file=sys.stderr, flush=True)


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
    """`decisions.json` in `$RCRNET_CACHE_DIR`, else `$XDG_CACHE_HOME/rcrnet`, else `~/.cache/rcrnet`."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        xdg = os.environ.get("XDG_CACHE_HOME")
        folder = str(Path(xdg) / "rcrnet") if xdg else str(Path.home() / ".cache" / "rcrnet")
    return Path(folder) / CACHE_FILE


def _read_cache(path: Path, note: Note | None = None) -> dict[str, object]:
    """The cache's entries ({} when there is no cache; with a `note` when it cannot be read)."""
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):  # no cache yet (or no folder for one)
        return {}
    except OSError as exc:
        if note is not None:
            note(f"decision cache {path} cannot be read ({exc.strerror or exc}): measuring again")
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        if note is not None:
            note(f"decision cache {path} is not a JSON object of decisions: measuring again")
        return {}
    return data


def _entry_decision(entry: object, options: Sequence[str]) -> Decision | None:
    """The decision an entry holds, or None if it is not {choice, baseline, ratios} over `options`."""
    if not isinstance(entry, dict):
        return None
    choice, baseline, ratios = entry.get("choice"), entry.get("baseline"), entry.get("ratios", {})
    if choice not in options or baseline not in options or not isinstance(ratios, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v) and v > 0 for k, v in ratios.items()):
        return None
    return Decision(choice, baseline, {k: float(v) for k, v in ratios.items()}, cached=True)


def cached_decision(key: str, options: Sequence[str], note: Note | None = None) -> Decision | None:
    """The cached decision for `key`, if any and if it is well formed over `options` (else a note)."""
    path = cache_path()
    data = _read_cache(path, note)
    if key not in data:
        return None
    found = _entry_decision(data[key], options)
    if found is None and note is not None:
        note(f"decision cache {path}: the entry for {key!r} is not a decision among "
             f"{', '.join(options)}: measuring again")
    return found


def store_decision(key: str, decision: Decision, note: Note | None = None) -> None:
    """Add `decision` to the cache (an unwritable cache only costs the next run a measurement)."""
    path = cache_path()
    data = _read_cache(path)
    data[key] = {"choice": decision.choice, "baseline": decision.baseline, "ratios": decision.ratios}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(data, indent=1, sort_keys=True).encode()
        write_atomic(path, lambda f: f.write(text))
    except (OSError, FileWriteError) as exc:
        if note is not None:
            note(f"decision cache {path} cannot be written ({one_line(exc)}): the next run measures again")


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
                    note: Note | None = stderr_note) -> Decision:
    """Choose among `candidates` (name -> one call of the work; `baseline` among them) by timing
    them here, alternately, or take the cached decision for this machine and `what`; cache
    problems are told to `note`, one line each."""
    if baseline not in candidates:
        raise ValueError(f"baseline {baseline!r} is not a candidate")
    key = machine_key(device, what)
    if use_cache:
        found = cached_decision(key, list(candidates), note)
        if found is not None:
            return found
    if len(candidates) == 1:
        return Decision(baseline, baseline)
    decision = pick_fastest(time_alternately(candidates, rounds, warmup, timer), baseline)
    if use_cache:
        store_decision(key, decision, note)
    return decision
