"""Start a throwaway ``coderunner serve`` on 127.0.0.1 for the REST benchmarks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

_READY = re.compile(r"listening on (http://\S+)")


def nodelay_transport() -> httpx.HTTPTransport:
    """An httpx transport with TCP_NODELAY, as requests/urllib3 (and coderunner's InstaVM backend) use.

    httpx writes request headers and body separately; with Nagle on, the body may wait for a delayed
    ACK, which would be measured as server latency.
    """
    return httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:  # still starting
        return False


@contextmanager
def live_server(*extra: str) -> Iterator[str]:
    """Yield the base URL of a fresh server (temporary job db and runtime dir); stop it afterwards."""
    work = Path(tempfile.mkdtemp(prefix="crbench-", dir="/tmp"))
    log = work / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODERUNNER_")}
    env["CODERUNNER_RUNTIME_DIR"] = str(work / "rt")
    cmd = [
        sys.executable,
        "-c",
        "import sys; from coderunner.cli import main; sys.exit(main())",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(work / "jobs.sqlite3"),
        "--log-level",
        "warning",
        *extra,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        url = None
        while not (url is not None and _healthy(url)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("coderunner serve did not start:\n" + log.read_text())
            match = _READY.search(log.read_text())
            url = match.group(1) if match else None
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
