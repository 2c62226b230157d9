"""Twenty sessions asked for at once, to the last first result: one CodeRunner vs twenty raw jupyter_client kernels."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import statistics
import tempfile
import threading
import time
from typing import Any

from _util import emit, summary, wait_for_pool
from jupyter_client.manager import KernelManager

from coderunner import CodeRunner

SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


def burst(start_one: Any) -> tuple[float, list[float]]:
    """Run ``start_one`` on SESSIONS threads released together; (ms until the last is done, each one's ms)."""
    gate = threading.Barrier(SESSIONS + 1)

    def worker() -> float:
        gate.wait()
        t = time.perf_counter()
        start_one()
        return (time.perf_counter() - t) * 1000

    with concurrent.futures.ThreadPoolExecutor(SESSIONS, thread_name_prefix="bench-burst") as threads:
        futures = [threads.submit(worker) for _ in range(SESSIONS)]
        gate.wait()
        t = time.perf_counter()
        concurrent.futures.wait(futures)
        wall = (time.perf_counter() - t) * 1000
    return wall, [f.result() for f in futures]  # .result() re-raises a failed start


def coderunner_burst(**options: Any) -> tuple[float, list[float], int]:
    """One runner (default: the default warm pool, full); SESSIONS threads each open a session and print(1)."""
    runner = CodeRunner(**options)
    sessions: list[Any] = []
    lock = threading.Lock()

    def start_one() -> None:
        session = runner.session()
        with lock:
            sessions.append(session)
        result = session.execute("print(1)")
        assert result.stdout == "1\n", result

    try:
        runner.execute("pass")  # the engine is up; its first warm kernel was taken and is being replaced
        wait_for_pool(runner)
        wall, each = burst(start_one)
    finally:
        for session in sessions:
            session.close()
        runner.close()
    return wall, each, runner.settings.pool_size


def raw_burst() -> tuple[float, list[float]]:
    """SESSIONS KernelManagers (ipc transport, no history) started concurrently, each to its first execute result."""
    started: list[dict[str, Any]] = []
    lock = threading.Lock()

    def start_one() -> None:
        runtime = tempfile.mkdtemp(prefix="bench13-")
        km = KernelManager(
            transport="ipc", ip=os.path.join(runtime, "k"), connection_file=os.path.join(runtime, "k.json")
        )
        kernel: dict[str, Any] = {"km": km, "kc": None, "runtime": runtime}
        with lock:
            started.append(kernel)
        km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
        kc = kernel["kc"] = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive("print(1)", output_hook=lambda msg: None, timeout=60)
        assert reply["content"]["status"] == "ok", reply

    try:
        wall, each = burst(start_one)
    finally:
        for kernel in started:
            if kernel["kc"] is not None:
                kernel["kc"].stop_channels()
            if kernel["km"].has_kernel:
                kernel["km"].shutdown_kernel(now=True)
            shutil.rmtree(kernel["runtime"], ignore_errors=True)
    return wall, each


if __name__ == "__main__":
    raw_walls: list[float] = []
    ours_walls: list[float] = []
    nopool_walls: list[float] = []
    spawn_walls: list[float] = []
    raw_each: list[float] = []
    ours_each: list[float] = []
    pool_size = 0
    for _ in range(REPEATS):  # alternated, so all see the same background load
        wall, each = raw_burst()
        raw_walls.append(wall)
        raw_each += each
        wall, each, pool_size = coderunner_burst()
        ours_walls.append(wall)
        ours_each += each
        nopool_walls.append(coderunner_burst(pool_size=0)[0])
        spawn_walls.append(coderunner_burst(kernel_start="spawn")[0])
    raw_median, ours_median = statistics.median(raw_walls), statistics.median(ours_walls)
    emit(
        "session_burst",
        {
            "sessions": SESSIONS,
            "repeats": REPEATS,
            "baseline_raw_jupyter_client_burst_all_first_results": summary(raw_walls),
            "baseline_raw_jupyter_client_each_kernel_to_first_result": summary(raw_each),
            "coderunner_burst_all_first_results": summary(ours_walls),
            "coderunner_each_session_to_first_result": summary(ours_each),
            "coderunner_pool_size": pool_size,
            "ratio_coderunner_to_raw_median": round(ours_median / raw_median, 3),
            "coderunner_pool_size_0_burst_all_first_results": summary(nopool_walls),
            "ratio_coderunner_pool_size_0_to_raw_median": round(statistics.median(nopool_walls) / raw_median, 3),
            "coderunner_spawned_kernels_burst_all_first_results": summary(spawn_walls),
            "ratio_coderunner_spawned_kernels_to_raw_median": round(statistics.median(spawn_walls) / raw_median, 3),
            "note": "forked kernels unless said (kernel_start='spawn': a fresh interpreter each, the fallback); "
            "burst = from the release of all threads to the moment the last first result is in",
        },
    )
