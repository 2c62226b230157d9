"""How many warm kernels recent demand calls for: the pool's target, as a pure function of the clock.

The engine's warm pool keeps at least ``pool_size`` Python kernels started. When sessions are taken
faster than that, every session past the first waits for a kernel start, so the pool grows: its target
is the number of kernels taken in the last ``window`` seconds, clamped between ``pool_size`` and
``pool_max``. Once the takes leave the window, the target is back at ``pool_size`` and the engine shuts
the surplus down. Counting takes (not misses) keeps the target steady under repeated bursts: a pool that
was big enough does not shrink just because it was.

No I/O and no clock of its own: every call is given ``now`` (``time.monotonic()``), so the rule is tested
without waiting.
"""

from __future__ import annotations

import bisect
import os
from collections import deque

__all__ = ["DEMAND_WINDOW", "PoolDemand", "parallel_starts"]

DEMAND_WINDOW = 30.0
"""Seconds of takes the target counts: long enough to span an agent's turn between two bursts of sessions."""


def parallel_starts() -> int:
    """Most warm starts a pool runs at once: half the CPUs this process may use, at least one.

    Counted from the CPUs this process may run on (a container or taskset may allow fewer than the machine has).
    A start (a kernel, a container) is CPU-bound, and refilling is background work that must leave room for
    the code that runs and for the starts sessions wait on.
    """
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return max(1, cpus // 2)


_REMEMBERED = 1024
"""Most takes remembered (the oldest are dropped first): far above any sensible ``pool_max``."""


class PoolDemand:
    """The recent takes of one pooled language's kernels, and the sessions waiting for a warm start."""

    def __init__(self) -> None:
        self._taken: deque[float] = deque(maxlen=_REMEMBERED)
        self.waiting = 0
        """Sessions waiting for a pool start already under way (each start is spoken for by one)."""

    def took(self, now: float) -> None:
        """Record that a session asked for a kernel at ``now``, served from the pool or not."""
        self._taken.append(now)

    def recent(self, now: float, window: float) -> int:
        """How many kernels were asked for in the ``window`` seconds up to ``now``.

        Reads a copy (one C call, atomic under the GIL), so a health report may ask from another thread
        while the engine's loop records takes.
        """
        taken = list(self._taken.copy())
        return len(taken) - bisect.bisect_right(taken, now - window)

    def target(self, low: int, high: int, now: float, window: float) -> int:
        """Warm kernels to keep: the recent takes, clamped to ``[low, max(low, high)]``; 0 when ``low`` is 0.

        ``low`` 0 is the pool switched off (``pool_size=0``): demand does not switch it back on.
        """
        if low <= 0:
            return 0
        return max(low, min(max(low, high), self.recent(now, window)))

    def next_change(self, now: float, window: float) -> float | None:
        """Seconds from ``now`` until the oldest recent take leaves the window (None: no recent takes)."""
        taken = list(self._taken.copy())
        start = bisect.bisect_right(taken, now - window)
        return None if start == len(taken) else taken[start] + window - now
