"""The server's front door: path clean-up, body size and read-time limits, API-key check; and the header timeout.

:class:`GatewayMiddleware` is plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: it adds
microseconds, not a task per request, to the hot ``/execute`` path.

* Paths: InstaVM clients build URLs as ``base_url + path``, so a base URL ending in ``/`` sends
  ``//execute``; repeated slashes are collapsed and a trailing slash dropped before routing.
* Body size: a ``Content-Length`` above the limit is refused with 413 before the app runs; a
  chunked body is counted as it is read and refused with 413 when it passes the limit. Either way
  the rest of the body is read and dropped first, so the client sees the 413 and not a reset.
* Browsers: without an API key, requests whose Host is a DNS name other than ``localhost`` (DNS
  rebinding) or whose Origin is a foreign web page are refused with 403, so a page open in the
  user's browser cannot run code through a keyless local server.
* Auth: with an API key configured, every path except the open ones needs ``X-API-Key`` (compared
  in constant time). ``POST /v1/sessions/session`` without the header is let through with a flag:
  the InstaVM SDK sends its key in that request's JSON body, and the route checks it there. Such a
  request is not authenticated yet, so its body may hold at most :data:`AUTH_IN_BODY_MAX_BYTES`
  (checked on ``Content-Length`` and again while reading; 413): a stranger cannot make the server
  read and parse a large document.
* Slow clients: the body must arrive within ``body_timeout`` seconds, plus one second for every
  :data:`BODY_RATE_ALLOWANCE` bytes received (so only clients slower than that on average are cut
  off); a late body is answered 408 and the connection closed. Headers are parsed by the HTTP
  protocol before any ASGI code runs, so their limit lives there: :func:`header_timeout_protocol`
  gives uvicorn's h11 protocol a deadline for a request's headers (408, then close). Both waits
  are timers on the event loop, so a slow client holds no worker and no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

__all__ = [
    "AUTH_IN_BODY",
    "AUTH_IN_BODY_MAX_BYTES",
    "BODY_RATE_ALLOWANCE",
    "DEFAULT_ALLOWED_HOSTS",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "OPEN_PATHS",
    "GatewayMiddleware",
    "PayloadTooLargeError",
    "RequestTimeoutError",
    "header_timeout_protocol",
    "keys_match",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AUTH_IN_BODY = "coderunner.auth_in_body"
"""Scope key set when a session-creation request must carry its API key in the JSON body."""

OPEN_PATHS: frozenset[str] = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
"""Paths served without an API key: the health check and the API documentation (no data)."""

DEFAULT_ALLOWED_HOSTS: frozenset[str] = frozenset({"coderunner.local"})
"""Host names a keyless server accepts besides IPs and localhost: the InstaVM SDK's default local_url host."""

AUTH_IN_BODY_MAX_BYTES = 16 * 1024
"""Largest body of a request whose API key is still to be read from it (the SDK's is a few hundred bytes)."""

DEFAULT_HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a request's line and headers, counted from its first byte (or the connection)."""

DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a client has to send a request body, plus one second per :data:`BODY_RATE_ALLOWANCE` bytes received."""

BODY_RATE_ALLOWANCE = 64 * 1024
"""Bytes of body that earn a client one more second: a client sending faster than this is never cut off."""

SESSION_CREATE_PATH = "/v1/sessions/session"
_SLASHES = re.compile(r"/{2,}")


class PayloadTooLargeError(HTTPException):
    """A request body passed the configured limit while it was being read (413; the connection is closed)."""

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(413, message or _too_large_message(limit), headers={"Connection": "close"})


def _too_large_message(limit: int) -> str:
    return (
        f"The request body is larger than the server's limit of {limit} bytes ({limit / 1_048_576:.0f} MiB). "
        "Send a smaller file, or start the server with a larger --max-body-size."
    )


def _unauthenticated_too_large_message(limit: int) -> str:
    return (
        f"The request body is larger than {limit} bytes, the limit for a request that carries its API key in "
        "the body ('api_key'). Send the key in the X-API-Key header instead; the server's --max-body-size then "
        "applies."
    )


class RequestTimeoutError(HTTPException):
    """The request body did not arrive in time (answered 408; the connection is closed)."""

    def __init__(self, timeout: float, received: int) -> None:
        super().__init__(
            408,
            f"The request body did not arrive in time: {received} bytes came in {timeout:.0f} s, the limit for "
            f"this body (the server's --body-timeout plus 1 s per {BODY_RATE_ALLOWANCE // 1024} KiB received). "
            "Send the body without pauses, or ask the operator for a larger --body-timeout.",
            headers={"Connection": "close"},
        )


def keys_match(given: str | None, expected: str) -> bool:
    """Compare an API key in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _hostname(netloc: str) -> str:
    """The host part of ``host[:port]`` / ``[v6]:port``, lower-cased."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _port(netloc: str) -> int | None:
    try:
        return urlsplit(f"//{netloc}").port
    except ValueError:
        return None


def _same_origin(origin: str, host: str) -> bool:
    try:
        parts = urlsplit(origin)
        return _hostname(parts.netloc) == _hostname(host) and parts.port == _port(host)
    except ValueError:  # a malformed Origin or port is not ours
        return False


def _is_local_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def normalize_path(path: str) -> str:
    """Collapse repeated slashes and drop a trailing slash (except for the root)."""
    path = _SLASHES.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


async def _drain(receive: Receive, cap: int) -> None:
    """Consume the rest of a request body without keeping it, up to ``cap`` bytes.

    ``receive`` enforces the body deadline; past ``cap`` the connection is simply closed after the answer.
    """
    drained = 0
    while drained <= cap:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode("ascii")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class GatewayMiddleware:
    """Path normalisation, body size limit, browser-origin guard and API-key check in front of the app.

    Args:
        app: The ASGI app to protect.
        api_key: The key clients must send; None disables the check.
        max_body_bytes: Largest request body accepted.
        open_paths: Paths that need no key.
        allowed_origins: Browser origins allowed to call the API (the CORS origins).
        allowed_hosts: Host names accepted by a keyless server besides IP addresses and ``localhost``.
        body_timeout: Seconds a request body may take, plus 1 s per :data:`BODY_RATE_ALLOWANCE` bytes
            received; None: no limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        max_body_bytes: int,
        open_paths: frozenset[str] = OPEN_PATHS,
        allowed_origins: frozenset[str] = frozenset(),
        allowed_hosts: frozenset[str] = DEFAULT_ALLOWED_HOSTS,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.app = app
        self.api_key = api_key or None
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.open_paths = open_paths
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if "//" in path or (len(path) > 1 and path.endswith("/")):
            path = normalize_path(path)
            scope = dict(scope)
            scope["path"] = path
            scope["raw_path"] = path.encode("utf-8")

        length: int | None = None
        key: str | None = None
        host: str | None = None
        origin: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_json(
                        send, 400, {"detail": "Invalid Content-Length header.", "code": "invalid_request"}, []
                    )
                    return
            elif name == b"x-api-key":
                key = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")

        if self.api_key is None and path not in self.open_paths:
            refusal = self._browser_refusal(host, origin)
            if refusal is not None:
                await _send_json(send, 403, {"detail": refusal, "code": "forbidden", "retryable": False}, [])
                return

        limit, too_large = self.max_body_bytes, _too_large_message(self.max_body_bytes)
        if self.api_key is not None and path not in self.open_paths and not keys_match(key, self.api_key):
            if key is None and path == SESSION_CREATE_PATH and scope["method"] == "POST":
                # Not authenticated yet: the route parses this body to find the key, so keep it small.
                limit = min(limit, AUTH_IN_BODY_MAX_BYTES)
                too_large = _unauthenticated_too_large_message(limit)
                scope = dict(scope)
                scope[AUTH_IN_BODY] = True
            else:
                # Refused before any of the body is read: a stranger's upload costs nothing.
                detail = (
                    "Missing API key: send it in the X-API-Key header."
                    if key is None
                    else "Invalid API key in the X-API-Key header."
                )
                await _send_json(
                    send,
                    401,
                    {"detail": detail, "code": "authentication", "retryable": False},
                    [(b"www-authenticate", b'ApiKey header="X-API-Key"')],
                )
                return

        receive = self._reader(receive, limit, too_large)
        if length is not None and length > limit:
            await self._refuse_too_large(receive, send, too_large)
            return
        await self.app(scope, receive, send)

    async def _refuse_too_large(self, receive: Receive, send: Send, message: str) -> None:
        # Read (and drop) the body first: clients send it all before reading the answer, and closing
        # on them mid-upload turns the 413 into a "connection reset". The reader's deadline bounds this.
        with contextlib.suppress(RequestTimeoutError, PayloadTooLargeError):
            await _drain(receive, self.max_body_bytes)
        await _send_json(
            send, 413, {"detail": message, "code": "invalid_request", "retryable": False}, [(b"connection", b"close")]
        )

    def _browser_refusal(self, host: str | None, origin: str | None) -> str | None:
        """Why a request to a keyless server looks like a web page's doing (None: it does not).

        Without a key, anything that can reach the port can run code, and a web page in the user's
        browser can reach 127.0.0.1. Pages reach us by name only through DNS rebinding (so the Host
        must be an IP address or ``localhost``), and a cross-site request carries a foreign Origin.
        Programs (SDKs, curl) send neither problem.
        """
        name = None if host is None else _hostname(host)
        if name is not None and not _is_local_name(name) and name not in self.allowed_hosts:
            return (
                f"Host {host!r} is refused: a server without an API key only answers requests addressed to an IP "
                "address, localhost or an --allow-host name (protection against DNS rebinding). Use the IP, add "
                "--allow-host, or start the server with --api-key."
            )
        # Our own pages (the /docs explorer) are same-origin: same host and port as the request.
        foreign = origin is not None and (host is None or not _same_origin(origin, host))
        if foreign and origin is not None and origin.rstrip("/") not in self.allowed_origins:
            return (
                f"Requests from web pages at {origin} are refused: the server has no API key. Allow the page "
                "with --cors-origin, or start the server with --api-key."
            )
        return None

    def _reader(self, receive: Receive, limit: int, too_large: str) -> Receive:
        """``receive`` that refuses a body past ``limit`` bytes (413) or past its deadline (408).

        Once the body is complete, messages (``http.disconnect`` for a streaming answer) pass
        through untimed.
        """
        timeout = self.body_timeout
        started = time.monotonic()
        seen = 0
        done = False

        async def timed() -> Message:
            nonlocal seen, done
            if timeout is None:
                message = await receive()
            else:
                remaining = started + timeout + seen / BODY_RATE_ALLOWANCE - time.monotonic()
                try:
                    message = await asyncio.wait_for(receive(), max(remaining, 0.0))
                except asyncio.TimeoutError:
                    done = True
                    raise RequestTimeoutError(time.monotonic() - started, seen) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        async def read() -> Message:
            if done:
                return await receive()
            message = await timed()
            if seen > limit:
                if not done:
                    with contextlib.suppress(RequestTimeoutError):
                        await _drain(timed, self.max_body_bytes)
                raise PayloadTooLargeError(limit, too_large)
            return message

        return read


def _timeout_response(detail: str) -> bytes:
    body = json.dumps({"detail": detail, "code": "request_timeout", "retryable": False}).encode("utf-8")
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def header_timeout_protocol(timeout: float) -> type[asyncio.Protocol]:
    """The h11 HTTP protocol of uvicorn, with a deadline for each request's line and headers.

    uvicorn has none: a client sending its headers byte by byte keeps a connection for as long as
    it likes. Here a request's headers must be complete ``timeout`` seconds after the connection
    opened or, on a kept-alive connection, after the request's first byte; otherwise the client
    gets a JSON 408 and the connection is closed. The deadline is one event-loop timer per
    connection: nothing blocks while a client is slow.

    Args:
        timeout: Seconds allowed for a request's headers.

    Returns:
        A protocol class for ``uvicorn.Config(http=...)``.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    response = _timeout_response(
        f"The request's headers did not arrive within {timeout:g} s (the server's --header-timeout). "
        "Send the request line and headers without pauses."
    )

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()  # a pipelined request may be half-read now

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _watch(self) -> None:
            # h11 stays IDLE until a request's headers are complete; buffered bytes mean one has begun.
            if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
                if self._header_timer is None:
                    self._arm()
            else:
                self._disarm()

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            self.transport.write(response)
            self.transport.close()

    return HeaderTimeoutProtocol
