"""Idle Python sessions: PSS of each kernel process tree in one CodeRunner vs one raw jupyter_client kernel."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from _util import emit, wait_for_pool
from jupyter_client.manager import KernelManager

from coderunner import CodeRunner

SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
SETTLE = float(os.environ.get("BENCH_SETTLE", "3"))  # seconds the kernels sit idle before they are measured
MIB = 1024 * 1024


def tree_memory(pid: int) -> dict[str, float]:
    """PSS, USS and RSS in MiB summed over ``pid`` and its descendants (from /proc/PID/smaps_rollup)."""
    root = psutil.Process(pid)
    totals = {"pss_mib": 0.0, "uss_mib": 0.0, "rss_mib": 0.0, "processes": 0}
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        totals["pss_mib"] += info.pss / MIB
        totals["uss_mib"] += info.uss / MIB
        totals["rss_mib"] += info.rss / MIB
        totals["processes"] += 1
    return {k: round(v, 2) for k, v in totals.items()}


def medians(trees: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(t[k] for t in trees), 2) for k in ("pss_mib", "uss_mib", "rss_mib", "processes")}


def raw_kernel() -> dict[str, float]:
    """One kernel started the plain jupyter_client way (ipc, no history), measured while it is our only kernel."""
    runtime = tempfile.mkdtemp(prefix="bench13-")
    km = KernelManager(transport="ipc", ip=os.path.join(runtime, "k"), connection_file=os.path.join(runtime, "k.json"))
    kc = None
    try:
        km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        kc.execute_interactive("pass", output_hook=lambda msg: None, timeout=60)
        time.sleep(SETTLE)
        pid = km.provisioner.process.pid  # type: ignore[union-attr]
        return tree_memory(pid)
    finally:
        if kc is not None:
            kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        shutil.rmtree(runtime, ignore_errors=True)


def coderunner_sessions(**options: Any) -> dict[str, Any]:
    """SESSIONS idle sessions of one runner (default options), each kernel found by its own pid and measured."""
    runner = CodeRunner(**options)
    sessions = []
    try:
        kernel_pids = []
        for _ in range(SESSIONS):
            session = runner.session()
            sessions.append(session)
            # Trivial work that starts and settles the kernel, and names it.
            kernel_pids.append(int(session.execute("import os; print(os.getpid())").stdout))
        wait_for_pool(runner)
        time.sleep(SETTLE)
        engine = runner.backend.engine  # type: ignore[attr-defined]
        registered = {int(p.name) for p in (engine.dir / "pids").iterdir()}
        assert set(kernel_pids) <= registered, (kernel_pids, registered)
        server = engine._forkserver.pid if engine._forkserver is not None else None
        pooled = sorted(registered - set(kernel_pids) - {server})
        trees = [tree_memory(pid) for pid in kernel_pids]
        pool_trees = [tree_memory(pid) for pid in pooled if psutil.pid_exists(pid)]
        # The fork server alone (not its children, the kernels): it holds the pages they share, counted, split,
        # in each kernel's PSS too.
        server_memory = None
        if server is not None:
            info = psutil.Process(server).memory_full_info()
            server_memory = {"pss_mib": round(info.pss / MIB, 2), "uss_mib": round(info.uss / MIB, 2)}
        host = psutil.Process().memory_full_info()
        return {
            "pool_size": runner.settings.pool_size,
            "sessions": len(trees),
            "per_session_median": medians(trees),
            "per_session_max_pss_mib": max(t["pss_mib"] for t in trees),
            "all_sessions_pss_mib": round(sum(t["pss_mib"] for t in trees), 2),
            "pooled_kernels_pss_mib": round(sum(t["pss_mib"] for t in pool_trees), 2),
            "fork_server": server_memory,
            "host_process_pss_mib": round(host.pss / MIB, 2),
            "engine_dir": str(Path(engine.dir).name),
        }
    finally:
        for session in sessions:
            session.close()
        runner.close()


if __name__ == "__main__":
    raw = raw_kernel()  # measured first and alone: a kernel beside 20 others would share its pages with them
    ours = coderunner_sessions()
    spawned = coderunner_sessions(kernel_start="spawn")
    emit(
        "idle_session_memory",
        {
            "settle_s": SETTLE,
            "baseline_one_raw_jupyter_client_kernel": raw,
            "coderunner": ours,
            "ratio_per_session_pss_to_raw": round(ours["per_session_median"]["pss_mib"] / raw["pss_mib"], 3),
            "ratio_per_session_uss_to_raw": round(ours["per_session_median"]["uss_mib"] / raw["uss_mib"], 3),
            "coderunner_spawned_kernels": spawned,
            "ratio_spawned_per_session_pss_to_raw": round(spawned["per_session_median"]["pss_mib"] / raw["pss_mib"], 3),
            "note": "PSS splits shared pages among the processes sharing them, so 20 kernels each count less of "
            "the interpreter's pages than one alone; USS (pages only that process has) does not depend on that",
        },
    )
