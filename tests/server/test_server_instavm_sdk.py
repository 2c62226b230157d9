"""The unmodified ``instavm`` SDK (0.26.1) and its CLI against a live ``coderunner serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

instavm = pytest.importorskip("instavm", reason="the instavm SDK is in the dev extra")
from instavm import InstaVM  # noqa: E402
from instavm.exceptions import AuthenticationError as SDKAuthenticationError  # noqa: E402
from instavm.exceptions import InstaVMError  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import LiveServer


@pytest.fixture(scope="module")
def cloud(keyed_server: LiveServer) -> Iterator[InstaVM]:
    # A trailing slash in base_url makes the SDK send '//execute': the server must cope.
    client = InstaVM(api_key=keyed_server.api_key, base_url=keyed_server.base_url + "/")
    yield client
    if client.session_id:
        client.kill()


def test_cloud_session_execute_keeps_state(cloud: InstaVM) -> None:
    assert cloud.session_id
    assert cloud.execute("x = 41")["exit_code"] == 0
    out = cloud.execute("print(x + 1)")
    assert out["stdout"] == "42\n"
    assert out["output"] == "42\n"
    assert out["stderr"] == ""
    assert out["status"] == "ok"
    assert out["session_id"] == cloud.session_id
    assert isinstance(out["execution_time"], float)
    assert out["cpu_time"] is not None


def test_cloud_execute_reports_user_errors_as_data(cloud: InstaVM) -> None:
    out = cloud.execute("1/0")
    assert out["status"] == "error"
    assert out["exit_code"] == 1
    assert out["error"]["name"] == "ZeroDivisionError"
    assert "\x1b[" not in out["error"]["traceback"]


def test_cloud_execute_rich_output_and_files(cloud: InstaVM) -> None:
    out = cloud.execute("open('made.txt', 'w').write('x')\n{'a': 1}")
    assert out["files_created"] == ["made.txt"]
    assert out["outputs"][0]["type"] == "execute_result"
    assert out["outputs"][0]["data"]["text/plain"] == "{'a': 1}"


def test_cloud_bash(cloud: InstaVM, require_bash: None) -> None:
    out = cloud.execute("echo $((6 * 7)); echo oops >&2; false", language="bash")
    assert out["stdout"] == "42\n"
    assert out["stderr"] == "oops\n"
    assert out["exit_code"] == 1
    assert out["language"] == "bash"


def test_cloud_timeout_answers_before_the_client_gives_up(cloud: InstaVM) -> None:
    started = time.monotonic()
    out = cloud.execute("import time\ntime.sleep(30)", timeout=2)
    assert time.monotonic() - started < 2.0
    assert out["status"] == "timeout"
    assert out["exit_code"] == 124
    assert out["error"]["name"] == "Timeout"
    # Interrupted, not destroyed: the session still works and kept its state.
    assert cloud.execute("print(x)")["stdout"] == "41\n"


def test_cloud_timeout_when_the_code_ignores_the_interrupt(keyed_server: LiveServer) -> None:
    client = InstaVM(api_key=keyed_server.api_key, base_url=keyed_server.base_url)
    try:
        started = time.monotonic()
        code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(30)"
        out = client.execute(code, timeout=2)
        assert time.monotonic() - started < 2.0
        assert out["status"] == "timeout"
        assert out["state_lost"] is True
    finally:
        client.kill()


def test_cloud_upload_and_download(cloud: InstaVM, tmp_path: Path) -> None:
    local = tmp_path / "deep" / "report.csv"
    local.parent.mkdir()
    local.write_bytes(b"a,b\n1,2\n")
    # The multipart filename is the full local path: only its basename is kept.
    up = cloud.upload_file(str(local), "inbox/")
    assert up["path"] == "inbox/report.csv"
    assert up["size"] == 8
    assert cloud.execute("print(open('inbox/report.csv').read(), end='')")["stdout"] == "a,b\n1,2\n"
    # remote_path naming a file is used as is.
    cloud.upload_file(str(local), "renamed.csv")
    got = cloud.download_file("renamed.csv")
    assert got["content"] == b"a,b\n1,2\n"
    saved = tmp_path / "back.csv"
    cloud.download_file("inbox/report.csv", local_path=str(saved))
    assert saved.read_bytes() == b"a,b\n1,2\n"


def test_cloud_execute_async_and_task_result(cloud: InstaVM) -> None:
    task = cloud.execute_async("import time\ntime.sleep(0.3)\nprint('async done')")
    assert task["task_id"]
    result = cloud.get_task_result(task["task_id"], poll_interval=1, timeout=30)
    assert result["stdout"] == "async done\n"
    assert result["stderr"] == ""
    assert result["execution_time"] >= 0.3
    assert result["created_at"]


def test_cloud_session_info_usage_and_status(cloud: InstaVM) -> None:
    assert cloud.is_session_active() is True
    info = cloud.get_session_info()
    assert info["session_id"] == cloud.session_id
    assert info["vm_status"] == "active"
    assert info["vm_lifetime_seconds"] == 300
    usage = cloud.get_usage()
    assert usage["executions"] >= 1
    assert usage["uptime_seconds"] > 0
    assert "cpu_time" in usage and "peak_memory_bytes" in usage
    assert cloud.get_session_status()["vm_status"] == "active"


def test_cloud_kill_ends_the_session(keyed_server: LiveServer) -> None:
    client = InstaVM(api_key=keyed_server.api_key, base_url=keyed_server.base_url)
    sid = client.session_id
    assert client.execute("print(1)")["stdout"] == "1\n"
    assert client.kill()["success"] is True
    client.session_id = sid
    assert client.is_session_active() is False
    assert client.get_session_status()["vm_status"] == "closed"
    with keyed_server.client() as http:
        assert http.get("/v1/sessions/status/not-a-session").status_code == 404


def test_sessions_expire_on_the_server(keyed_server: LiveServer) -> None:
    with keyed_server.client() as http:
        # vm_lifetime_seconds is at least 20 on the wire; coderunner's own route allows a 1 s lifetime.
        sid = http.post("/sessions", json={"lifetime": 1}).json()["session_id"]
        deadline = time.monotonic() + 10
        while (status := http.get(f"/v1/sessions/status/{sid}").json())["vm_status"] == "active":
            assert time.monotonic() < deadline, "the session did not expire"
            time.sleep(0.1)
        assert status["vm_status"] == "expired"
        assert "lifetime" in status["reason"]
        assert http.get(f"/v1/sessions/usage/{sid}").json()["status"] == "expired"
    client = InstaVM(api_key=keyed_server.api_key, base_url=keyed_server.base_url, auto_start_session=False)
    client.session_id = sid
    assert client.is_session_active() is False
    with pytest.raises(InstaVMError):
        client.execute("print(1)")
    with keyed_server.client() as http:
        created = http.post("/v1/sessions/session", json={"vm_lifetime_seconds": 20}).json()
        assert created["vm_lifetime_seconds"] == 20 and created["expires_at"]
        http.post("/kill", json={"session_id": created["session_id"]})


def test_cloud_wrong_key_is_an_authentication_error(keyed_server: LiveServer) -> None:
    with pytest.raises(SDKAuthenticationError):
        InstaVM(api_key="wrong", base_url=keyed_server.base_url)


def test_cloud_mode_against_a_keyless_server(open_server: LiveServer) -> None:
    client = InstaVM(api_key="x", base_url=open_server.base_url)
    try:
        assert client.execute("print('any key works')")["stdout"] == "any key works\n"
    finally:
        client.kill()


def test_local_mode_uses_a_default_session(open_server: LiveServer) -> None:
    client = InstaVM(local=True, local_url=open_server.base_url)
    assert client.execute("y = 7")["exit_code"] == 0
    out = client.execute("print(y * 6)")
    assert out["stdout"] == "42\n"
    assert client.execute("print(1)", language="python", timeout=10)["status"] == "ok"


def test_local_mode_bash(open_server: LiveServer, require_bash: None) -> None:
    client = InstaVM(local=True, local_url=open_server.base_url)
    assert client.execute("echo local-bash", language="bash")["stdout"] == "local-bash\n"


def _cli(server: LiveServer, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSTAVM_")}
    env.update(INSTAVM_BASE_URL=server.base_url, INSTAVM_API_KEY=server.api_key or "x", HOME=str(home))
    cli = Path(sys.executable).with_name("instavm")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "instavm"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=120)


def test_instavm_cli_exec(keyed_server: LiveServer, tmp_path: Path) -> None:
    out = _cli(keyed_server, "exec", "--cmd", "print(6 * 7)", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "42" in out.stdout
    out = _cli(keyed_server, "exec", "--json", "--cmd", "print('json mode')", "--timeout", "30", home=tmp_path)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["stdout"] == "json mode\n"
    assert payload["session_id"]


def test_instavm_cli_exec_bash(keyed_server: LiveServer, tmp_path: Path, require_bash: None) -> None:
    out = _cli(keyed_server, "exec", "--language", "bash", "--cmd", "echo from-cli", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "from-cli" in out.stdout
