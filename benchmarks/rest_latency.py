"""Hot execute over REST vs in the library: what the HTTP layer adds to one warm Python execution.

Prints JSON with the median and tail of ``x = 1`` executed (a) by ``CodeRunner`` in this process,
(b) by raw HTTP ``POST /execute`` to a local ``coderunner serve``, (c) by coderunner's own InstaVM
backend and (d) by the unmodified ``instavm`` SDK (dev extra) against the same server. Budget: REST adds at most
3 ms to the median. Loopback only. ``BENCH_N`` sets the number of samples (default 300).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import httpx
from _server import live_server
from _server import nodelay_transport as _nodelay
from _util import emit, summary

from coderunner import CodeRunner

N = int(os.environ.get("BENCH_N", "300"))
WARMUP = 10
CODE = "x = 1"
BUDGET_MS = 3.0


def _sample(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def measure(url: str) -> dict[str, list[float]]:
    """Sample every way round-robin, so all of them see the same machine load."""
    from instavm import InstaVM

    with (
        CodeRunner(pool_size=0) as library,
        CodeRunner(backend="instavm", base_url=url) as backend,
        httpx.Client(base_url=url, timeout=60, transport=_nodelay()) as http,
    ):
        sid = http.post("/sessions", json={}).json()["session_id"]
        body = {"command": CODE, "session_id": sid}

        def raw() -> None:
            response = http.post("/execute", json=body)
            assert response.status_code == 200 and response.json()["status"] == "ok", response.text

        sdk = InstaVM(api_key="bench", base_url=url)
        ways: dict[str, Callable[[], object]] = {
            "library": lambda: library.execute(CODE),
            "raw_http": raw,
            "instavm_backend": lambda: backend.execute(CODE),
            "instavm_sdk": lambda: sdk.execute(CODE),
        }
        samples: dict[str, list[float]] = {name: [] for name in ways}
        try:
            for _ in range(WARMUP):
                for fn in ways.values():
                    fn()
            for _ in range(N):
                for name, fn in ways.items():
                    samples[name].append(_sample(fn))
        finally:
            sdk.kill()
            http.delete(f"/sessions/{sid}")
        return samples


if __name__ == "__main__":
    with live_server() as url:
        samples = measure(url)
    figures = {name: summary(values) for name, values in samples.items()}
    library = figures["library"]["median_ms"]
    added = round(figures["raw_http"]["median_ms"] - library, 3)
    emit(
        "rest_latency",
        {
            "code": CODE,
            "method": "the four ways are sampled round-robin in one loop, so each sees the same load",
            "baseline_in_library_CodeRunner": figures["library"],
            "rest_raw_httpx_post_execute": figures["raw_http"],
            "rest_coderunner_instavm_backend": figures["instavm_backend"],
            "rest_instavm_sdk_0_26_1": figures["instavm_sdk"],
            "rest_added_median_ms": added,
            "instavm_backend_added_median_ms": round(figures["instavm_backend"]["median_ms"] - library, 3),
            "instavm_sdk_added_median_ms": round(figures["instavm_sdk"]["median_ms"] - library, 3),
            "budget_added_median_ms": BUDGET_MS,
            "within_budget": added <= BUDGET_MS,
        },
    )
    sys.exit(0)
