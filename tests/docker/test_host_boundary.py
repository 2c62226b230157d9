"""Sandboxed code against the host's side of the boundary: the agent's socket, its answers, the disk, state loss.

Each test is an attack or a bad day from inside a real container (issue: "the host follows the container's socket
path", "unbounded reads of agent answers", "host disk exhaustion", "silent state loss", "leaked containers").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from coderunner import CodeRunner, Session
from coderunner.errors import InvalidRequestError
from coderunner.specs import SessionSpec

pytestmark = pytest.mark.docker


@pytest.fixture
def session(docker_runner: CodeRunner) -> Iterator[Session]:
    with docker_runner.session() as s:
        yield s


def _box(runner: CodeRunner, session: Session) -> Any:
    return runner.backend._get(session.session_id).box  # type: ignore[attr-defined]


def _reconnect(runner: CodeRunner, session: Session) -> None:
    """Drop the host's kept-alive connections, so the next call connects to whatever the socket path holds now."""
    _box(runner, session).wire.close()


# A server of the sandboxed code's own, put on the agent's socket path after moving the real one aside.
_IMPOSTOR = textwrap.dedent(
    """
    import os, socket, subprocess, sys, textwrap
    server = textwrap.dedent('''
        import os, socket, sys
        path, mode = sys.argv[1], sys.argv[2]
        tmp = path + ".new"
        s = socket.socket(socket.AF_UNIX); s.bind(tmp); s.listen(8)
        os.rename(tmp, path)
        while True:
            c, _ = s.accept()
            c.recv(65536)
            if mode == "forge":
                body = b'{"status":"ok","stdout":"forged","stderr":"","exit_code":0,"language":"python"}'
                c.sendall(b"HTTP/1.1 200 OK\\\\r\\\\nContent-Type: application/json\\\\r\\\\nContent-Length: "
                          + str(len(body)).encode() + b"\\\\r\\\\n\\\\r\\\\n" + body)
            else:  # flood: claim a 1 GiB answer and stream zeros
                c.sendall(b"HTTP/1.1 200 OK\\\\r\\\\nContent-Type: application/json\\\\r\\\\n"
                          + (b"Content-Length: 1073741824\\\\r\\\\n" if mode == "flood" else
                             b"Transfer-Encoding: chunked\\\\r\\\\n") + b"\\\\r\\\\n")
                chunk = b"0" * (1 << 20)
                try:
                    for _ in range(1024):
                        c.sendall(chunk if mode == "flood" else b"100000\\\\r\\\\n" + chunk + b"\\\\r\\\\n")
                except OSError:
                    pass
            c.close()
    ''')
    os.rename("/run/coderunner/api.sock", "/run/coderunner/real.sock")
    subprocess.Popen([sys.executable, "-c", server, "/run/coderunner/api.sock", MODE], start_new_session=True)
    import time
    for _ in range(100):
        if os.path.exists("/run/coderunner/api.sock"):
            break
        time.sleep(0.05)
    print("impostor up")
    """
)


def test_a_symlink_on_the_socket_path_is_never_followed(docker_runner: CodeRunner, tmp_path: Path) -> None:
    # A host socket the sandbox points the path at: the host must never connect to it.
    canary_path = tmp_path / "canary.sock"
    canary = socket.socket(socket.AF_UNIX)
    canary.bind(str(canary_path))
    canary.listen(8)
    canary.settimeout(0.2)
    with docker_runner.session() as s:
        assert s.execute("x = 1").status == "ok"
        r = s.execute(
            f"import os\nos.rename('/run/coderunner/api.sock', '/run/coderunner/real.sock')\n"
            f"os.symlink({str(canary_path)!r}, '/run/coderunner/api.sock')\nprint('linked')"
        )
        assert r.stdout == "linked\n", r
        _reconnect(docker_runner, s)
        result = s.execute("print('after')")
        with pytest.raises(TimeoutError):
            canary.accept()  # nobody connected to the host's socket
        # The host refused the link, found the agent unreachable, and gave the session a fresh container: said so.
        assert result.stdout == "after\n"
        assert result.state_lost is True
        assert any("fresh container" in w for w in result.warnings), result.warnings
        assert s.execute("print('still fine')").stdout == "still fine\n"
    canary.close()


def test_a_server_of_the_sandbox_cannot_forge_results(docker_runner: CodeRunner, session: Session) -> None:
    old = _box(docker_runner, session).container_id
    assert session.execute(_IMPOSTOR.replace("MODE", "'forge'")).stdout == "impostor up\n"
    _reconnect(docker_runner, session)
    result = session.execute("print('real')")
    assert "forged" not in result.stdout
    assert result.error is not None and result.error.name == "InterpreterDied"
    assert "proof" in result.error.value and result.state_lost
    # The tampered container is gone and the session goes on in a fresh one.
    deadline = time.monotonic() + 60
    while _box(docker_runner, session).container_id == old and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session.execute("print('real')").stdout == "real\n"


@pytest.mark.parametrize("mode", ["flood", "chunked"])
def test_a_huge_forged_answer_is_not_read(docker_runner: CodeRunner, session: Session, mode: str) -> None:
    me = psutil.Process()
    assert session.execute(_IMPOSTOR.replace("MODE", repr(mode))).stdout == "impostor up\n"
    _reconnect(docker_runner, session)
    before = me.memory_info().rss
    result = session.execute("print('real')")
    grown = me.memory_info().rss - before
    assert result.error is not None and result.state_lost, result
    assert "forged" not in result.stdout
    # The host read at most its answer cap (64 MiB by default), never the 1 GiB.
    assert grown < 200 * 1024**2, f"the host grew by {grown / 1024**2:.0f} MiB"


def test_the_agent_key_cannot_be_read_from_inside(session: Session) -> None:
    r = session.execute(
        textwrap.dedent(
            """
            import os
            print(sorted(os.listdir('/run/coderunner')))
            agent = [p for p in os.listdir('/proc') if p.isdigit()
                     and b'sandbox-agent' in open(f'/proc/{p}/cmdline', 'rb').read()
                     and b'docker-init' not in open(f'/proc/{p}/cmdline', 'rb').read()]
            print(len(agent))
            for name in ('environ', 'mem', 'maps'):
                try:
                    open(f'/proc/{agent[0]}/{name}', 'rb').read(1)
                    print(name, 'readable')
                except OSError as exc:
                    print(name, type(exc).__name__)
            print('KEY' in ''.join(os.environ), [k for k in os.environ if 'AGENT' in k])
            """
        )
    )
    lines = r.stdout.splitlines()
    assert lines[0] == "['api.sock']", r  # the key file was taken and deleted before any user code ran
    assert lines[1] == "1"
    assert lines[2:5] == ["environ PermissionError", "mem PermissionError", "maps PermissionError"], r.stdout
    assert lines[5] == "False []"


def test_the_fork_servers_pipes_and_memory_cannot_be_reached_from_inside(session: Session) -> None:
    # The kernel's parent is the Python fork server: its pipes carry the engine's requests and its children's
    # exits, so code writing into them could have kernels forked or deaths reported that never happened.
    r = session.execute(
        textwrap.dedent(
            """
            import os
            server = os.getppid()
            print(b'forkserver_program' in open(f'/proc/{server}/cmdline', 'rb').read())
            tries = (('fd/0', os.O_WRONLY), ('fd/1', os.O_RDONLY), ('environ', os.O_RDONLY), ('mem', os.O_RDONLY))
            for name, flags in tries:
                try:
                    os.close(os.open(f'/proc/{server}/{name}', flags))
                    print(name, 'opened')
                except OSError as exc:
                    print(name, type(exc).__name__)
            print(open('/proc/self/status').read().count('VmHWM'))  # a kernel can still read its own figures
            """
        )
    )
    assert r.stdout.splitlines() == [
        "True",
        "fd/0 PermissionError",
        "fd/1 PermissionError",
        "environ PermissionError",
        "mem PermissionError",
        "1",
    ], r


def test_downloads_are_capped(sandbox_image: str) -> None:
    with CodeRunner(backend="docker", image=sandbox_image, max_download_bytes=2 * 1024**2, pool_size=0) as runner:
        runner.execute("open('big.bin', 'wb').write(b'x' * (3 * 1024 * 1024))\nopen('ok.bin', 'wb').write(b'y' * 10)")
        with pytest.raises(InvalidRequestError, match="max_download_bytes"):
            runner.download_file("big.bin")
        assert runner.download_file("ok.bin") == b"y" * 10
        assert runner.execute("print('alive')").stdout == "alive\n"


def test_work_has_a_size_limit_and_says_when_it_is_full(docker_runner: CodeRunner) -> None:
    with docker_runner.session(disk_limit="64m") as s:
        r = s.execute(
            "fallocate -l 3G /work/big.bin; echo rc=$?; df -B1M --output=size /work | tail -1", language="bash"
        )
        assert "rc=1" in r.stdout, r
        assert int(r.stdout.split()[-1]) <= 64
        full = s.execute("with open('fill.bin', 'wb') as f:\n    while True:\n        f.write(b'0' * (1 << 20))\n")
        assert full.error is not None and "No space left" in (full.error.value + full.error.traceback)
        assert any("disk limit reached" in w for w in full.warnings), full.warnings
        assert "disk limit reached" in full.error.value
        # The host's disk holds only what the session wrote (the image is sparse), and the session goes on.
        # (ext4 keeps what a failed fallocate could allocate: big.bin holds blocks too.)
        freed = s.execute("import os; os.remove('fill.bin'); os.remove('big.bin'); print('freed')")
        assert freed.stdout == "freed\n", freed
        assert s.execute("print(2)").warnings == []


def test_default_disk_limit_and_its_removal(docker_runner: CodeRunner, session: Session) -> None:
    box = _box(docker_runner, session)
    assert box.storage.mounted and box.storage.disk_limit == 2 * 1024**3
    image = box.storage.root / "disk.img"
    assert image.stat().st_blocks * 512 < 64 * 1024**2  # sparse
    mount_point = box.storage.root / "fs"
    assert os.path.ismount(mount_point)
    docker_runner.close_session(session.session_id)
    deadline = time.monotonic() + 30
    while (os.path.ismount(mount_point) or image.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.ismount(mount_point) and not image.exists()


def _idle_connection(runner: CodeRunner, session: Session) -> Any:
    """Open the connection the session's next call will use (the only idle one), and return it."""
    wire = _box(runner, session).wire
    wire.close()
    conn, _ = wire._connection()
    conn.connect()
    wire._idle.put(conn)
    return conn


def test_a_kept_alive_connection_that_drops_is_not_a_death(docker_runner: CodeRunner, session: Session) -> None:
    assert session.execute("x = 7").status == "ok"
    box = _box(docker_runner, session)
    # The connection goes away under the host (as after an error answer the agent closed it on): the next call
    # must reconnect to the same container and find its state, not replace the container.
    _idle_connection(docker_runner, session).sock.shutdown(socket.SHUT_RDWR)
    r = session.execute("print(x)")
    assert r.stdout == "7\n" and not r.state_lost, r
    assert _box(docker_runner, session).container_id == box.container_id


def test_a_connection_broken_mid_execution_runs_the_code_once(docker_runner: CodeRunner, session: Session) -> None:
    assert session.execute("x = 5").status == "ok"
    box = _box(docker_runner, session)
    conn = _idle_connection(docker_runner, session)

    def break_it() -> None:
        time.sleep(1.0)  # the code is running by now, the host waiting for its answer on this connection
        conn.sock.shutdown(socket.SHUT_RDWR)

    thread = threading.Thread(target=break_it)
    thread.start()
    r = session.execute("import time\ntime.sleep(3)\nopen('runs.txt', 'a').write('ran\\n')\nprint(x)")
    thread.join()
    # The host saw the connection break, found the container alive, sent the same request again, and the agent
    # answered it with the first run's result instead of running the code a second time.
    assert r.stdout == "5\n" and not r.state_lost, r
    assert session.execute("print(open('runs.txt').read().count('ran'))").stdout == "1\n"
    assert _box(docker_runner, session).container_id == box.container_id


def test_a_container_replaced_between_calls_is_reported(docker_runner: CodeRunner, docker_client: Any) -> None:
    with docker_runner.session() as s:
        assert s.execute("x = 3").status == "ok"
        s.write_file("keep.txt", "kept")
        docker_client.api.kill(_box(docker_runner, s).container_id)
        # A file call finds the container dead and replaces it...
        assert s.download_file("keep.txt") == b"kept"
        # ...and the next result says the state went with it, and why.
        r = s.execute("print('x' in dir())")
        assert r.stdout == "False\n"
        assert r.state_lost is True
        assert any("fresh container" in w for w in r.warnings), r.warnings
        assert not s.execute("print(1)").state_lost


def test_bad_lifetimes_are_refused_before_a_container_is_taken(
    docker_runner: CodeRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Watch the two ways a session gets a container (from the pool, or a start of its own) rather than
    # count containers: the warm pool starts and discards its own as demand moves, at any moment.
    fleet = docker_runner.backend._fleet  # type: ignore[attr-defined]
    taken: list[str] = []

    def refuse(way: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            taken.append(way)
            raise AssertionError(f"a container was taken ({way}) for a session that had to be refused")

        return call

    monkeypatch.setattr(fleet, "take", refuse("take"))
    monkeypatch.setattr(fleet, "start_session_box", refuse("start_session_box"))
    for bad in ({"lifetime": 1e12}, {"idle_timeout": 1e12}, {"lifetime": -1}, {"lifetime": float("nan")}):
        with pytest.raises(InvalidRequestError, match=r"30 days|more than 0"):
            docker_runner.backend.create_session(SessionSpec("python", **bad))  # type: ignore[attr-defined]
    assert taken == []


def test_an_orphans_session_disk_is_unmounted_at_the_next_start(sandbox_image: str, tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    script = textwrap.dedent(
        f"""
        import os, sys
        from coderunner import CodeRunner
        r = CodeRunner(backend="docker", image={sandbox_image!r}, runtime_dir={str(runtime)!r}, pool_size=0)
        r.execute("print(1)")
        print("ready", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines() if str(runtime) in line]
    assert mounts, "the session's disk should be mounted under the runtime dir"
    proc.kill()
    proc.wait()
    with CodeRunner(backend="docker", image=sandbox_image, runtime_dir=str(runtime), pool_size=0) as fresh:
        assert fresh.execute("print(2)").stdout == "2\n"
        left = [p for p in mounts if p in Path("/proc/self/mounts").read_text()]
        assert left == []
