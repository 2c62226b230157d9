"""What a client can make a live ``coderunner serve`` read, parse and wait for (issue 11, item 10).

Each test runs a real server subprocess on 127.0.0.1 and measures it from outside: the server
process's resident memory (psutil) while it is sent a large unauthenticated body, and how long a
client that sends its headers or body byte by byte keeps its connection.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

if TYPE_CHECKING:
    from conftest import LiveServer

KEY = "test-key-0123456789"

_MIB = 1024 * 1024
_BIG = 90 * _MIB


class _PeakRss:
    """Samples a process's RSS in a thread; ``growth`` is the peak above the RSS at the start."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.baseline: int = self._proc.memory_info().rss
        self.peak: int = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)  # let a late allocation show
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.fixture(scope="module")
def keyed(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A keyed server with the default 100 MiB body limit, so only the unauthenticated limit applies."""
    return live_server_factory(api_key=KEY)


@pytest.fixture(scope="module")
def impatient(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A keyed server that gives a client 1 s for its headers and 1 s (plus its rate allowance) for a body."""
    return live_server_factory(api_key=KEY, extra_args=("--header-timeout", "1", "--body-timeout", "1"))


def _session_body(size: int) -> bytes:
    # A valid WireSessionRequest padded with one huge label: what a parser would have to hold.
    return json.dumps({"vm_lifetime_seconds": 60, "metadata": {"pad": "x" * size}}).encode()


def _chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_unauthenticated_body_is_refused_without_reading_it_into_memory(keyed: LiveServer, framing: str) -> None:
    """90 MB to POST /v1/sessions/session without X-API-Key: a 413 naming the limit, and no 90 MB in the server."""
    body = _session_body(_BIG)
    content: bytes | Iterator[bytes] = body if framing == "content-length" else _chunks(body)
    with httpx.Client(base_url=keyed.base_url, timeout=120) as client:
        client.get("/health")  # warm up the route machinery before the baseline
        with _PeakRss(keyed.proc.pid) as rss:
            response = client.post(
                "/v1/sessions/session", content=content, headers={"Content-Type": "application/json"}
            )
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "API key" in detail and "X-API-Key" in detail, detail
    # Before the fix the server parsed the whole body: ~277 MB of peak growth.
    assert rss.growth < 40 * _MIB, f"server RSS grew by {rss.growth / _MIB:.0f} MiB"


def test_small_unauthenticated_session_request_still_authenticates_in_the_body(keyed: LiveServer) -> None:
    """The InstaVM SDK's own request (key in the JSON body) is far below the limit and still works."""
    with httpx.Client(base_url=keyed.base_url, timeout=60) as client:
        response = client.post("/v1/sessions/session", json={"api_key": KEY, "vm_lifetime_seconds": 60})
        assert response.status_code == 200, response.text
        client.post("/kill", json={"session_id": response.json()["session_id"]}, headers={"X-API-Key": KEY})
        wrong = client.post("/v1/sessions/session", json={"api_key": "nope"})
        assert wrong.status_code == 401


def _read_response(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or ``limit`` seconds pass), and when it closed."""
    started = time.monotonic()
    sock.settimeout(0.2)
    data = b""
    while time.monotonic() - started < limit:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def _trickle(sock: socket.socket, data: bytes, stop: threading.Event, pause: float = 0.2) -> None:
    for byte in data:
        if stop.is_set():
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(pause)


def _slow_client(server: LiveServer, data: bytes) -> tuple[bytes, float]:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    stop = threading.Event()
    with socket.create_connection((host, int(port))) as sock:
        sender = threading.Thread(target=_trickle, args=(sock, data, stop), daemon=True)
        sender.start()
        # While the slow client holds its connection, the server keeps answering others.
        assert httpx.get(server.base_url + "/health", timeout=5).status_code == 200
        try:
            return _read_response(sock, limit=20)
        finally:
            stop.set()
            sender.join()


def test_slow_headers_are_cut_off_with_408(impatient: LiveServer) -> None:
    """A client that sends its request line and headers byte by byte gets 408 after --header-timeout."""
    request = b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + KEY.encode() + b"\r\n" + b"X-Pad: y" * 200
    data, elapsed = _slow_client(impatient, request)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"--header-timeout" in data, data
    assert elapsed < 10, f"cut off only after {elapsed:.1f} s"


def test_slow_body_is_cut_off_with_408(impatient: LiveServer) -> None:
    """A client whose headers are fine but whose body comes byte by byte gets 408 after --body-timeout."""
    body = b'{"command": "print(1)"' + b" " * 200 + b"}"
    head = (
        b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    host, port = impatient.base_url.removeprefix("http://").rsplit(":", 1)
    stop = threading.Event()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head)
        sender = threading.Thread(target=_trickle, args=(sock, body, stop), daemon=True)
        sender.start()
        assert httpx.get(impatient.base_url + "/health", timeout=5).status_code == 200
        try:
            data, elapsed = _read_response(sock, limit=20)
        finally:
            stop.set()
            sender.join()
    assert data.startswith(b"HTTP/1.1 408"), data[:300]
    payload = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert payload["code"] == "request_timeout" and "--body-timeout" in payload["detail"], payload
    assert elapsed < 10, f"cut off only after {elapsed:.1f} s"


def test_slow_timeouts_leave_normal_requests_alone(impatient: LiveServer) -> None:
    """Ordinary requests, a long-running one included, are unaffected by 1 s header and body timeouts."""
    with httpx.Client(base_url=impatient.base_url, headers={"X-API-Key": KEY}, timeout=60) as client:
        response = client.post("/execute", json={"command": "import time; time.sleep(2.5); print('ok')"})
        assert response.status_code == 200, response.text
        assert response.json()["stdout"].strip() == "ok"
        # The connection is reused after a pause longer than the header timeout (keep-alive idle).
        time.sleep(1.5)
        assert client.get("/health").status_code == 200
