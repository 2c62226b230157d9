"""The warm pool keeps up with demand: it grows while sessions are taken quickly (up to pool_max), shrinks
back to pool_size once they are not, and never has more kernel starts under way than its bound.

The rule itself (:class:`~coderunner.engine.demand.PoolDemand`) is a pure function of the clock, tested
with explicit times; the engine is tested with real kernels, sampling its figures from a thread.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coderunner import CodeRunner, ConfigurationError
from coderunner.config import Settings
from coderunner.engine.demand import PoolDemand

pytestmark = pytest.mark.timeout(240)


# -- the rule ------------------------------------------------------------------------------------------


def test_the_target_is_the_recent_takes_between_min_and_max() -> None:
    demand = PoolDemand()
    assert demand.target(1, 4, now=100.0, window=30.0) == 1  # no demand: the floor
    for t in (100.0, 100.1, 100.2):
        demand.took(t)
    assert demand.recent(100.3, 30.0) == 3
    assert demand.target(1, 4, now=100.3, window=30.0) == 3
    for t in (101.0, 102.0, 103.0):
        demand.took(t)
    assert demand.target(1, 4, now=103.0, window=30.0) == 4  # six taken, bounded by the max
    assert demand.target(5, 4, now=103.0, window=30.0) == 5  # a max below the min counts as the min
    assert demand.target(0, 4, now=103.0, window=30.0) == 0  # pool_size=0 is the pool switched off


def test_the_target_falls_back_as_takes_leave_the_window() -> None:
    demand = PoolDemand()
    for t in (0.0, 1.0, 2.0):
        demand.took(t)
    assert demand.next_change(2.0, 10.0) == 8.0  # when the take at 0.0 leaves
    assert demand.target(1, 4, now=10.5, window=10.0) == 2
    assert demand.target(1, 4, now=12.0, window=10.0) == 1
    assert demand.next_change(12.0, 10.0) is None  # nothing recent: no change to wait for


def test_pool_max_is_a_setting_with_a_variable() -> None:
    assert Settings.from_env({"CODERUNNER_POOL_MAX": "7"}).pool_max == 7
    assert Settings.from_env({}).pool_max == 4
    with pytest.raises(ConfigurationError, match="pool_max"):
        Settings.from_env(pool_max=-1)


# -- the engine, with real kernels ---------------------------------------------------------------------


class _Sampler:
    """Reads a runner's stats every few milliseconds on a thread; keeps the largest value of each figure.

    Only for states that last: a bound broken by a start under way lasts a whole kernel start (hundreds of
    milliseconds), and a raised target the whole demand window, so either is seen many times over.
    """

    def __init__(self, runner: CodeRunner) -> None:
        self._backend: Any = runner.backend
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, value in self._backend.stats().items():
                self.peak[name] = max(value, self.peak.get(name, value))
            time.sleep(0.005)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.peak


def _eventually(check: Callable[[], bool], seconds: float = 90.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _engine_of(runner: CodeRunner) -> Any:
    return runner.backend.engine  # type: ignore[attr-defined]


def _stats(runner: CodeRunner) -> dict[str, int]:
    stats: dict[str, int] = runner.backend.stats()  # type: ignore[attr-defined]
    return stats


def _burst(runner: CodeRunner, n: int) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(n) as threads:
        return list(threads.map(lambda _: runner.session(), range(n)))


def test_a_burst_raises_the_target_up_to_pool_max_and_it_falls_back_to_pool_size(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=1, pool_max=2) as runner:
        engine = _engine_of(runner)
        engine.pool_starts = 1  # below what the target asks for, so the bound is what limits the starts
        # A short memory, so the test sees the target fall without waiting 30 s; long enough for the sampler
        # to see the raised target, however loaded the machine.
        engine.pool_window = 5.0
        assert _eventually(lambda: _stats(runner)["pooled_kernels"] == 1)
        sampler = _Sampler(runner)
        sessions = _burst(runner, 4)
        # Four sessions taken at once: the target rose to pool_max, never above, and the pool refilled one
        # start at a time; with no take since, the engine's own timer brought the target back to pool_size.
        assert _eventually(lambda: _stats(runner)["pool_target"] == 1 and _stats(runner)["pooled_kernels"] == 1)
        assert _eventually(lambda: _stats(runner)["pool_starting"] == 0)
        peak = sampler.stop()
        assert peak["pool_target"] == 2
        assert peak["pooled_kernels"] <= 2
        assert peak["pool_starting"] <= 1
        for session in sessions:
            assert session.execute("print(6 * 7)").stdout == "42\n"
            session.close()


def test_surplus_kernels_are_shut_down_once_demand_falls(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=1, pool_max=2) as runner:
        engine = _engine_of(runner)
        engine.pool_window = 600.0  # the burst stays recent until the pool has grown, however slow the machine
        sessions = _burst(runner, 4)
        assert _eventually(lambda: _stats(runner)["pooled_kernels"] == 2)
        assert _stats(runner)["pool_target"] == 2
        # Demand is now forgotten; the next look at the pool (here: a runner joining the engine) finds
        # the target back at pool_size and shuts the surplus kernel down.
        engine.pool_window = 0.001
        with CodeRunner(runtime_dir=str(tmp_path), pool_size=1) as joining:
            assert _engine_of(joining) is engine
            assert _eventually(lambda: _stats(runner)["pooled_kernels"] == 1)
            assert _stats(runner)["pool_target"] == 1
        for session in sessions:
            session.close()


def test_the_pool_refills_in_parallel_up_to_its_bound(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0) as runner:
        engine = _engine_of(runner)
        engine.pool_starts = 2  # whatever this machine's CPU count makes the default
        sampler = _Sampler(runner)
        # A runner asking for three warm kernels joins: two start at once, then the third.
        with CodeRunner(runtime_dir=str(tmp_path), pool_size=3, pool_max=3):
            assert _eventually(lambda: _stats(runner)["pooled_kernels"] == 3)
            assert _stats(runner)["pool_target"] == 3
        # It left: the pool follows the remaining runner's pool_size=0.
        assert _eventually(lambda: _stats(runner)["pooled_kernels"] == 0)
        assert sampler.stop()["pool_starting"] <= 2
