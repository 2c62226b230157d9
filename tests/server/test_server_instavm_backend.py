"""coderunner's own InstaVM backend (``backend="instavm"``, ``coderunner.cloud``) against a live server."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from coderunner import (
    AsyncCodeRunner,
    AuthenticationError,
    BackendUnavailableError,
    CodeRunner,
    FileNotFoundInSessionError,
    PathError,
    SessionNotFoundError,
)
from coderunner.backend import AsyncBackend, Backend, create_backend
from coderunner.cloud import AsyncInstaVM, InstaVM

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import LiveServer


@pytest.fixture(scope="module")
def runner(keyed_server: LiveServer) -> Iterator[CodeRunner]:
    with CodeRunner(backend="instavm", base_url=keyed_server.base_url, api_key=keyed_server.api_key) as r:
        yield r


def test_backend_satisfies_both_protocols(keyed_server: LiveServer) -> None:
    sync = create_backend("instavm", base_url=keyed_server.base_url, api_key=keyed_server.api_key)
    assert isinstance(sync, Backend)
    sync.close()
    from coderunner.backends.instavm import factory
    from coderunner.config import Settings

    assert isinstance(factory(Settings(), asynchronous=True, base_url=keyed_server.base_url, api_key="k"), AsyncBackend)


def test_execute_state_errors_and_rich_fields(runner: CodeRunner) -> None:
    runner.execute("x = 41")
    result = runner.execute("print(x + 1)\nx")
    assert result.stdout == "42\n" and result.status == "ok"
    assert result.text == "41"
    assert result["output"] == "42\n"
    assert result.cpu_time is not None and result.peak_memory_bytes
    error = runner.execute("1/0")
    assert error.status == "error" and error.error is not None and error.error.name == "ZeroDivisionError"
    slow = runner.execute("import time\ntime.sleep(20)", timeout=1)
    assert slow.status == "timeout" and slow.exit_code == 124
    assert runner.execute("print(x)").stdout == "41\n"


def test_bash(runner: CodeRunner, require_bash: None) -> None:
    result = runner.execute("echo $((2 + 3)); exit 3", language="bash")
    assert (result.stdout, result.exit_code, result.language) == ("5\n", 3, "bash")


def test_files(runner: CodeRunner, tmp_path: Path) -> None:
    info = runner.write_file("data/in.txt", "hello")
    assert (info.path, info.size) == ("data/in.txt", 5)
    assert runner.download_file("data/in.txt") == b"hello"
    made = runner.execute("open('data/out.bin', 'wb').write(bytes(range(256)))")
    assert made.files_created == ["data/out.bin"]
    assert runner.download_file("data/out.bin") == bytes(range(256))
    assert [f.path for f in runner.list_files("data")] == ["data/in.txt", "data/out.bin"]
    local = tmp_path / "local.txt"
    local.write_text("from disk")
    assert runner.upload_file(local).path == "local.txt"
    with pytest.raises(FileNotFoundInSessionError):
        runner.download_file("missing.txt")
    with pytest.raises(PathError):
        runner.download_file("../../etc/passwd")


def test_tasks_and_cancel(runner: CodeRunner) -> None:
    task = runner.execute_async("print('bg')")
    assert runner.get_task_result(task, timeout=30).stdout == "bg\n"
    session = runner.session()
    try:
        loop = session.execute_async("while True:\n    pass")
        deadline = time.monotonic() + 10
        while runner.get_task(loop).status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)  # let the request reach the kernel
        runner.cancel_task(loop)
        result = runner.get_task_result(loop, timeout=15)
        assert result.status == "cancelled"
        assert session.execute("print('alive')").stdout == "alive\n"
    finally:
        session.close()


def test_sessions_lifecycle(keyed_server: LiveServer) -> None:
    runner = CodeRunner(backend="instavm", base_url=keyed_server.base_url, api_key=keyed_server.api_key)
    session = runner.session(metadata={"who": "test"})
    assert session.is_active()
    assert session.info().metadata == {"who": "test"}
    assert session.session_id in [s.session_id for s in runner.list_sessions()]
    session.close()
    assert not runner.is_session_active(session.session_id)
    with pytest.raises(SessionNotFoundError):
        runner.backend.get_session(session.session_id)
    runner.execute("print(1)")
    default = runner.session_id
    assert default is not None
    runner.close()  # closes the sessions the backend created on the server
    with keyed_server.client() as http:
        assert http.get(f"/v1/sessions/status/{default}").json()["vm_status"] == "closed"


def test_cloud_is_a_one_line_migration(keyed_server: LiveServer) -> None:
    with InstaVM(api_key=keyed_server.api_key, base_url=keyed_server.base_url) as vm:
        result = vm.execute("print(6 * 7)")
        assert result["stdout"] == "42\n"
        assert vm.is_session_active()


async def test_async_cloud_client(keyed_server: LiveServer) -> None:
    async with AsyncInstaVM(api_key=keyed_server.api_key, base_url=keyed_server.base_url) as vm:
        assert (await vm.execute("print('async')")).stdout == "async\n"
        task = await vm.execute_async("print('task')")
        assert (await vm.get_task_result(task, timeout=30)).stdout == "task\n"
        await vm.write_file("a.txt", "A")
        assert await vm.download_file("a.txt") == b"A"
    async with AsyncCodeRunner(backend="instavm", base_url=keyed_server.base_url, api_key=keyed_server.api_key) as r:
        assert (await r.execute("print(2)")).stdout == "2\n"


def test_wrong_key_names_the_variable(keyed_server: LiveServer) -> None:
    runner = CodeRunner(backend="instavm", base_url=keyed_server.base_url, api_key="wrong")
    with pytest.raises(AuthenticationError, match="INSTAVM_API_KEY"):
        runner.execute("print(1)")
    runner.close()


def test_missing_key_for_a_remote_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSTAVM_API_KEY", raising=False)
    monkeypatch.delenv("INSTAVM_BASE_URL", raising=False)
    with pytest.raises(AuthenticationError, match="INSTAVM_API_KEY"):
        CodeRunner(backend="instavm")  # refused before any request is sent


def test_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a loopback port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    runner = CodeRunner(backend="instavm", base_url=f"http://127.0.0.1:{port}", max_retries=1)
    with pytest.raises(BackendUnavailableError, match="Cannot reach"):
        runner.execute("print(1)")
    runner.close()


def test_keyless_local_server_needs_no_key(open_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSTAVM_API_KEY", raising=False)
    monkeypatch.setenv("INSTAVM_BASE_URL", open_server.base_url)
    with CodeRunner(backend="instavm") as runner:
        assert runner.execute("print('env base url')").stdout == "env base url\n"


def test_output_is_streamed_to_callbacks(runner: CodeRunner) -> None:
    chunks: list[str] = []
    errors: list[str] = []
    code = "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
    result = runner.execute(code + "print('e', file=sys.stderr)", on_stdout=chunks.append, on_stderr=errors.append)
    assert "".join(chunks) == result.stdout == "0\n1\n2\n"
    assert len(chunks) >= 2  # as it came, not once at the end
    assert "".join(errors) == "e\n"
