"""The host's HTTP client for a sandbox's agent: pinned connections, answers the agent must prove, capped reads.

Everything that answers on a sandbox's socket is untrusted: the code in the sandbox runs as the same user as the
agent and can write the directory that holds the agent's unix socket. So the host never trusts a path or an answer:

* **Pinned socket** (:func:`connect_unix`): the socket file is opened with ``O_PATH | O_NOFOLLOW`` and must be a
  socket inode, and the connection goes to that very inode (``/proc/self/fd/N``). A symlink put in its place (to
  the host's Docker socket, say) is refused, and nothing can be swapped in between the check and the connect.
* **Proven answers**: every request carries a fresh nonce; the agent answers with an HMAC, under a per-box key the
  sandboxed code cannot read, of the nonce, a digest of the exact request and a digest of the exact answer
  (:func:`answer_proof`). A server of the user's own on the socket path cannot forge it, and cannot relay a real
  answer to a different request either. Streamed answers (NDJSON) end with a proof line over everything before it.
  How the agent keeps the key from the sandboxed code (a file it reads and deletes before any user code runs, and
  a process that is not dumpable) is in :mod:`coderunner.backends.docker` (``run_agent``).
* **Capped reads**: no answer is read past ``max_bytes``; a larger one is refused before it is read.

Errors: :class:`AgentUnreachable` (connect or transfer failed; ``sent`` tells whether the request may have
reached the agent), :class:`AgentForged` (an answer without a valid proof), :class:`AnswerTooLarge`
(a :class:`~coderunner.errors.BackendError`), and the coderunner error an agent's error answer stands for.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import queue
import secrets
import select
import socket
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from coderunner.errors import BackendError, CodeRunnerError, error_for_answer

__all__ = [
    "KEY_FILE",
    "NONCE_HEADER",
    "PROOF_HEADER",
    "PROOF_TRAILER",
    "AgentClient",
    "AgentForged",
    "AgentUnreachable",
    "Answer",
    "AnswerTooLarge",
    "answer_proof",
    "connect_unix",
    "error_for",
    "httpx_transport",
    "new_key",
    "request_digest",
]

NONCE_HEADER = "X-Coderunner-Nonce"
PROOF_HEADER = "X-Coderunner-Proof"
PROOF_TRAILER = "trailer"
"""The value of the proof header of a streamed answer: the proof is its last NDJSON line, ``{"t": "proof"}``."""
KEY_FILE = "agent.key"
"""Name of the file, in the socket directory, that hands the agent its key (read and deleted at its start)."""
_TAG = b"coderunner-agent-proof-v1\n"


def new_key() -> bytes:
    """A fresh per-box key."""
    return secrets.token_bytes(32)


def request_digest(method: str, target: str | bytes, body: bytes) -> bytes:
    """Digest of a request as sent: method, target (path and query, as on the request line) and body."""
    raw = target.encode("utf-8", "surrogateescape") if isinstance(target, str) else target
    return hashlib.sha256(method.upper().encode() + b" " + raw + b"\n" + hashlib.sha256(body).digest()).digest()


def answer_proof(key: bytes, nonce: str, request: bytes, status: int, body_digest: bytes) -> str:
    """The proof an agent gives for an answer: HMAC-SHA256 of the nonce, the request digest, status and body digest."""
    message = _TAG + nonce.encode("ascii", "replace") + b"\n" + request + str(status).encode() + b"\n" + body_digest
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class AgentUnreachable(Exception):
    """The agent could not be reached, or went away during a request."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent  # False: the request never reached the agent (safe to send again elsewhere)


class AgentForged(Exception):
    """Something answered on the agent's socket without proving it is the agent."""


class AnswerTooLarge(BackendError):
    """An answer longer than the cap the host reads."""


@dataclass(frozen=True)
class Answer:
    """A verified answer of the agent."""

    status: int
    content: bytes
    content_type: str = "application/json"

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.content)


def error_for(status: int, content: bytes) -> CodeRunnerError:
    """The coderunner error an agent's error answer stands for (the shared table: :func:`error_for_answer`)."""
    code: str | None
    try:
        body = json.loads(content)
        code, detail = body.get("code"), str(body.get("detail", ""))
    except (ValueError, AttributeError):
        code, detail = None, content[:500].decode("utf-8", "replace")
    if code in ("route_not_found", "method_not_allowed", "error"):
        # The agent is our own server: a route it lacks (a version mismatch) or an unexpected failure of it.
        return BackendError(f"The sandbox's agent answered HTTP {status}: {detail}")

    def by_status(cls: type[CodeRunnerError]) -> CodeRunnerError:
        if cls is BackendError:
            return BackendError(f"The sandbox's agent answered HTTP {status}: {detail}")
        return cls(detail)

    return error_for_answer(status, code if isinstance(code, str) else None, detail, by_status=by_status)


def connect_unix(path: Path, timeout: float | None = 10.0) -> socket.socket:
    """Connect to the unix socket at ``path``, refusing anything but a socket inode there (no symlinks).

    Raises:
        OSError: Nothing to connect to, or not a socket (``ENOTSOCK``).
    """
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(88, f"{path} is not a socket (something in the sandbox replaced it)")  # ENOTSOCK
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            # The inode checked above, whatever the path names by now.
            sock.connect(f"/proc/self/fd/{fd}")
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


class _Connection(http.client.HTTPConnection):
    """``http.client`` to the agent over a pinned unix socket, or TCP."""

    def __init__(self, uds: Path | None, host: str, port: int | None) -> None:
        super().__init__(host, port)
        self.uds = uds

    def connect(self) -> None:
        if self.uds is None:
            super().connect()
            return
        self.sock = connect_unix(self.uds)


def _dropped(sock: socket.socket) -> bool:
    """True when an idle kept-alive connection is no longer fit to send on.

    An idle HTTP/1.1 connection has nothing to read: readable means the peer closed it, or sent bytes nobody
    asked for (which would be taken for the next answer). Either way it is closed, never reused.
    """
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class AgentClient:
    """A synchronous HTTP client for one sandbox's agent (thread-safe: each request takes its own connection).

    Args:
        key: The box's key; every answer must carry its proof.
        uds: The agent's unix socket (the default transport).
        url: ``http://host:port`` of the agent (TCP transport).
        api_key: Sent as ``X-API-Key`` (TCP only: there the agent also checks who calls it).
        max_bytes: The longest answer read by default.
    """

    def __init__(
        self,
        *,
        key: bytes,
        uds: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        max_bytes: int = 64 * 1024**2,
    ) -> None:
        if (uds is None) == (url is None):
            raise ValueError("give exactly one of uds and url")
        self.key = key
        self.uds = uds
        self.url = url
        self.api_key = api_key
        self.max_bytes = max_bytes
        hostport = (url or "http://localhost").removeprefix("http://")
        host, _, port = hostport.partition(":")
        self._host, self._port = host, int(port) if port else None
        self._headers = {"X-API-Key": api_key} if api_key else {}
        # Kept-alive connections: a Python round trip is a few ms, a new connection would be a good part of it.
        self._idle: queue.SimpleQueue[_Connection] = queue.SimpleQueue()

    def close(self) -> None:
        """Close every kept-alive connection."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break

    # -- connections --------------------------------------------------------------------------------

    def _connection(self) -> tuple[_Connection, bool]:
        """An idle connection (reused=True) or a new one."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return _Connection(self.uds, self._host, self._port), False
            if conn.sock is not None and not _dropped(conn.sock):
                return conn, True
            conn.close()

    def _send(
        self, method: str, target: str, body: bytes, headers: Mapping[str, str], timeout: float | None
    ) -> tuple[_Connection, http.client.HTTPResponse, str, bytes]:
        """Send a request; a kept-alive connection that turns out stale is replaced once, transparently.

        Only a failure before any byte of the answer counts as stale: the agent closed the idle connection, so it
        never read the request. (Executions carry a request id besides, so even a resend the agent did read runs
        the code once.)
        """
        nonce = secrets.token_hex(16)
        digest = request_digest(method, target, body)
        all_headers = {**self._headers, **headers, NONCE_HEADER: nonce, "Content-Length": str(len(body))}
        # Whether an earlier attempt may have reached the agent: a connection that breaks before the answer is
        # either stale (never read) or the agent died of the request (read it, ran it); nobody can tell which.
        maybe_sent = False
        for attempt in (1, 2):
            conn, reused = self._connection()
            fresh = conn.sock is None
            try:
                if fresh:
                    conn.connect()
                assert conn.sock is not None
                conn.sock.settimeout(timeout)
            except OSError as exc:
                conn.close()
                raise AgentUnreachable(f"{type(exc).__name__}: {exc}", sent=maybe_sent) from None
            try:
                conn.request(method, target, body=body, headers=all_headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and attempt == 1 and isinstance(exc, (ConnectionError, http.client.RemoteDisconnected)):
                    maybe_sent = True
                    continue
                raise AgentUnreachable(f"{type(exc).__name__}: {exc}", sent=True) from None
            return conn, response, nonce, digest
        raise AssertionError("unreachable")  # pragma: no cover

    def _release(self, conn: _Connection, response: http.client.HTTPResponse) -> None:
        # After a server error the agent may drop the connection without saying so: never reuse one then.
        if response.will_close or response.status >= 500:
            conn.close()
        else:
            self._idle.put(conn)

    # -- requests -----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes = b"",
        json_body: Any = None,
        timeout: float | None = 60.0,
        max_bytes: int | None = None,
        too_large: str | None = None,
        headers: Mapping[str, str] | None = None,
        raise_for_status: bool = True,
    ) -> Answer:
        """Send a request and return the verified answer (raising the error an error answer stands for).

        Args:
            method: HTTP method.
            path: Path on the agent.
            params: Query parameters.
            body: Raw body (``application/octet-stream``).
            json_body: A JSON body instead.
            timeout: Seconds to wait for each read (None: no limit).
            max_bytes: The longest answer to read (default: the client's).
            too_large: The message of the :class:`AnswerTooLarge` raised past ``max_bytes`` ({size}, {limit}).
            headers: More request headers.
            raise_for_status: Raise the error an error answer stands for (else return it).

        Raises:
            AgentUnreachable: The agent could not be reached or went away.
            AgentForged: The answer did not carry the agent's proof.
            AnswerTooLarge: The answer is longer than ``max_bytes``.
        """
        target = path + ("?" + urlencode(params) if params else "")
        # Header names are case-insensitive: one Content-Type, the caller's if it gave one.
        sent_headers = {"Content-Type": "application/octet-stream"}
        for name, value in (headers or {}).items():
            sent_headers["Content-Type" if name.lower() == "content-type" else name] = value
        if json_body is not None:
            body, sent_headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        conn, response, nonce, digest = self._send(method, target, body, sent_headers, timeout)
        limit = self.max_bytes if max_bytes is None else max_bytes
        try:
            content = self._read_capped(response, limit, too_large)
        except AnswerTooLarge:
            conn.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise AgentUnreachable(f"{type(exc).__name__}: {exc}", sent=True) from None
        self._release(conn, response)
        given = response.getheader(PROOF_HEADER) or ""
        expected = answer_proof(self.key, nonce, digest, response.status, hashlib.sha256(content).digest())
        if not hmac.compare_digest(given, expected):
            raise AgentForged(f"the answer to {method} {path} (HTTP {response.status}) carries no valid proof")
        if response.status >= 400 and raise_for_status:
            raise error_for(response.status, content)
        return Answer(response.status, content, response.getheader("Content-Type") or "application/octet-stream")

    @staticmethod
    def _read_capped(response: http.client.HTTPResponse, limit: int, too_large: str | None) -> bytes:
        def refuse(size: str) -> AnswerTooLarge:
            text = too_large or (
                "The sandbox's agent sent an answer of {size} bytes, more than the {limit} bytes the host reads "
                "(CODERUNNER_MAX_ANSWER_BYTES); it was not read."
            )
            return AnswerTooLarge(text.format(size=size, limit=limit))

        if response.length is not None and response.length > limit:
            raise refuse(str(response.length))
        content = response.read(limit + 1)
        if len(content) > limit:
            raise refuse(f"more than {limit}")
        return content

    def stream(
        self, method: str, path: str, *, json_body: Any, timeout: float | None, max_line: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Send a request whose answer is NDJSON and yield its events, checking the closing proof line.

        Events are yielded as they come (for live output); the proof covers every byte before it, so a forged
        stream is detected at its end (:class:`AgentForged`) and its result is never returned.
        """
        body = json.dumps(json_body).encode()
        conn, response, nonce, digest = self._send(method, path, body, {"Content-Type": "application/json"}, timeout)
        limit = self.max_bytes if max_line is None else max_line
        try:
            if response.status >= 400 or response.getheader(PROOF_HEADER) != PROOF_TRAILER:
                content = self._read_capped(response, limit, None)
                expected = answer_proof(self.key, nonce, digest, response.status, hashlib.sha256(content).digest())
                if not hmac.compare_digest(response.getheader(PROOF_HEADER) or "", expected):
                    raise AgentForged(f"the answer to {method} {path} (HTTP {response.status}) carries no valid proof")
                raise error_for(response.status, content)
            seen = hashlib.sha256()
            while True:
                line = response.readline(limit + 1)
                if not line:
                    raise AgentUnreachable("the agent closed the stream before its end", sent=True)
                if len(line) > limit and not line.endswith(b"\n"):
                    raise AnswerTooLarge(
                        f"The sandbox's agent sent an event longer than the {limit} bytes the host reads "
                        "(CODERUNNER_MAX_ANSWER_BYTES)."
                    )
                event = json.loads(line)
                if event.get("t") == "proof":
                    expected = answer_proof(self.key, nonce, digest, response.status, seen.digest())
                    if not hmac.compare_digest(str(event.get("p", "")), expected):
                        raise AgentForged(f"the stream answering {method} {path} carries no valid proof")
                    return
                seen.update(line)
                yield event
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise AgentUnreachable(f"{type(exc).__name__}: {exc}", sent=True) from None
        finally:
            # Streams are the rare path (live output callbacks): a new connection next time costs nothing.
            conn.close()


def httpx_transport(client: AgentClient) -> Any:
    """An ``httpx`` transport that sends through ``client`` (pinned socket, proven and capped answers).

    For code that speaks to an agent through an httpx-based client (the InstaVM client driving the Docker
    backend's browser container), so that it gets the same protections as the sessions' own calls.
    """
    import httpx

    class _AgentTransport(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            timeout = (request.extensions.get("timeout") or {}).get("read")
            forwarded = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
            try:
                answer = client.request(
                    request.method,
                    request.url.raw_path.decode("ascii"),
                    body=request.read(),
                    headers=forwarded,
                    timeout=timeout,
                    raise_for_status=False,
                )
            except AgentUnreachable as exc:
                error = httpx.ConnectError if not exc.sent else httpx.ReadError
                raise error(str(exc), request=request) from None
            except (AgentForged, AnswerTooLarge) as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from None
            return httpx.Response(
                answer.status, headers={"Content-Type": answer.content_type}, content=answer.content, request=request
            )

    return _AgentTransport()
