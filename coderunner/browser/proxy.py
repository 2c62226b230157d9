"""A small forward HTTP proxy per browser context that enforces the egress policy at connect time.

Why a proxy and not Playwright request routing: routing sees only the first request of a redirect
chain (a page allowed to load can 302 the browser to the metadata service unchecked), does not see
every WebSocket, and leaves the browser to resolve the host again after the check (DNS rebinding).
Every connection the context makes goes through here instead (Playwright forces loopback through a
context proxy too): the host is resolved once, every address is checked, and the proxy connects to
exactly those addresses. Plain-HTTP requests use one connection each, both ways: the upstream is
asked for ``Connection: close`` and the answer the browser gets says ``Connection: close`` too, so the
browser never sends a second request down a connection that was checked for the first (it would reach
that upstream without a check, and its answer would be taken for the second request's).

Refusals are answered with HTTP 403 (the browser shows the reason for plain HTTP; for HTTPS the
tunnel fails) and recorded as :class:`ProxyEvent` s, which the engine reads to raise
:class:`~coderunner.browser.errors.DestinationBlockedError` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from coderunner.browser.policy import EgressDecision, EgressPolicy

__all__ = ["EgressProxy", "ProxyEvent"]

log = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_CHUNK = 256 * 1024
_CONNECT_TIMEOUT = 30.0
_EVENTS_KEPT = 200
_HOP_BY_HOP = (b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive")


@dataclass(frozen=True)
class ProxyEvent:
    """A request the proxy refused or could not connect."""

    seq: int
    """Increasing number, to ask for the events after a point (see :meth:`EgressProxy.mark`)."""
    kind: Literal["blocked", "failed"]
    """'blocked' by the policy, or 'failed' to connect upstream."""
    target: str
    """The URL (plain HTTP) or 'host:port' (a CONNECT tunnel: HTTPS, WSS)."""
    host: str
    """The destination host."""
    reason: str
    """Why, in words."""
    at: float
    """time.monotonic() of the event."""


class EgressProxy:
    """A forward proxy on 127.0.0.1 for one browser context. All methods run on one event loop.

    Args:
        policy: The rules every connection is checked against.
    """

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.events: deque[ProxyEvent] = deque(maxlen=_EVENTS_KEPT)
        self._seq = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The proxy's address, for Playwright's ``proxy={"server": ...}``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on an ephemeral loopback port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop every open connection. Idempotent."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def mark(self) -> int:
        """The sequence number of the latest event (events after it are 'new')."""
        return self.events[-1].seq if self.events else 0

    def events_since(self, mark: int) -> list[ProxyEvent]:
        """Events recorded after :meth:`mark` returned ``mark``."""
        return [e for e in self.events if e.seq > mark]

    def _record(self, kind: Literal["blocked", "failed"], target: str, host: str, reason: str) -> None:
        self.events.append(ProxyEvent(next(self._seq), kind, target, host, reason, time.monotonic()))

    # -- connections -------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            log.debug("proxy connection ended: %s", exc)
        except asyncio.CancelledError:
            # close() cancels open connections. Ending normally keeps asyncio's start_server callback from
            # logging the cancellation as an error; nothing else awaits this task.
            log.debug("proxy connection closed with its session")
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            await _reply(writer, 431, "Request header too large")
            return
        lines = head[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            await _reply(writer, 400, "Malformed request line")
            return

        if method == "CONNECT":
            host, port = _split_authority(target)
            if host is None:
                await _reply(writer, 400, f"Malformed CONNECT target {target!r}")
                return
            upstream = await self._open(writer, target, host, port)
            if upstream is None:
                return
            up_reader, up_writer = upstream
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                await _reply(writer, 400, f"This proxy forwards absolute http:// URLs, not {target!r}")
                return
            try:
                port = parts.port or 80
            except ValueError:
                await _reply(writer, 400, f"Invalid port in {target!r}")
                return
            upstream = await self._open(writer, target, parts.hostname, port)
            if upstream is None:
                return
            up_reader, up_writer = upstream
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            up_writer.write(_rewrite_head(method, path, version, lines[1:]))

        self._writers.add(up_writer)
        try:
            if method == "CONNECT":
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer, close_both=True))
            else:
                # The browser would send its next request to the same origin down this connection once the
                # answer is complete: straight to this upstream, past the policy and the rewriting. The answer
                # says "Connection: close" instead, and the browser going away ends the upstream connection.
                await asyncio.gather(
                    _pipe(reader, up_writer, close_both=True), _relay_response(up_reader, writer, up_writer)
                )
        finally:
            self._writers.discard(up_writer)
            up_writer.close()

    async def _open(
        self, writer: asyncio.StreamWriter, target: str, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        decision: EgressDecision = await self.policy.resolve_and_check(host, port)
        if not decision.allowed:
            self._record("blocked", target, host, decision.reason)
            await _reply(writer, 403, f"coderunner's browser egress policy refused {target}: {decision.reason}.")
            return None
        if not decision.addresses:
            reason = f"could not resolve host {host!r}"
            self._record("failed", target, host, reason)
            await _reply(writer, 502, f"coderunner's browser proxy {reason}.")
            return None
        error: OSError | None = None
        for address in decision.addresses:
            try:
                # Connect to the checked address itself: no second DNS lookup to rebind.
                return await asyncio.wait_for(asyncio.open_connection(str(address), port), _CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                error = exc if isinstance(exc, OSError) else OSError(f"timed out after {_CONNECT_TIMEOUT:g} s")
        reason = f"could not connect to {host}:{port}: {_os_reason(error)}"
        self._record("failed", target, host, reason)
        await _reply(writer, 502, f"coderunner's browser proxy {reason}.")
        return None


def _split_authority(target: str) -> tuple[str | None, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return None, 0
    return host.strip("[]") or None, int(port)


def _rewrite_head(method: str, path: str, version: str, headers: list[bytes]) -> bytes:
    kept = [h for h in headers if h.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    if any(h.split(b":", 1)[0].strip().lower() == b"upgrade" for h in headers):
        kept.append(b"Connection: Upgrade")
    else:
        # One request per upstream connection: the browser may reuse its proxy connection for
        # another host, which must not be sent down this (already checked) upstream.
        kept.append(b"Connection: close")
    return b"\r\n".join([f"{method} {path} {version}".encode("latin-1"), *kept, b"", b""])


async def _relay_response(
    up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_writer: asyncio.StreamWriter
) -> None:
    """Forward an upstream answer to a plain-HTTP request, its final head rewritten to end the connection."""
    try:
        while True:
            head = await up_reader.readuntil(b"\r\n\r\n")
            status = _status_of(head)
            if status is None:
                await _reply(writer, 502, "coderunner's browser proxy got a malformed answer from the server")
                writer.close()
                return
            if 100 <= status < 200 and status != 101:
                writer.write(head)  # 100 Continue, 103 Early Hints: the real answer follows
                continue
            writer.write(head if status == 101 else _closing_head(head))
            break
    except asyncio.LimitOverrunError:
        await _reply(writer, 502, "coderunner's browser proxy got an answer header larger than 64 KiB")
        writer.close()
        return
    except asyncio.IncompleteReadError as exc:
        writer.write(exc.partial)  # the server closed before a complete head: pass on what came
        writer.close()
        return
    await _pipe(up_reader, writer, close_both=True)
    up_writer.close()


def _status_of(head: bytes) -> int | None:
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def _closing_head(head: bytes) -> bytes:
    """A response head without its hop-by-hop connection headers, ending in ``Connection: close``."""
    lines = head[:-4].split(b"\r\n")
    named = {b"connection", b"keep-alive", b"proxy-connection"}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"connection", b"proxy-connection"):
            named.update(token.strip().lower() for token in value.split(b",") if token.strip())
    named -= {b"content-length", b"transfer-encoding"}  # the body's framing stays, whatever the server names
    kept = [line for line in lines[1:] if line.partition(b":")[0].strip().lower() not in named]
    return b"\r\n".join([lines[0], *kept, b"Connection: close", b"", b""])


async def _reply(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = (message + "\n").encode()
    phrase = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large", 502: "Bad Gateway"}
    writer.write(
        f"HTTP/1.1 {status} {phrase.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, close_both: bool = False) -> None:
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        if close_both:
            dst.close()
        elif dst.can_write_eof():
            with contextlib.suppress(OSError):
                dst.write_eof()


def _os_reason(error: OSError | None) -> str:
    if error is None:
        return "no address to connect to"
    return error.strerror or str(error) or type(error).__name__
