"""The warm pool of boxes: started ahead of demand in the background, taken by new sessions, refilled.

Provider-neutral: the provider says how to start a ready box and how to remove one; the pool keeps the
count (ready plus warming), lets a session join a warm start already under way rather than begin a cold
one, and never lets a failed warm start surface (the pool is an optimisation).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["WarmPool"]

log = logging.getLogger(__name__)
B = TypeVar("B")


class WarmPool(Generic[B]):
    """Up to ``size`` ready boxes. Thread-safe.

    Args:
        size: Boxes to keep ready (0: no pool).
        start: Starts one box and returns it once ready to take (runs on ``submit``'s threads).
        discard: Removes a box the pool will not hand out (a failed warm start, or one left at close).
        submit: Runs a call in the background.
        noun: What a box is called in the log ('container').
    """

    def __init__(
        self,
        size: int,
        *,
        start: Callable[[], B],
        discard: Callable[[B], None],
        submit: Callable[[Callable[[], None]], object],
        noun: str,
    ) -> None:
        self.size = size
        self._start = start
        self._discard = discard
        self._submit = submit
        self._noun = noun
        self._ready = threading.Condition()
        self._boxes: collections.deque[B] = collections.deque()
        self._warming = 0
        self._closed = False

    def __len__(self) -> int:
        """Boxes ready to take now."""
        return len(self._boxes)

    def fill(self) -> None:
        """Start boxes in the background until the pool holds ``size`` (ready or warming)."""
        with self._ready:
            if self._closed:
                return
            missing = max(self.size - len(self._boxes) - self._warming, 0)
            self._warming += missing
        for _ in range(missing):
            self._submit(self._warm_one)

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

    def take(self, timeout: float) -> B | None:
        """A ready box, waiting up to ``timeout`` for a warm start under way; None when there is none.

        A warm start under way is faster to join than a cold start from scratch. The pool refills after.
        """
        if self.size <= 0:
            return None
        with self._ready:
            deadline = time.monotonic() + timeout
            while not self._boxes and self._warming > 0 and time.monotonic() < deadline:
                self._ready.wait(deadline - time.monotonic())
            box = self._boxes.popleft() if self._boxes else None
        self.fill()
        return box

    def close(self) -> list[B]:
        """Stop refilling; the boxes still in the pool, for the provider to remove."""
        with self._ready:
            self._closed = True
            boxes = list(self._boxes)
            self._boxes.clear()
            self._ready.notify_all()
        return boxes
