"""The warm pool of boxes: started ahead of demand in the background, taken by new sessions, refilled.

Provider-neutral: the provider says how to start a ready box and how to remove one; the pool keeps the
count (ready plus warming), lets a session join a warm start already under way rather than begin a cold
one, and never lets a failed warm start surface (the pool is an optimisation). It follows demand with the
engine's rule (:mod:`coderunner.engine.demand`): between ``size`` and ``max_size`` boxes, as many as were
taken in the last 30 s, refilled in parallel up to ``max_starts`` at once, and shrunk back when the takes
have left that window.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from coderunner.engine.demand import DEMAND_WINDOW, PoolDemand

__all__ = ["WarmPool"]

log = logging.getLogger(__name__)
B = TypeVar("B")


class WarmPool(Generic[B]):
    """``size`` ready boxes, more while demand calls for them (up to ``max_size``). Thread-safe.

    Args:
        size: Boxes to keep ready at least (0: no pool).
        start: Starts one box and returns it once ready to take (runs on ``submit``'s threads).
        discard: Removes a box the pool will not hand out (a failed warm start, a surplus, one left at close).
        submit: Runs a call in the background.
        noun: What a box is called in the log ('container').
        max_size: Most boxes kept ready when sessions are taken quickly (default: ``size``).
        max_starts: Most warm starts under way at once (default: ``max_size``).
        window: Seconds of takes the target counts (see :mod:`coderunner.engine.demand`).
    """

    def __init__(
        self,
        size: int,
        *,
        start: Callable[[], B],
        discard: Callable[[B], None],
        submit: Callable[[Callable[[], None]], object],
        noun: str,
        max_size: int | None = None,
        max_starts: int | None = None,
        window: float = DEMAND_WINDOW,
    ) -> None:
        self.size = size
        self.max_size = max(size, max_size if max_size is not None else size)
        self.max_starts = max(1, max_starts if max_starts is not None else self.max_size)
        self.window = window
        self._start = start
        self._discard = discard
        self._submit = submit
        self._noun = noun
        self._ready = threading.Condition()
        self._boxes: collections.deque[B] = collections.deque()
        self._warming = 0
        self._closed = False
        self._demand = PoolDemand()
        self._waiters = 0
        self._timer: threading.Timer | None = None

    def __len__(self) -> int:
        """Boxes ready to take now."""
        return len(self._boxes)

    def target(self, now: float | None = None) -> int:
        """Boxes the pool keeps ready now: the recent takes, between ``size`` and ``max_size``."""
        return self._demand.target(self.size, self.max_size, time.monotonic() if now is None else now, self.window)

    def fill(self) -> None:
        """Start boxes in the background until the pool holds its target (ready or warming); drop a surplus."""
        surplus: list[B] = []
        with self._ready:
            if self._closed:
                return
            now = time.monotonic()
            target = self.target(now)
            while len(self._boxes) > target:
                surplus.append(self._boxes.pop())  # the newest: the oldest have waited longest for a session
            missing = max(min(target - len(self._boxes) - self._warming, self.max_starts - self._warming), 0)
            self._warming += missing
            self._schedule_shrink(now, target)
        for _ in range(missing):
            self._submit(self._warm_one)
        for box in surplus:
            self._submit(functools.partial(self._discard, box))

    def _schedule_shrink(self, now: float, target: int) -> None:
        # Under the lock. While demand holds the target above ``size``, look again when the oldest take
        # leaves the window: that is when the pool may shrink.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        change = self._demand.next_change(now, self.window)
        if target > self.size and change is not None:
            self._timer = threading.Timer(change + 0.05, self.fill)
            self._timer.daemon = True
            self._timer.start()

    def _warm_one(self) -> None:
        box: B | None = None
        try:
            box = self._start()
        except Exception as exc:  # the pool is an optimisation: a failed warm start must not surface here
            if not self._closed:
                log.warning("could not pre-start a %s: %s", self._noun, getattr(exc, "message", exc))
        with self._ready:
            self._warming -= 1
            keep = box is not None and not self._closed
            if keep:
                self._boxes.append(box)  # type: ignore[arg-type]
            self._ready.notify_all()
        if box is not None and not keep:
            self._discard(box)
        elif box is not None:
            self.fill()  # a start slot is free: the next one may begin (a refill bounded by max_starts)

    def take(self, timeout: float) -> B | None:
        """A ready box, waiting up to ``timeout`` for a warm start under way; None when there is none.

        A warm start under way is faster to join than a cold start from scratch. The pool refills after.
        """
        if self.size <= 0:
            return None
        with self._ready:
            self._demand.took(time.monotonic())
        self.fill()  # the target may have grown: more starts can begin now, in parallel
        with self._ready:
            deadline = time.monotonic() + timeout
            # Each start under way is spoken for by one waiting session: past that, a cold start of its own
            # is sooner than a place in the queue.
            while not self._boxes and self._warming > self._waiters and time.monotonic() < deadline:
                self._waiters += 1
                try:
                    self._ready.wait(deadline - time.monotonic())
                finally:
                    self._waiters -= 1
            box = self._boxes.popleft() if self._boxes else None
        self.fill()
        return box

    def close(self) -> list[B]:
        """Stop refilling; the boxes still in the pool, for the provider to remove."""
        with self._ready:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            boxes = list(self._boxes)
            self._boxes.clear()
            self._ready.notify_all()
        return boxes
