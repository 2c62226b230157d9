"""The server's front door, as one plain ASGI middleware: path clean-up, body size limit, API-key check.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: it adds microseconds, not a task per
request, to the hot ``/execute`` path.

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
  the InstaVM SDK sends its key in that request's JSON body, and the route checks it there.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

__all__ = [
    "AUTH_IN_BODY",
    "DEFAULT_ALLOWED_HOSTS",
    "OPEN_PATHS",
    "GatewayMiddleware",
    "PayloadTooLargeError",
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

SESSION_CREATE_PATH = "/v1/sessions/session"
_SLASHES = re.compile(r"/{2,}")


class PayloadTooLargeError(HTTPException):
    """A request body passed the configured limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit))


def _too_large_message(limit: int) -> str:
    return (
        f"The request body is larger than the server's limit of {limit} bytes ({limit / 1_048_576:.0f} MiB). "
        "Send a smaller file, or start the server with a larger --max-body-size."
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


async def _drain(receive: Receive) -> None:
    """Consume the rest of a request body without keeping it."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


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
    ) -> None:
        self.app = app
        self.api_key = api_key or None
        self.max_body_bytes = max_body_bytes
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

        if length is not None and length > self.max_body_bytes:
            # Read (and drop) the body first: clients send it all before reading the answer, and
            # closing on them mid-upload turns the 413 into a "connection reset".
            await _drain(receive)
            await _send_json(
                send,
                413,
                {"detail": _too_large_message(self.max_body_bytes), "code": "invalid_request", "retryable": False},
                [(b"connection", b"close")],
            )
            return

        if self.api_key is not None and path not in self.open_paths and not keys_match(key, self.api_key):
            if key is None and path == SESSION_CREATE_PATH and scope["method"] == "POST":
                scope = dict(scope)
                scope[AUTH_IN_BODY] = True
            else:
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

        if length is None:
            receive = self._counting(receive)
        await self.app(scope, receive, send)

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

    def _counting(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body", False):
                        await _drain(receive)
                    raise PayloadTooLargeError(limit)
            return message

        return counted
