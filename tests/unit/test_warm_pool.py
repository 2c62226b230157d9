"""The sandbox host's warm pool follows demand: it grows while boxes are taken, refills in parallel up to a
bound, and shrinks back when the takes have left the window.

The boxes here are plain objects from a provider that counts its starts: the pool is the component under test,
and a container provider (tests/docker) would only make each start slower.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import pytest

from coderunner.backends.sandbox.pool import WarmPool

pytestmark = pytest.mark.timeout(60)


class _Provider:
    """Starts numbered boxes on demand; ``gate`` holds every start until it is set."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = 0
        self.running = 0
        self.most_at_once = 0
        self.discarded: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def start(self) -> int:
        with self.lock:
            self.started += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            n = self.started
        self.gate.wait(10)
        with self.lock:
            self.running -= 1
        return n

    def discard(self, box: int) -> None:
        with self.lock:
            self.discarded.append(box)


@pytest.fixture
def threads() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        yield pool


def _wait(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def _pool(provider: _Provider, threads: concurrent.futures.ThreadPoolExecutor, **options: object) -> WarmPool[int]:
    return WarmPool(
        1,
        start=provider.start,
        discard=provider.discard,
        submit=threads.submit,
        noun="box",
        **options,  # type: ignore[arg-type]
    )


def test_takes_raise_the_target_up_to_max_size(threads: concurrent.futures.ThreadPoolExecutor) -> None:
    provider = _Provider()
    pool = _pool(provider, threads, max_size=3)
    pool.fill()
    assert _wait(lambda: len(pool) == 1)
    for _ in range(5):
        pool.take(5)
    assert pool.target() == 3  # five taken in the window, clamped to max_size
    assert _wait(lambda: len(pool) == 3)
    pool.close()


def test_starts_under_way_never_exceed_max_starts(threads: concurrent.futures.ThreadPoolExecutor) -> None:
    provider = _Provider()
    pool = _pool(provider, threads, max_size=6, max_starts=2)
    provider.gate.clear()
    pool.fill()
    for _ in range(6):
        pool.take(0)  # nothing ready: each take only adds demand
    time.sleep(0.2)
    assert provider.running == 2
    provider.gate.set()
    assert _wait(lambda: len(pool) == 6)
    assert provider.most_at_once == 2  # refilled in parallel, two at a time
    pool.close()


def test_the_pool_shrinks_back_when_demand_has_left_the_window(threads: concurrent.futures.ThreadPoolExecutor) -> None:
    provider = _Provider()
    pool = _pool(provider, threads, max_size=4, window=0.5)
    pool.fill()
    for _ in range(4):
        pool.take(5)
    assert _wait(lambda: len(pool) == 4)
    # No takes for longer than the window: the timer brings the pool back to size, discarding the surplus.
    assert _wait(lambda: len(pool) == 1, timeout=5)
    assert _wait(lambda: len(provider.discarded) == 3)
    pool.close()


def test_without_a_pool_demand_starts_nothing(threads: concurrent.futures.ThreadPoolExecutor) -> None:
    provider = _Provider()
    pool = WarmPool(0, start=provider.start, discard=provider.discard, submit=threads.submit, noun="box", max_size=4)
    pool.fill()
    assert pool.take(0) is None
    time.sleep(0.1)
    assert provider.started == 0
