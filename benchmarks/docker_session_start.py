"""New Docker session to first result (print(1)): warm pool, no pool, plain `docker run`, and llm-sandbox.

The no-pool start is measured twice, with the default size-capped /work (a loop-mounted ext4 per session) and
with ``disk_limit=None`` (a plain host directory): the difference is what the disk limit costs a cold start.

All on the same engine and the same image (the sandbox image the Docker backend builds). llm-sandbox runs
in its fastest mode (no environment setup), as root (its default), with the container kept alive by
`sleep infinity` since the image's own command is the coderunner server.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from _util import emit, summary

from coderunner import CodeRunner
from coderunner.backends.docker import ImageSpec, connect, ensure_image

N = int(os.environ.get("BENCH_N", "10"))


def docker_run(image: str) -> list[float]:
    out = []
    for _ in range(max(3, N // 2)):
        t = time.perf_counter()
        proc = subprocess.run(
            ["docker", "run", "--rm", "--pull", "never", "--network", "none", image, "python3", "-c", "print(1)"],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append((time.perf_counter() - t) * 1000)
        assert proc.stdout == "1\n", proc
    return out


def coderunner_start(image: str, pool_size: int, **options: Any) -> list[float]:
    out = []
    with CodeRunner(backend="docker", image=image, pool_size=pool_size, **options) as runner:
        runner.execute("pass")  # the first warm container is taken; the pool refills
        fleet: Any = runner.backend._fleet  # type: ignore[attr-defined]
        for _ in range(N if pool_size else max(3, N // 2)):
            if pool_size:
                # The steady state a long-running agent sees: the pool has had time to refill.
                deadline = time.monotonic() + 60
                while len(fleet._pool) < pool_size and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.5)  # and the previous session's container has been removed
            t = time.perf_counter()
            session = runner.session()
            result = session.execute("print(1)")
            out.append((time.perf_counter() - t) * 1000)
            assert result.stdout == "1\n", result
            session.close()
    return out


def session_disk(n: int = 20) -> list[float]:
    """Make, mount, unmount and delete one session disk (the part of a cold start the disk limit adds)."""
    import tempfile
    from pathlib import Path

    from coderunner.backends.docker.disk import SessionStorage

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            t = time.perf_counter()
            SessionStorage(Path(tmp) / str(i), disk_limit=2 * 1024**3, uid=1000, gid=1000).remove()
            out.append((time.perf_counter() - t) * 1000)
    return out


def llm_sandbox(image: str) -> tuple[list[float], list[float]] | str:
    try:
        from llm_sandbox import SandboxSession
    except ImportError:
        return "llm-sandbox is not installed (pip install llm-sandbox)"
    first, further = [], []
    for _ in range(max(3, N // 2)):
        t = time.perf_counter()
        with SandboxSession(
            lang="python",
            image=image,
            verbose=False,
            skip_environment_setup=True,
            runtime_configs={"user": "root", "command": ["sleep", "infinity"]},
        ) as session:
            result = session.run("print(1)")
            first.append((time.perf_counter() - t) * 1000)
            assert result.stdout.strip() == "1", result.stdout
            for _ in range(3):
                t = time.perf_counter()
                session.run("print(2)")
                further.append((time.perf_counter() - t) * 1000)
    return first, further


if __name__ == "__main__":
    client = connect()
    image = ensure_image(client, ImageSpec())
    client.close()
    raw = summary(docker_run(image))
    warm = summary(coderunner_start(image, pool_size=1))
    cold = summary(coderunner_start(image, pool_size=0))
    cold_uncapped = summary(coderunner_start(image, pool_size=0, disk_limit=None))
    llm = llm_sandbox(image)
    payload: dict[str, Any] = {
        "image": image,
        "baseline_docker_run_rm_python3_print": raw,
        "coderunner_docker_warm_pool": warm,
        "coderunner_docker_no_pool": cold,
        "coderunner_docker_no_pool_without_disk_limit": cold_uncapped,
        "disk_limit_cost_median_ms": round(cold["median_ms"] - cold_uncapped["median_ms"], 1),
        "session_disk_make_mount_unmount_2g": summary(session_disk()) if os.getuid() == 0 else "needs root",
    }
    if isinstance(llm, str):
        payload["llm_sandbox"] = llm
    else:
        payload["llm_sandbox_session_and_first_run"] = summary(llm[0])
        payload["llm_sandbox_further_run"] = summary(llm[1])
        payload["speedup_warm_pool_vs_llm_sandbox_median"] = round(
            payload["llm_sandbox_session_and_first_run"]["median_ms"] / warm["median_ms"], 1
        )
    payload["target"] = "warm pool >= 5x faster than llm-sandbox's session + first run"
    emit("docker_session_start", payload)
