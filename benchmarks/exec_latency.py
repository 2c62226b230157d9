"""Hot execute round trip in a warm Python session: CodeRunner vs raw jupyter_client on the same kind of kernel."""

from __future__ import annotations

import os
import sys
import tempfile

from _util import emit, summary, timed
from jupyter_client.manager import KernelManager

from coderunner import AsyncCodeRunner, CodeRunner

N = int(os.environ.get("BENCH_N", "300"))
CODE = "x = 1"


def raw_jupyter() -> list[float]:
    runtime = tempfile.mkdtemp(prefix="bench-")
    km = KernelManager(transport="ipc", ip=os.path.join(runtime, "k"), connection_file=os.path.join(runtime, "k.json"))
    km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    try:
        return timed(lambda: kc.execute_interactive(CODE, output_hook=lambda msg: None, timeout=30), N)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def coderunner_sync() -> tuple[list[float], list[float]]:
    with CodeRunner(pool_size=0) as runner:
        runner.execute("pass")
        tracked = timed(lambda: runner.execute(CODE), N)
    with CodeRunner(pool_size=0, track_files=False) as runner:
        runner.execute("pass")
        untracked = timed(lambda: runner.execute(CODE), N)
    return tracked, untracked


def coderunner_async() -> list[float]:
    import asyncio
    import time

    async def main() -> list[float]:
        async with AsyncCodeRunner(pool_size=0) as runner:
            for _ in range(5):
                await runner.execute(CODE)
            out = []
            for _ in range(N):
                t = time.perf_counter()
                await runner.execute(CODE)
                out.append((time.perf_counter() - t) * 1000)
            return out

    return asyncio.run(main())


if __name__ == "__main__":
    raw = summary(raw_jupyter())
    tracked, untracked = coderunner_sync()
    sync, sync_nofiles = summary(tracked), summary(untracked)
    asy = summary(coderunner_async())
    emit(
        "exec_latency",
        {
            "code": CODE,
            "baseline_raw_jupyter_client_execute_interactive": raw,
            "coderunner_sync": sync,
            "coderunner_sync_track_files_off": sync_nofiles,
            "coderunner_async": asy,
            "ratio_sync_to_raw_median": round(sync["median_ms"] / raw["median_ms"], 3),
            "ratio_async_to_raw_median": round(asy["median_ms"] / raw["median_ms"], 3),
            "target": "coderunner median <= 1.2x raw",
        },
    )
    sys.exit(0)
