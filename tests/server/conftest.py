"""Live ``coderunner serve`` processes for the server tests (and, via ``start_live_server``, the conformance suite).

Each server is a real subprocess (``coderunner serve --port 0``) on 127.0.0.1 with its own
temporary job database and runtime directory; nothing listens beyond loopback.

Reuse from other test folders::

    from tests.server.conftest import start_live_server   # with the repo root on sys.path
    server = start_live_server(api_key="k")
    ...  CodeRunner(backend="instavm", base_url=server.base_url, api_key=server.api_key)
    server.stop()

or request the ``live_server_factory`` / ``live_server_url`` fixtures after registering this module
as a plugin (``pytest_plugins = ["tests.server.conftest"]`` in the top-level conftest).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

_READY = re.compile(r"listening on (http://\S+)")
_START_TIMEOUT = 60.0


@dataclass
class LiveServer:
    """A running ``coderunner serve`` subprocess."""

    base_url: str
    api_key: str | None
    db_path: Path
    runtime_dir: Path
    workdir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        """Headers that authenticate (empty when the server has no key)."""
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client bound to this server, with the key."""
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=60.0, **kwargs)

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, *, crash: bool = False) -> None:
        """Stop the server: gracefully (SIGTERM) or as a crash (SIGKILL, nothing cleaned up)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_live_server(
    *,
    api_key: str | None = None,
    db_path: Path | None = None,
    runtime_dir: Path | None = None,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> LiveServer:
    """Start ``coderunner serve`` on 127.0.0.1 with a free port and wait until ``/health`` answers.

    Args:
        api_key: Key the server requires (None: no auth).
        db_path: Job database (default: a fresh temporary file). Reuse one to test restarts.
        runtime_dir: Kernel runtime directory (default: fresh). Reuse one so a restarted server reaps
            the kernels a crashed one left behind.
        extra_args: More ``serve`` options, e.g. ``("--max-jobs", "1")``.
        env: Extra environment variables for the server.
    """
    # Kernel ipc sockets live under the runtime dir and AF_UNIX paths must stay short: use /tmp.
    workdir = Path(tempfile.mkdtemp(prefix="crsrv-", dir="/tmp"))
    db = db_path or workdir / "jobs.sqlite3"
    runtime = runtime_dir or workdir / "rt"
    log_path = workdir / "server.log"
    # Not "python -m coderunner.cli": run that way, the CLI module is __main__ and the serve command
    # registers itself on a second copy of coderunner.cli (see the report on cli.py).
    args = [
        sys.executable,
        "-c",
        "import sys; from coderunner.cli import main; sys.exit(main())",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(db),
        "--log-level",
        "warning",
        *extra_args,
    ]
    if api_key:
        args += ["--api-key", api_key]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("CODERUNNER_", "INSTAVM_"))}
    child_env["CODERUNNER_RUNTIME_DIR"] = str(runtime)
    child_env.update(env or {})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=workdir)
    deadline = time.monotonic() + _START_TIMEOUT
    base_url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"coderunner serve exited with {proc.returncode}:\n{log_path.read_text()}")
        if base_url is None:
            match = _READY.search(log_path.read_text(errors="replace"))
            if match:
                base_url = match.group(1)
        if base_url is not None:
            try:
                if httpx.get(base_url + "/health", timeout=2).status_code == 200:
                    return LiveServer(base_url, api_key, db, runtime, workdir, proc, log_path, args)
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"coderunner serve did not become ready in {_START_TIMEOUT:g} s:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def live_server_factory() -> Iterator[Callable[..., LiveServer]]:
    """Start servers with ``start_live_server``'s arguments; all are stopped at the end of the session."""
    started: list[LiveServer] = []

    def make(**kwargs: Any) -> LiveServer:
        server = start_live_server(**kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def open_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A server without an API key (InstaVM local mode needs one)."""
    return live_server_factory()


@pytest.fixture(scope="session")
def live_server_url(open_server: LiveServer) -> str:
    """Base URL of a live server without auth (the conformance hook)."""
    return open_server.base_url


KEY = "test-key-0123456789"


@pytest.fixture(scope="session")
def keyed_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A server requiring ``X-API-Key: test-key-0123456789``, with a 1 MiB body limit."""
    return live_server_factory(api_key=KEY, extra_args=("--max-body-size", str(1024 * 1024)))


@pytest.fixture
def require_bash() -> None:
    """Skip (with the reason) when the bash kernel is not available yet."""
    import importlib.util

    if importlib.util.find_spec("coderunner.engine.bash") is None:
        pytest.skip("coderunner/engine/bash.py (the bash kernel) is not present yet")
    if shutil.which("bash") is None:
        pytest.skip("no bash binary on PATH")
