"""gVisor: the same sessions under the runsc runtime, when the engine has it (CI installs it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coderunner import CodeRunner

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def gvisor_runner(docker_client: Any, sandbox_image: str) -> Any:
    if "runsc" not in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("the Docker engine has no 'runsc' runtime (apt-get install runsc; scripts/docker-engine.sh)")
    runner = CodeRunner(backend="docker", image=sandbox_image, runtime="runsc", pool_size=0)
    yield runner
    runner.close()


def test_sessions_run_under_gvisor(gvisor_runner: CodeRunner, docker_client: Any) -> None:
    with gvisor_runner.session() as s:
        s.execute("x = 41")
        assert s.execute("print(x + 1)").stdout == "42\n"
        assert s.execute("echo $((6 * 7))", "bash").stdout == "42\n"
        assert s.execute("console.log(6 * 7)", "javascript").stdout == "42\n"
        # gVisor's own kernel answers: its dmesg is unmistakable.
        kernel = s.execute("import platform; print(platform.release())").stdout
        host = docker_client.api.inspect_container(gvisor_runner.backend.container_id(s.session_id))["HostConfig"]
        assert host["Runtime"] == "runsc", kernel
        seen = json.loads(
            s.execute(
                "import json, os, socket\n"
                "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status') if ':\\t' in l)\n"
                "print(json.dumps({'uid': os.getuid(), 'cap': status['CapEff'].strip(), "
                "'ifs': [n for _, n in socket.if_nameindex()]}))"
            ).stdout
        )
        assert seen["uid"] != 0 and seen["cap"] == "0000000000000000" and seen["ifs"] == ["lo"]
        s.write_file("in.txt", "gvisor")
        assert s.download_file("in.txt") == b"gvisor"


def test_timeout_and_death_under_gvisor(gvisor_runner: CodeRunner) -> None:
    with gvisor_runner.session() as s:
        s.execute("kept = 'yes'")
        assert s.execute("while True: pass", timeout=2).status == "timeout"
        assert s.execute("print(kept)").stdout == "yes\n"
        died = s.execute("import os; os._exit(3)")
        assert died.error is not None and died.error.name == "InterpreterDied"
        assert s.execute("print('back')").stdout == "back\n"


@pytest.mark.browser
def test_the_browser_container_runs_under_gvisor_too(gvisor_runner: CodeRunner, docker_client: Any) -> None:
    page = gvisor_runner.browser.create_session(viewport_width=320, viewport_height=200)
    try:
        backend: Any = gvisor_runner.backend
        host = docker_client.api.inspect_container(backend.browser_container_id)["HostConfig"]
        assert host["Runtime"] == "runsc" and host["NetworkMode"] == "none"
        page.navigate("data:text/html,<title>gv</title><p id=p>under gVisor</p>")
        assert page.extract_elements("#p", ["text"])[0]["text"] == "under gVisor"
        assert page.screenshot(full_page=False)
    finally:
        page.close()
