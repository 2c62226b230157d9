"""A second CodeRunner in a process that has one, to its first result, vs a new session from the first's warm pool."""

from __future__ import annotations

import os
import time

from _util import emit, summary, wait_for_pool

from coderunner import CodeRunner

N = int(os.environ.get("BENCH_N", "10"))


def second_runner() -> dict[str, float]:
    """Construct a runner, execute print(1) (its default session), all timed; then close it (timed apart)."""
    t0 = time.perf_counter()
    runner = CodeRunner()
    try:
        t1 = time.perf_counter()
        result = runner.execute("print(1)")
        t2 = time.perf_counter()
        assert result.stdout == "1\n", result
    finally:
        t3 = time.perf_counter()
        runner.close()
        t4 = time.perf_counter()
    return {
        "first_result": (t2 - t0) * 1000,
        "construct": (t1 - t0) * 1000,
        "execute": (t2 - t1) * 1000,
        "close": (t4 - t3) * 1000,
    }


def warm_session(first: CodeRunner) -> float:
    """The first runner's new session to its first result, with its pool full (steady state)."""
    wait_for_pool(first)
    t = time.perf_counter()
    session = first.session()
    try:
        result = session.execute("print(1)")
        elapsed = (time.perf_counter() - t) * 1000
        assert result.stdout == "1\n", result
    finally:
        session.close()
    return elapsed


if __name__ == "__main__":
    first = CodeRunner()
    seconds: list[dict[str, float]] = []
    warm: list[float] = []
    try:
        first.execute("print(1)")
        for _ in range(N):  # alternated, so both see the same background load
            warm.append(warm_session(first))
            wait_for_pool(first)  # the first runner is idle while the second starts
            seconds.append(second_runner())
    finally:
        first.close()
    second = summary([s["first_result"] for s in seconds])
    pooled = summary(warm)
    emit(
        "runner_start",
        {
            "second_runner_construct_to_first_result": second,
            "second_runner_phases_median_ms": {
                phase: summary([s[phase] for s in seconds])["median_ms"] for phase in ("construct", "execute", "close")
            },
            "baseline_first_runner_new_session_to_first_result_warm_pool": pooled,
            "pool_size": first.settings.pool_size,
            "ratio_second_runner_to_warm_session_median": round(second["median_ms"] / pooled["median_ms"], 1),
            "note": "'close' is the second runner's close(), not part of its first-result time",
        },
    )
