"""Helpers shared by the integration tests: loading examples, a fake-backend Python emulator, serving ASGI apps."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from coderunner import ErrorInfo, ExecutionResult
from coderunner.testing import FakeCall

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class PythonEmulator:
    """A FakeBackend handler that really runs Python with exec(), one namespace per session.

    Enough for agent loops under the fake backend to see state persist and errors come back.
    """

    def __init__(self) -> None:
        self.namespaces: dict[str, dict[str, Any]] = {}

    def __call__(self, call: FakeCall) -> ExecutionResult | str:
        if call.language != "python":
            return ExecutionResult(
                status="error", exit_code=127, stderr=f"the fake backend emulates python only, not {call.language}\n"
            )
        namespace = self.namespaces.setdefault(call.session_id, {})
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(call.code, "<cell>", "exec"), namespace)
        except Exception as exc:
            return ExecutionResult(
                status="error",
                stdout=out.getvalue(),
                exit_code=1,
                error=ErrorInfo(name=type(exc).__name__, value=str(exc)),
            )
        return out.getvalue()


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py as a module (the examples directory is not a package)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would: pydantic models in an example resolve their
    # (postponed) annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a loopback port in a thread; yield its base URL."""
    port = _free_port()
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def require_docker() -> None:
    """Skip the test, saying why, unless a Docker engine answers; build coderunner's image there once (content hash)."""
    import pytest

    pytest.importorskip("docker", reason="the Docker backend needs 'coderunner-sandbox[docker]'")
    from coderunner.backends.docker import connect, ensure_image
    from coderunner.errors import BackendUnavailableError

    try:
        client = connect()
    except BackendUnavailableError as exc:
        pytest.skip(f"no Docker engine: {exc.message}")
    ensure_image(client)
    client.close()


def backend_runner(name: str, **options: Any) -> Any:
    """The runner a per-backend integration module shares: docker (the test skipped, saying why, without an
    engine) or inprocess without a warm pool (the tests make their own sessions, one or two each)."""
    from coderunner import CodeRunner

    if name == "docker":
        require_docker()
        return CodeRunner(backend="docker", **options)
    return CodeRunner(backend="inprocess", pool_size=0, **options)
