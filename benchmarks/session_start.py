"""New session to first result (print(1)): CodeRunner with and without its warm pool vs raw jupyter_client."""

from __future__ import annotations

import os
import tempfile
import time

from _util import emit, summary
from jupyter_client.manager import KernelManager

from coderunner import CodeRunner

N = int(os.environ.get("BENCH_N", "15"))


def raw_start_and_execute() -> list[float]:
    out = []
    for _ in range(max(3, N // 3)):
        runtime = tempfile.mkdtemp(prefix="bench-")
        t = time.perf_counter()
        km = KernelManager(
            transport="ipc", ip=os.path.join(runtime, "k"), connection_file=os.path.join(runtime, "k.json")
        )
        km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("print(1)", output_hook=lambda msg: None, timeout=30)
        out.append((time.perf_counter() - t) * 1000)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return out


def coderunner_start(pool_size: int, language: str = "python") -> list[float]:
    code = {"python": "print(1)", "bash": "echo 1", "javascript": "console.log(1)"}[language]
    out = []
    with CodeRunner(pool_size=pool_size) as runner:
        runner.execute("pass")  # engine started, first pooled kernel consumed and being replaced
        for _ in range(N):
            if pool_size:
                # Measure the steady state a server sees: the pool has had time to refill.
                deadline = time.monotonic() + 30
                while runner.backend.stats()["pooled_kernels"] < pool_size and time.monotonic() < deadline:  # type: ignore[attr-defined]
                    time.sleep(0.01)
            t = time.perf_counter()
            session = runner.session(language)
            result = session.execute(code)
            out.append((time.perf_counter() - t) * 1000)
            assert result.stdout == "1\n", result
            session.close()
    return out


if __name__ == "__main__":
    raw = summary(raw_start_and_execute())
    pooled = summary(coderunner_start(pool_size=1))
    cold = summary(coderunner_start(pool_size=0))
    bash = summary(coderunner_start(pool_size=0, language="bash"))
    js = summary(coderunner_start(pool_size=0, language="javascript"))
    emit(
        "session_start",
        {
            "baseline_raw_jupyter_client_start_then_execute": raw,
            "coderunner_python_warm_pool": pooled,
            "coderunner_python_no_pool": cold,
            "coderunner_bash": bash,
            "coderunner_javascript": js,
            "speedup_warm_pool_vs_raw_median": round(raw["median_ms"] / pooled["median_ms"], 1),
            "target": "warm-pool median <= 50 ms",
            "note": "pooled figures wait for the pool to refill between sessions (steady state)",
        },
    )
