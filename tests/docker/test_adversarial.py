"""Hostile code: each test proves the container held, the host did not notice, and the session carries on."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from coderunner import CodeRunner, Session
from coderunner.specs import SessionSpec

pytestmark = pytest.mark.docker


@pytest.fixture
def session(docker_runner: CodeRunner) -> Iterator[Session]:
    with docker_runner.session() as s:
        yield s


def _host_is_fine() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0


def test_fork_bomb_stops_at_the_pids_limit(session: Session) -> None:
    code = (
        "import os, signal, time\n"
        "children = []\n"
        "try:\n"
        "    while True:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(120)\n"
        "            os._exit(0)\n"
        "        children.append(pid)\n"
        "except OSError as exc:\n"
        "    print('stopped after', len(children), exc.strerror)\n"
        "for pid in children:\n"
        "    os.kill(pid, signal.SIGKILL)\n"
        "    os.waitpid(pid, 0)\n"
    )
    result = session.execute(code, timeout=60)
    assert result.status == "ok", result
    words = result.stdout.split()
    assert words[:2] == ["stopped", "after"] and 0 < int(words[2]) < 256, result.stdout
    _host_is_fine()
    assert session.execute("print('still here')").stdout == "still here\n"


def test_classic_bash_fork_bomb_is_contained(docker_runner: CodeRunner, docker_client: Any) -> None:
    info = docker_runner.backend.create_session(SessionSpec("bash", options={"pids_limit": 128}))
    container_id = docker_runner.backend.container_id(info.session_id)
    try:
        result = docker_runner.execute(":(){ :|:& };:", "bash", timeout=5, session_id=info.session_id)
        time.sleep(2)  # let it fill the container's pids quota
        stats = docker_client.api.inspect_container(container_id)
        assert stats["State"]["Running"], (result, stats["State"], docker_client.api.logs(container_id)[-4000:])
        _host_is_fine()
    finally:
        docker_runner.backend.close_session(info.session_id)
    deadline = time.monotonic() + 30  # removal runs in the background
    while docker_client.api.containers(all=True, filters={"id": container_id}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not docker_client.api.containers(all=True, filters={"id": container_id})
    with docker_runner.session() as fresh:
        assert fresh.execute("print('ok')").stdout == "ok\n"


def test_memory_bomb_is_an_interpreter_death_and_the_session_goes_on(docker_runner: CodeRunner) -> None:
    info = docker_runner.backend.create_session(SessionSpec(options={"memory": "300m"}))
    sid = info.session_id
    try:
        docker_runner.execute("kept = 1", session_id=sid)
        result = docker_runner.execute("hog = b'x' * (2 * 1024**3)", session_id=sid, timeout=120)
        assert result.status == "error"
        assert result.state_lost is True
        assert result.error is not None and result.error.name == "InterpreterDied"
        assert "memory" in result.error.value
        after = docker_runner.execute("print('alive')", session_id=sid)
        assert after.stdout == "alive\n"
        assert docker_runner.execute("kept", session_id=sid).status == "error"  # the state really went
        _host_is_fine()
    finally:
        docker_runner.backend.close_session(sid)


def test_no_network_and_no_host_loopback(session: Session) -> None:
    # A server on the HOST's loopback: the container has its own loopback, so it cannot reach it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted: list[Any] = []
    listener.settimeout(5)
    thread = threading.Thread(target=lambda: accepted.append(_accept(listener)))
    thread.start()
    try:
        code = (
            "import json, socket\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n    host = 'connected'\n"
            "except OSError as exc:\n    host = type(exc).__name__\n"
            "routes = open('/proc/net/route').read().splitlines()[1:]\n"
            "print(json.dumps({'host': host, 'routes': routes, 'interfaces': [n for _, n in socket.if_nameindex()]}))"
        )
        result = session.execute(code, timeout=30)
        seen = json.loads(result.stdout)
        assert seen["host"] == "ConnectionRefusedError"
        assert seen["routes"] == []  # no route to anywhere: nothing can leave the container
        assert seen["interfaces"] == ["lo"]
    finally:
        thread.join()
        listener.close()
    assert accepted == [None]


def _accept(listener: socket.socket) -> None:
    try:
        conn, _ = listener.accept()
    except OSError:
        return None
    conn.close()
    raise AssertionError("the container reached the host's loopback")


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "open('/etc/passwd', 'a').write('evil')"),
        ("python", "open('/usr/lib/evil.py', 'w').write('x')"),
        ("bash", "echo evil > /opt/evil"),
        ("bash", "mkdir /evil"),
    ],
)
def test_writes_outside_the_work_dir_fail(session: Session, language: str, code: str) -> None:
    result = session.execute(code, language)
    assert result.status == "error"
    text = result.stderr + (result.error.value if result.error else "")
    assert "Read-only file system" in text or "Permission denied" in text, result


def test_100_mb_output_flood_is_capped(session: Session, docker_runner: CodeRunner) -> None:
    started = time.monotonic()
    result = session.execute("head -c 100000000 /dev/zero | tr '\\0' 'y'", "bash", timeout=120)
    assert result.truncated is True
    assert len(result.stdout) < docker_runner.settings.max_output_chars + 500
    assert result.stdout_file is not None
    folder = result.stdout_file.rpartition("/")[0]
    sizes = {f.path: f.size for f in session.list_files(folder)}
    assert sizes[result.stdout_file] == 100_000_000
    assert time.monotonic() - started < 90
    assert session.execute("print('fine')").stdout == "fine\n"
    _host_is_fine()


def test_kill_pid_1_inside_does_nothing(session: Session, docker_runner: CodeRunner, docker_client: Any) -> None:
    session.execute("kept = 'yes'")
    result = session.execute("kill -9 1; echo status $?", "bash")
    assert result.stdout.startswith("status")
    assert session.execute("print(kept)").stdout == "yes\n"
    container_id = docker_runner.backend.container_id(session.session_id)
    assert docker_client.api.inspect_container(container_id)["State"]["Running"]


def test_killing_everything_inside_replaces_the_container(docker_runner: CodeRunner, docker_client: Any) -> None:
    # `kill -9 -1` kills every process of the sandbox user, the in-container server included: the
    # container stops, the result says so, and the session continues in a fresh container with its files.
    with docker_runner.session() as s:
        s.write_file("keep.txt", "still here")
        before = docker_runner.backend.container_id(s.session_id)
        result = s.execute("kill -9 -1", "bash", timeout=30)
        assert result.status == "error" and result.state_lost is True
        assert result.error is not None and result.error.name == "InterpreterDied"
        assert s.execute("print(open('keep.txt').read())").stdout == "still here\n"
        assert docker_runner.backend.container_id(s.session_id) != before
    _host_is_fine()
