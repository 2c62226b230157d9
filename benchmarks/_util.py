"""Shared helpers for the benchmarks: timing loops and JSON summaries."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], object], n: int, warmup: int = 5) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``n`` times; return the durations in milliseconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90, p99, min and count of samples in milliseconds."""
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "min_ms": round(ordered[0], 3),
        "n": len(ordered),
    }


def emit(name: str, payload: dict[str, Any]) -> None:
    """Print one JSON document with the machine's description."""
    doc = {"benchmark": name, "python": platform.python_version(), "machine": platform.machine(), **payload}
    print(json.dumps(doc, indent=2))


def wait_for_pool(runner: Any, timeout: float = 60.0) -> bool:
    """Wait until the runner's warm pool is full again (the steady state a server sees); False on timeout.

    Understands the InProcess engine (``stats()["pooled_kernels"]``) and the Docker fleet (its pool deque);
    other backends have no pool to wait for.
    """
    target = runner.settings.pool_size
    backend = runner.backend
    fleet = getattr(backend, "_fleet", None)
    if fleet is None and not hasattr(backend, "stats"):
        return True

    def pooled() -> int:
        if fleet is not None:
            return len(fleet._pool)
        return int(backend.stats().get("pooled_kernels", target))

    deadline = time.monotonic() + timeout
    while pooled() < target:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
