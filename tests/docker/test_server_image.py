"""Server image mode: the sandbox image running `coderunner serve`, driven by the InstaVM backend and SDK."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from coderunner import CodeRunner

pytestmark = pytest.mark.docker

API_KEY = "test-key-not-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server_url(docker_client: Any, sandbox_image: str) -> Iterator[str]:
    """The documented `docker run` of the server image (host network: these engines have no bridge)."""
    port = _free_port()
    container = docker_client.containers.run(
        sandbox_image,
        ["coderunner", "serve", "--host", "127.0.0.1", "--port", str(port)],
        detach=True,
        network_mode="host",
        environment={"CODERUNNER_API_KEY": API_KEY},
        read_only=True,
        tmpfs={"/tmp": "rw,size=512m,mode=1777", "/home/sandbox": "rw,size=256m,uid=1000,gid=1000,mode=0700"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        pids_limit=512,
        mem_limit="2g",
        init=True,
        labels={"org.coderunner.test": "server-image"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            container.reload()
            assert container.status == "running", container.logs().decode()
            assert time.monotonic() < deadline, "the server image did not answer /health within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        container.remove(force=True)


def test_instavm_backend_drives_the_server_image(server_url: str) -> None:
    with CodeRunner(backend="instavm", base_url=server_url, api_key=API_KEY) as runner:
        runner.execute("x = 41")
        assert runner.execute("print(x + 1)").stdout == "42\n"
        assert runner.execute("id -u", "bash").stdout.strip() == "1000"
        assert runner.execute("console.log('js')", "javascript").stdout == "js\n"
        runner.write_file("hello.txt", "hi")
        assert runner.download_file("hello.txt") == b"hi"
        failed = runner.execute("1/0")
        assert failed.status == "error" and failed.error is not None and failed.error.name == "ZeroDivisionError"


def test_unmodified_instavm_sdk_drives_the_server_image(server_url: str) -> None:
    instavm = pytest.importorskip("instavm", reason="the unmodified InstaVM SDK (pip install instavm)")
    vm = instavm.InstaVM(api_key=API_KEY, base_url=server_url)
    try:
        result = vm.execute("print(6 * 7)")
        assert "42" in str(result.get("stdout", result))
        assert vm.is_session_active()
    finally:
        vm.close_session()


def test_server_without_key_refuses_other_interfaces(docker_client: Any, sandbox_image: str) -> None:
    # The image's default command binds 0.0.0.0: without CODERUNNER_API_KEY it must refuse to start.
    container = docker_client.containers.create(sandbox_image, network_mode="none")
    try:
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 2
        assert b"refusing" in container.logs()
    finally:
        container.remove(force=True)
