"""Each navigation reports its own outcome: a refused or failed one leaves nothing behind for the next.

Regression tests for issue 11 item 13: after a navigation whose redirect the egress policy refused, the
browser was still committing the refused navigation's error page when the call returned, so the next
navigation was "interrupted" by it (a 500), the one after that by the previous one, and so on: each
call reported the outcome of the call before it. Also pinned here: a refusal is matched to the
navigation's own requests, not to whatever the proxy refused meanwhile, and the proxy never lets the
browser send a second request down a connection it checked for the first.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from browser_helpers import DENIED, PageServer

from coderunner.backends.inprocess import InProcessBackend
from coderunner.browser import (
    BrowserManager,
    BrowserSession,
    BrowserTimeoutError,
    DestinationBlockedError,
    NavigationError,
    browser_manager_for,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def manager(backend: InProcessBackend) -> Iterator[BrowserManager]:
    m = browser_manager_for(backend)
    yield m
    m.close_all()


@pytest.fixture
def session(manager: BrowserManager) -> Iterator[BrowserSession]:
    with manager.create_session() as s:
        yield s


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the block ends


def _assert_each_reports_its_own(session: BrowserSession, pages: PageServer) -> None:
    """Several navigations in a row, each answering with its own URL, title and status."""
    expected = [
        ("/form", "/form", "Form page", 200),
        ("/nope", "/nope", "404", 404),
        ("/links", "/links", "Links page", 200),
        ("/redirect?to=/late", "/late", "Late page", 200),
        ("/form?again=1", "/form?again=1", "Form page", 200),
    ]
    for path, final, title, status in expected:
        data = session.navigate(pages.url(path))["data"]
        assert (data["url"], data["title"], data["status"]) == (pages.url(final), title, status), path


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("https://{denied}:{port}/secret", id="https-deny-rule"),
        pytest.param("http://{denied}:{port}/secret", id="http-deny-rule"),
        pytest.param("https://169.254.169.254/latest/meta-data/", id="https-metadata"),
        pytest.param("http://169.254.169.254/latest/meta-data/", id="http-metadata"),
    ],
)
def test_a_refused_redirect_then_each_navigation_reports_its_own_outcome(
    session: BrowserSession, pages: PageServer, target: str
) -> None:
    to = target.format(denied=DENIED, port=pages.port)
    with pytest.raises(DestinationBlockedError) as info:
        session.navigate(pages.url(f"/redirect?to={to}"))
    assert info.value.code == "destination_blocked"
    _assert_each_reports_its_own(session, pages)
    # Twice in a row, and refused again afterwards: every call still gets its own answer.
    for _ in range(2):
        with pytest.raises(DestinationBlockedError):
            session.navigate(pages.url(f"/redirect?to={to}"))
    assert session.navigate(pages.url("/links"))["data"]["title"] == "Links page"


def test_a_failed_https_navigation_then_each_navigation_reports_its_own_outcome(
    session: BrowserSession, pages: PageServer
) -> None:
    # A tunnel the proxy could not connect (not a policy refusal): a NavigationError, and the same cleanup.
    with pytest.raises(NavigationError) as info:
        session.navigate(f"https://127.0.0.1:{_closed_port()}/")
    assert not isinstance(info.value, DestinationBlockedError)
    assert "connect" in info.value.message.lower()
    _assert_each_reports_its_own(session, pages)


def test_a_timed_out_navigation_then_each_navigation_reports_its_own_outcome(
    session: BrowserSession, pages: PageServer
) -> None:
    with pytest.raises(BrowserTimeoutError):
        session.navigate(pages.url("/hang.png"), wait_timeout=500)  # no answer at all: nothing committed
    _assert_each_reports_its_own(session, pages)


# -- the proxy: one request per upstream connection, even towards servers that keep connections open --


@dataclass
class _KeepAliveServer:
    """An HTTP/1.1 server on 127.0.0.1 that ignores ``Connection: close`` and keeps every connection open."""

    title: str
    script: str = ""
    port: int = 0
    requests: list[tuple[int, str]] = field(default_factory=list)  # (connection number, request line)
    _sock: socket.socket | None = None
    _conns: list[socket.socket] = field(default_factory=list)

    def start(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        for conn in [*self._conns, self._sock]:
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        assert self._sock is not None
        number = 0
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            number += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                self.requests.append((number, line))
                body = f"<title>{self.title}</title><p>{line}</p><script>{self.script}</script>".encode()
                with contextlib.suppress(OSError):
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(body), body)
                    )


@pytest.fixture
def keep_alive() -> Iterator[tuple[_KeepAliveServer, _KeepAliveServer]]:
    servers = (_KeepAliveServer("one"), _KeepAliveServer("two"))
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def test_every_request_gets_its_own_checked_upstream_connection(
    session: BrowserSession, keep_alive: tuple[_KeepAliveServer, _KeepAliveServer]
) -> None:
    one, two = keep_alive
    for server, path in ((one, "/a"), (one, "/b"), (two, "/c"), (one, "/d"), (two, "/e"), (one, "/f")):
        data = session.navigate(server.url(path))["data"]
        assert (data["url"], data["title"], data["status"]) == (server.url(path), server.title, 200)
    for server in keep_alive:
        numbers = [number for number, _line in server.requests]
        # A browser connection the proxy kept open would carry the next request straight to this upstream,
        # unchecked and unrewritten (absolute-form URL): each request must come on a connection of its own.
        assert len(numbers) == len(set(numbers)), server.requests
        assert all(line.split(" ")[1].startswith("/") for _number, line in server.requests), server.requests


def test_a_failure_is_not_blamed_on_another_pages_refused_request(session: BrowserSession) -> None:
    # The page being left keeps sending requests to a denied address until it is gone, i.e. while the next
    # navigation fails for its own reason: those refusals belong to the old page, not to the navigation.
    leaving = _KeepAliveServer("leaving")
    leaving.start()
    leaving.script = f"setInterval(() => fetch('http://{DENIED}:{leaving.port}/poll', {{mode: 'no-cors'}}), 5)"
    try:
        for _ in range(3):
            session.navigate(leaving.url("/"))
            with pytest.raises(NavigationError) as info:
                session.navigate(f"https://127.0.0.1:{_closed_port()}/")
            assert not isinstance(info.value, DestinationBlockedError), info.value.message
            assert "connect" in info.value.message.lower()
    finally:
        leaving.stop()
