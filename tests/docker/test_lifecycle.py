"""Containers come and go with sessions: pool, close, expiry, death, crashed runners, and clear engine errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from coderunner import BackendUnavailableError, CodeRunner, MissingDependencyError, SessionNotFoundError
from coderunner.specs import ExecRequest, SessionSpec

pytestmark = pytest.mark.docker


def _containers(client: Any, runner_id: str) -> list[Any]:
    from coderunner.backends.docker import LABEL_RUNNER

    return list(client.api.containers(all=True, filters={"label": f"{LABEL_RUNNER}={runner_id}"}))


def test_close_removes_every_container(sandbox_image: str, docker_client: Any) -> None:
    runner = CodeRunner(backend="docker", image=sandbox_image, pool_size=1)
    runner_id = runner.backend._fleet.runner_id  # type: ignore[attr-defined]
    runner.execute("print(1)")
    with runner.session("bash") as s:
        assert s.execute("echo 2").stdout == "2\n"
    assert _containers(docker_client, runner_id)
    runner.close()  # waits for the removals
    assert _containers(docker_client, runner_id) == []


def test_a_new_session_is_served_by_the_warm_container(sandbox_image: str) -> None:
    # What the pool buys is that a session's container was started before the session was asked for; how fast
    # that is lives in benchmarks/docker_session_start.py, not in a timed assertion here.
    with CodeRunner(backend="docker", image=sandbox_image, pool_size=1) as runner:
        runner.execute("print('warm up')")  # joins the first warm container
        pool = runner.backend._fleet._pool  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while len(pool) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # the refill runs in the background
        assert len(pool) == 1, "the pool never refilled"
        warm_id = pool._boxes[0].container_id
        with runner.session() as s:
            assert s.execute("print('fast')").stdout == "fast\n"
            assert runner.backend.container_id(s.session_id) == warm_id  # type: ignore[attr-defined]


def test_idle_sessions_expire_and_their_container_goes(sandbox_image: str, docker_client: Any) -> None:
    with CodeRunner(backend="docker", image=sandbox_image, pool_size=0) as runner:
        info = runner.backend.create_session(SessionSpec(idle_timeout=1))
        container_id = runner.backend.container_id(info.session_id)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and runner.is_session_active(info.session_id):
            time.sleep(0.2)
        with pytest.raises(SessionNotFoundError, match="idle"):
            runner.backend.execute(info.session_id, ExecRequest("print(1)"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and docker_client.api.containers(all=True, filters={"id": container_id}):
            time.sleep(0.2)
        assert not docker_client.api.containers(all=True, filters={"id": container_id})


def test_container_removed_behind_our_back_is_replaced(docker_runner: CodeRunner, docker_client: Any) -> None:
    with docker_runner.session() as s:
        s.execute("x = 1")
        s.write_file("data.txt", "kept")
        docker_client.api.remove_container(docker_runner.backend.container_id(s.session_id), force=True)  # type: ignore[attr-defined]
        result = s.execute("print(open('data.txt').read())")
        assert result.stdout == "kept\n"
        assert result.state_lost is True and result.warnings
        assert s.execute("print('again')").stdout == "again\n"


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from coderunner import CodeRunner
    runner = CodeRunner(backend="docker", image=sys.argv[1], pool_size=1)
    runner.execute("print(1)")
    print(runner.backend._fleet.runner_id, flush=True)
    time.sleep(600)
    """
)


def test_orphans_of_a_killed_runner_are_removed_by_the_next_one(sandbox_image: str, docker_client: Any) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, sandbox_image], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        runner_id = proc.stdout.readline().strip()
        assert runner_id, "the runner process did not start"
        deadline = time.monotonic() + 30
        while len(_containers(docker_client, runner_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # its session and its warm pool container
        assert len(_containers(docker_client, runner_id)) >= 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no atexit, no finalizers: a crash
        proc.wait()
    assert _containers(docker_client, runner_id)  # left behind
    with CodeRunner(backend="docker", image=sandbox_image, pool_size=0):
        assert _containers(docker_client, runner_id) == []


def test_missing_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(BackendUnavailableError, match=r"(?s)No Docker engine answers.*docker-engine\.sh"):
        CodeRunner(backend="docker")


def test_missing_docker_package_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['docker'] = None\n"
        "from coderunner import CodeRunner, MissingDependencyError\n"
        "try:\n    CodeRunner(backend='docker')\nexcept MissingDependencyError as exc:\n    print(exc.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'coderunner-sandbox[docker]'" in out.stdout, out.stderr
    assert MissingDependencyError  # the class the message comes from


def test_async_backend(sandbox_image: str) -> None:
    import asyncio

    from coderunner import AsyncCodeRunner

    async def main() -> None:
        async with AsyncCodeRunner(backend="docker", image=sandbox_image, pool_size=0) as runner:
            assert (await runner.execute("print(6 * 7)")).stdout == "42\n"
            session = await runner.session("javascript")
            assert (await session.execute("console.log(2 ** 10)")).stdout == "1024\n"
            await session.close()

    asyncio.run(main())
