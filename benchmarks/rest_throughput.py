"""Executions per second through ``coderunner serve`` with N concurrent clients, vs the library with N threads.

Each client owns one session and runs ``x = 1`` back to back for a fixed time; the figure is completed
executions per second across clients, with the latency each client saw. The same load is run in this
process on ``CodeRunner`` (one session per thread) as the baseline. Loopback only, bounded:
``BENCH_CLIENTS`` (default 4, at most 16) and ``BENCH_SECONDS`` (default 5, at most 30).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import httpx
from _server import live_server
from _server import nodelay_transport as _nodelay
from _util import emit, summary

from coderunner import CodeRunner

CLIENTS = min(int(os.environ.get("BENCH_CLIENTS", "4")), 16)
SECONDS = min(float(os.environ.get("BENCH_SECONDS", "5")), 30.0)
CODE = "x = 1"


def _load(workers: list[Callable[[], None]]) -> dict[str, object]:
    """Run every worker in its own thread for SECONDS; return throughput and latency figures."""
    latencies: list[list[float]] = [[] for _ in workers]
    start = threading.Barrier(len(workers) + 1)
    stop_at = 0.0

    def run(i: int) -> None:
        start.wait()
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            workers[i]()
            latencies[i].append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    stop_at = time.perf_counter() + SECONDS
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    done = sum(len(lat) for lat in latencies)
    return {
        "executions": done,
        "executions_per_s": round(done / elapsed, 1),
        "per_client": [len(lat) for lat in latencies],
        "latency": summary([x for lat in latencies for x in lat]),
    }


def in_library() -> dict[str, object]:
    with CodeRunner(pool_size=0, max_sessions=CLIENTS + 1) as runner:
        sessions = [runner.session() for _ in range(CLIENTS)]
        for s in sessions:
            s.execute(CODE)
        return _load([lambda s=s: s.execute(CODE) for s in sessions])  # type: ignore[misc]


def over_rest(url: str) -> dict[str, object]:
    clients = [httpx.Client(base_url=url, timeout=60, transport=_nodelay()) for _ in range(CLIENTS)]
    sids = [c.post("/sessions", json={}).json()["session_id"] for c in clients]

    def worker(client: httpx.Client, sid: str) -> Callable[[], None]:
        body = {"command": CODE, "session_id": sid}

        def call() -> None:
            response = client.post("/execute", json=body)
            assert response.status_code == 200, response.text

        return call

    try:
        for client, sid in zip(clients, sids, strict=True):
            worker(client, sid)()
        return _load([worker(c, s) for c, s in zip(clients, sids, strict=True)])
    finally:
        for client, sid in zip(clients, sids, strict=True):
            client.delete(f"/sessions/{sid}")
            client.close()


if __name__ == "__main__":
    library = in_library()
    with live_server() as url:
        rest = over_rest(url)
    emit(
        "rest_throughput",
        {
            "code": CODE,
            "clients": CLIENTS,
            "seconds": SECONDS,
            "cpu_count": os.cpu_count(),
            "baseline_in_library_threads": library,
            "rest_httpx_clients": rest,
            "rest_to_library_throughput_ratio": round(
                float(rest["executions_per_s"]) / float(library["executions_per_s"]),
                3,  # type: ignore[arg-type]
            ),
        },
    )
    sys.exit(0)
