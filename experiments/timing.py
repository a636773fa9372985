"""Wall-clock time of competing implementations, interleaved so that machine noise shows.

Rounds run every implementation once, in turn (A B C, B C A, C A B, ...: the order rotates so
none always runs right after the same neighbour); a busy machine then slows all of them
alike and widens their spread, instead of favouring whichever ran in a quiet moment. Tables
report the median with the min–max range.
"""

from __future__ import annotations

import statistics
import time as clock
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds per call over the rounds of one implementation."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def cell(self, unit: float = 1e3) -> str:
        """"median (min–max)" in ms (unit=1e3), each to 3 significant digits."""
        median, low, high = (_digits(v * unit) for v in (self.median, self.low, self.high))
        return f"{median} ({low}–{high})"


def _digits(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def interleaved(
    steps: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    synchronize: Callable[[], object] | None = None,
) -> dict[str, Timing]:
    """Time each step over `rounds` interleaved rounds, after `warmup` untimed rounds.

    synchronize (e.g. torch.cuda.synchronize) runs after each step, inside its timing.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 timed round")
    names = list(steps)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        shift = index % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            start = clock.perf_counter()
            steps[name]()
            if synchronize is not None:
                synchronize()
            if index >= warmup:
                samples[name].append(clock.perf_counter() - start)
    return {name: Timing(tuple(times)) for name, times in samples.items()}
