"""The InstaVM wire without I/O: how every request is built and every answer read (shared by both clients)."""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import ValidationError

from coderunner import _core
from coderunner.browser.actions import BrowserAction
from coderunner.browser.errors import BrowserTimeoutError, ElementNotFoundError
from coderunner.browser.models import BrowserSessionInfo, Viewport
from coderunner.config import Settings
from coderunner.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    CodeRunnerError,
    ConfigurationError,
    FileNotFoundInSessionError,
    RateLimitError,
    SessionNotFoundError,
    UnsupportedOperationError,
    error_for_answer,
    error_for_code,
)
from coderunner.models import ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

DEFAULT_BASE_URL = "https://api.instavm.io"
API_KEY_ENV = "INSTAVM_API_KEY"
BASE_URL_ENV = "INSTAVM_BASE_URL"
DEFAULT_HTTP_TIMEOUT = 30.0
"""Seconds to wait for answers to calls other than execute (execute waits for its own timeout)."""
DEFAULT_LIFETIME = 3600.0
WIRE_MAX_TIMEOUT = 600
_ANSWER_MARGIN = 10.0  # extra seconds an execute call waits beyond the code's own limit
_BACKOFF = 0.25
CLIENT_OPTIONS = {"api_key", "base_url", "http_timeout", "max_retries"}
_UNROUTED = {"route_not_found", "method_not_allowed"}
_BROWSER = "/v1/browser/"
_BROWSER_MARGIN = 10.0  # extra seconds a browser call waits beyond the action's own timeout

NotFound = Callable[[str], CodeRunnerError]
R = TypeVar("R")

HTTPX_OPTIONS: dict[str, Any] = {
    # Short keep-alive: a server closing an idle connection just as we reuse it would fail a POST
    # that must not be retried.
    "limits": httpx.Limits(keepalive_expiry=2.0),
    # httpx sends headers and body in separate writes; with Nagle on, the body can wait for the
    # server's delayed ACK (tens of milliseconds per request).
    "socket_options": [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request, described without sending it."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    params: dict[str, str] | None = None
    timeout: float | None = None
    not_found: NotFound = field(default=lambda detail: SessionNotFoundError(detail))

    @property
    def idempotent(self) -> bool:
        """True when sending it twice cannot run anything twice."""
        return self.method in ("GET", "HEAD")


class InstaVMProtocol:
    """Request building and answer parsing shared by both clients (no I/O here)."""

    name = "instavm"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
        max_retries: int = 2,
    ) -> None:
        self.settings = settings or Settings.from_env(backend="instavm")
        url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must start with http:// or https://, got {url!r}.")
        self.base_url = url.rstrip("/")
        self.api_key = api_key or os.environ.get(API_KEY_ENV) or None
        if self.api_key is None and not _is_loopback_url(self.base_url):
            raise AuthenticationError(
                f"No API key for {self.base_url}. Set {API_KEY_ENV} or pass api_key=... "
                "(only a server on this machine, such as a local 'coderunner serve', may be used without one)."
            )
        if http_timeout <= 0:
            raise ConfigurationError("http_timeout must be positive.")
        if max_retries < 0:
            raise ConfigurationError("max_retries cannot be negative.")
        self.http_timeout = http_timeout
        self.max_retries = max_retries
        self.languages: dict[str, str] = {}  # sessions created here -> their default language
        self.browser_sessions: set[str] = set()  # browser sessions created here, closed by close()
        self.streaming = True  # until the server shows it has no /execute/stream route
        self.closed = False

    # -- plumbing ----------------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        """Headers sent with every request."""
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def check_open(self) -> None:
        """Refuse calls after close()."""
        if self.closed:
            raise ConfigurationError("This backend is closed; create a new CodeRunner.")

    def url(self, path: str) -> str:
        """Absolute URL of a route."""
        return self.base_url + path

    def retry_delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (0-based)."""
        return float(_BACKOFF * (2**attempt))

    def transport_error(self, call: HttpRequest, exc: httpx.HTTPError) -> CodeRunnerError:
        """Translate an httpx failure (nothing usable came back)."""
        where = f"{call.method} {self.base_url}{call.path}"
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return BackendUnavailableError(
                f"Cannot reach the InstaVM server at {self.base_url} ({exc}). Check that it is running and that "
                f"{BASE_URL_ENV} / base_url is right."
            )
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(f"{where} got no answer within {call.timeout or self.http_timeout:g} s.")
        if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
            return ConfigurationError(f"Invalid InstaVM URL {self.base_url!r}: {exc}")
        return BackendError(f"{where} failed: {type(exc).__name__}: {exc}")

    def answer(self, call: HttpRequest, status: int, content: bytes) -> Any:
        """Parse a response: the JSON payload on success, the matching exception otherwise."""
        payload = _json_or_none(content)
        if 200 <= status < 300:
            if payload is None and content:
                raise BackendError(f"{call.method} {call.path} answered {status} with a body that is not JSON.")
            return payload
        raise self.error(call, status, payload, content)

    def error(self, call: HttpRequest, status: int, payload: Any, content: bytes) -> CodeRunnerError:
        """The exception for an error answer."""
        code: str | None = None
        if isinstance(payload, dict):
            raw = payload.get("detail", payload.get("message", ""))
            detail = raw if isinstance(raw, str) else str(raw)
            code = payload.get("code") if isinstance(payload.get("code"), str) else None
        else:
            detail = content.decode("utf-8", "replace").strip()[:500]
        detail = detail or f"HTTP {status}"
        if status == 401:
            # 401 means the caller's key, whoever answers (coderunner serve adds code "authentication").
            return AuthenticationError(
                f"{self.base_url} rejected the API key ({detail}). Set {API_KEY_ENV} or pass api_key=... with a "
                "valid key."
            )
        if status in (404, 405) and (code in _UNROUTED or (code is None and call.not_found is _unsupported)):
            return UnsupportedOperationError(
                f"The server at {self.base_url} has no {call.method} {call.path.split('?')[0]} route ({detail}); "
                "this operation needs coderunner serve."
            )

        def by_status(cls: type[CodeRunnerError]) -> CodeRunnerError:
            # No code this client knows (the InstaVM cloud's shapes): the status's error, made precise by what the
            # call names (which thing a 404 misses, a browser action's 408), and worded from this side where the
            # server is the one refusing or failing.
            if status == 404:
                return call.not_found(detail)
            if status == 408 and call.path.startswith(_BROWSER):
                return BrowserTimeoutError(detail)
            said: dict[type[CodeRunnerError], str] = {
                AuthenticationError: f"{self.base_url} refused the request ({detail}); check {API_KEY_ENV}.",
                RateLimitError: f"{self.base_url} asked to slow down: {detail}",
                BackendUnavailableError: f"{self.base_url} is unavailable ({status}): {detail}",
                BackendError: f"{self.base_url} answered HTTP {status} to {call.method} {call.path}: {detail}",
            }
            return cls(said.get(cls, detail))

        # coderunner serve names the error in a stable code: it wins over the status, which several errors
        # share (403 is also the browser's egress refusal, destination_blocked, not a key problem).
        return error_for_answer(status, code, detail, by_status=by_status)

    # -- sessions ----------------------------------------------------------------------------------

    def create_session_call(self, spec: SessionSpec | None) -> tuple[HttpRequest, str]:
        """The session-creation request and the session's language."""
        self.check_open()
        spec = spec or SessionSpec()
        spec.check_options(self.name)
        if spec.working_dir is not None:
            raise UnsupportedOperationError("working_dir cannot be chosen on the InstaVM backend; omit it.")
        seconds = min(max(math.ceil(spec.lifetime or DEFAULT_LIFETIME), 20), 86_400)
        body: dict[str, Any] = {"api_key": self.api_key or "", "vm_lifetime_seconds": seconds}
        if spec.env:
            body["env"] = dict(spec.env)
        if spec.metadata:
            body["metadata"] = dict(spec.metadata)
        if spec.language != "python":
            body["language"] = spec.language  # coderunner serve honours it; others ignore unknown keys
        if spec.idle_timeout is not None:
            body["idle_timeout"] = spec.idle_timeout
        return HttpRequest("POST", "/v1/sessions/session", json=body), spec.language

    def session_created(self, payload: Any, language: str) -> SessionInfo:
        """Parse the creation answer and remember the session."""
        if not isinstance(payload, dict) or not isinstance(payload.get("session_id"), str):
            raise BackendError("The server did not return a session_id when creating a session.")
        info = self.session_info(payload, payload["session_id"], language)
        self.languages[info.session_id] = info.language
        return info

    def session_info(self, payload: Any, session_id: str, language: str | None = None) -> SessionInfo:
        """Parse a session description; raises SessionNotFoundError when it says the session ended."""
        if not isinstance(payload, dict):
            raise BackendError("The server's session description is not a JSON object.")
        status = str(payload.get("vm_status") or payload.get("status") or "active")
        if status not in ("active", "running", "ready"):
            reason = payload.get("reason") or f"its status is {status!r}"
            raise SessionNotFoundError(f"Session {session_id} is gone: {reason}. Start a new session.")
        known = {k: v for k, v in payload.items() if k in SessionInfo.model_fields}
        try:
            return SessionInfo.model_validate({**known, "status": "active"})
        except ValidationError:
            pass  # not coderunner's shape (the InstaVM cloud): keep what we can read
        created = payload.get("created_at")
        try:
            created_at = datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else _now()
        except ValueError:
            created_at = _now()
        return SessionInfo(
            session_id=session_id,
            status="active",
            language=language or self.languages.get(session_id, "python"),
            working_dir=str(payload.get("working_dir") or ""),
            created_at=created_at,
            last_activity_at=created_at,
            backend=self.name,
        )

    def get_session_call(self, session_id: str) -> HttpRequest:
        """Describe a session."""
        self.check_open()
        return HttpRequest("GET", f"/v1/sessions/session/{quote(session_id, safe='')}")

    def close_session_call(self, session_id: str) -> HttpRequest:
        """Stop a session."""
        self.check_open()
        return HttpRequest("POST", "/kill", json={"session_id": session_id})

    # -- execution ---------------------------------------------------------------------------------

    def execute_call(self, session_id: str, request: ExecRequest) -> tuple[HttpRequest, str, list[str]]:
        """The execute request, the language it runs as, and warnings to attach to the result."""
        self.check_open()
        code = request.code
        lang = request.language_or(self.languages.get(session_id, "python"))
        limit = request.timeout_or(self.settings.timeout)
        warnings = []
        if limit is None or limit > WIRE_MAX_TIMEOUT:
            asked = "no limit" if limit is None else f"{limit:g} s"
            warnings.append(f"the InstaVM protocol allows at most {WIRE_MAX_TIMEOUT} s per execution ({asked} asked)")
            limit = float(WIRE_MAX_TIMEOUT)
        seconds = min(max(math.ceil(limit), 1), WIRE_MAX_TIMEOUT)
        body = {"command": code, "session_id": session_id, "language": lang, "timeout": seconds}
        return HttpRequest("POST", "/execute", json=body, timeout=seconds + _ANSWER_MARGIN), lang, warnings

    def execution_result(self, payload: Any, session_id: str, language: str, warnings: list[str]) -> ExecutionResult:
        """Parse an execute answer: rich fields when present, derived from stdout/stderr/exit_code otherwise."""
        if not isinstance(payload, dict):
            raise BackendError("The server's execution result is not a JSON object.")
        fields = {k: v for k, v in payload.items() if k in ExecutionResult.model_fields and v is not None}
        fields.setdefault("stdout", payload.get("output") or "")
        fields["session_id"] = fields.get("session_id") or session_id
        fields["language"] = fields.get("language") or language
        fields["warnings"] = [*fields.get("warnings", []), *warnings]
        if "status" not in fields:
            exit_code = fields.get("exit_code", 0)
            fields["status"] = "ok" if exit_code in (0, None) else "error"
        try:
            return ExecutionResult.model_validate(fields)
        except ValidationError:
            pass  # a field we do not understand: keep the essentials
        try:
            exit_code = int(payload.get("exit_code") or 0)
        except (TypeError, ValueError):
            exit_code = 1
        return ExecutionResult(
            status="ok" if exit_code == 0 else "error",
            stdout=str(payload.get("stdout") or payload.get("output") or ""),
            stderr=str(payload.get("stderr") or ""),
            exit_code=exit_code,
            language=language,
            session_id=session_id,
            warnings=warnings,
        )

    def stream_call(self, session_id: str, request: ExecRequest) -> tuple[HttpRequest, str, list[str]]:
        """Like :meth:`execute_call`, for coderunner serve's streaming route (NDJSON output events)."""
        call, lang, warnings = self.execute_call(session_id, request)
        return replace(call, path="/execute/stream", not_found=_unsupported), lang, warnings

    def stream_refused(self, call: HttpRequest, status: int, content: bytes) -> CodeRunnerError | None:
        """The error for a refused stream request, or None when the server simply has no such route."""
        error = self.error(call, status, _json_or_none(content), content)
        if status in (404, 405) and isinstance(error, UnsupportedOperationError):
            self.streaming = False  # an InstaVM server without our extension: use /execute from now on
            return None
        return error

    @staticmethod
    def stream_event(
        line: str, on_stdout: Callable[[str], None] | None, on_stderr: Callable[[str], None] | None
    ) -> Any:
        """Handle one NDJSON line: forward output to the callbacks; return the result payload when it arrives."""
        if not line.strip():
            return None
        try:
            event = json.loads(line)
        except ValueError:
            raise BackendError(f"The server's output stream sent a line that is not JSON: {line[:200]!r}") from None
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "stdout" and on_stdout is not None:
            on_stdout(str(event.get("text", "")))
        elif kind == "stderr" and on_stderr is not None:
            on_stderr(str(event.get("text", "")))
        elif kind == "result":
            return event.get("result")
        elif kind == "error":
            raise error_for_code(str(event.get("code") or "backend"), str(event.get("detail") or "execution failed"))
        return None

    def interrupt_call(self, session_id: str) -> HttpRequest:
        """Interrupt the session's running execution (coderunner serve only)."""
        self.check_open()
        return HttpRequest("POST", f"/sessions/{quote(session_id, safe='')}/interrupt", not_found=_unsupported)

    @staticmethod
    def interrupted(payload: Any) -> bool:
        """Parse the interrupt answer."""
        return bool(isinstance(payload, dict) and payload.get("interrupted"))

    # -- files -------------------------------------------------------------------------------------

    def upload_call(self, session_id: str, path: str, data: bytes) -> HttpRequest:
        """Multipart upload of ``data`` to ``path`` in the session."""
        self.check_open()
        _core.check_path_text(path)
        name = PurePosixPath(path).name or "upload"
        return HttpRequest(
            "POST",
            "/upload",
            data={"remote_path": path, "session_id": session_id, "recursive": "false"},
            files={"file": (name, bytes(data), "application/octet-stream")},
            not_found=lambda detail: SessionNotFoundError(detail),
        )

    @staticmethod
    def uploaded(payload: Any, path: str, size: int) -> FileInfo:
        """Parse the upload answer."""
        if isinstance(payload, dict):
            modified = payload.get("modified_at")
            try:
                modified_at = datetime.fromisoformat(str(modified).replace("Z", "+00:00")) if modified else _now()
            except ValueError:
                modified_at = _now()
            return FileInfo(
                path=str(payload.get("path") or path), size=int(payload.get("size") or size), modified_at=modified_at
            )
        return FileInfo(path=path, size=size, modified_at=_now())

    def download_call(self, session_id: str, path: str) -> HttpRequest:
        """Form-encoded download of ``path``."""
        self.check_open()
        _core.check_path_text(path)
        return HttpRequest(
            "POST",
            "/download",
            data={"filename": path, "session_id": session_id},
            not_found=lambda detail: FileNotFoundInSessionError(detail),
        )

    @staticmethod
    def downloaded(payload: Any) -> bytes:
        """Decode the base64 ``content`` of a download answer."""
        if not isinstance(payload, dict) or not isinstance(payload.get("content"), str):
            raise BackendError("The server's download answer has no base64 'content'.")
        try:
            return base64.b64decode(payload["content"], validate=True)
        except ValueError as exc:
            raise BackendError(f"The server's download content is not valid base64: {exc}") from None

    def list_files_call(self, session_id: str, path: str) -> HttpRequest:
        """List a directory (coderunner serve only)."""
        self.check_open()
        return HttpRequest(
            "GET", f"/sessions/{quote(session_id, safe='')}/files", params={"path": path}, not_found=_unsupported
        )

    @staticmethod
    def file_list(payload: Any) -> list[FileInfo]:
        """Parse a directory listing."""
        if not isinstance(payload, dict) or not isinstance(payload.get("files"), list):
            raise BackendError("The server's file listing has no 'files' list.")
        try:
            return [FileInfo.model_validate(item) for item in payload["files"]]
        except ValidationError as exc:
            raise BackendError(f"The server's file listing was not understood: {exc}") from None

    # -- browser -----------------------------------------------------------------------------------

    def browser_create_session_call(
        self, viewport_width: int, viewport_height: int, user_agent: str | None, idle_timeout: float | None
    ) -> tuple[HttpRequest, Callable[[Any], BrowserSessionInfo]]:
        """Open a browser session."""
        self.check_open()
        body: dict[str, Any] = {"viewport_width": viewport_width, "viewport_height": viewport_height}
        if user_agent:
            body["user_agent"] = user_agent
        if idle_timeout is not None:
            body["idle_timeout"] = idle_timeout  # coderunner serve honours it; others ignore unknown keys
        viewport = Viewport(width=viewport_width, height=viewport_height)

        def parse(payload: Any) -> BrowserSessionInfo:
            info = self.browser_info(payload, viewport)
            self.browser_sessions.add(info.session_id)
            return info

        return HttpRequest("POST", f"{_BROWSER}sessions/", json=body), parse

    def browser_info(self, payload: Any, viewport: Viewport | None = None) -> BrowserSessionInfo:
        """Parse a browser session description (coderunner's shape, or the least any server sends)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("session_id"), str):
            raise BackendError("The server's browser session description has no session_id.")
        known = {k: v for k, v in payload.items() if k in BrowserSessionInfo.model_fields}
        try:
            return BrowserSessionInfo.model_validate(known)
        except ValidationError:
            pass  # not coderunner's shape: keep what we can read
        now = _now()
        return BrowserSessionInfo(
            session_id=payload["session_id"],
            viewport=viewport or Viewport(width=1920, height=1080),
            created_at=now,
            last_activity_at=now,
            backend=self.name,
        )

    def browser_get_session_call(self, session_id: str) -> HttpRequest:
        """Describe a browser session."""
        self.check_open()
        return HttpRequest("GET", f"{_BROWSER}sessions/{quote(session_id, safe='')}")

    def browser_list_sessions_call(self) -> HttpRequest:
        """List the server's browser sessions."""
        self.check_open()
        return HttpRequest("GET", f"{_BROWSER}sessions/")

    def browser_session_list(self, payload: Any) -> list[BrowserSessionInfo]:
        """Parse the session listing."""
        if not isinstance(payload, dict) or not isinstance(payload.get("sessions"), list):
            raise BackendError("The server's browser session listing has no 'sessions' list.")
        return [self.browser_info(item) for item in payload["sessions"]]

    def browser_close_session_call(self, session_id: str) -> HttpRequest:
        """Close a browser session."""
        self.check_open()
        self.browser_sessions.discard(session_id)
        return HttpRequest("DELETE", f"{_BROWSER}sessions/{quote(session_id, safe='')}")

    def browser_action_call(self, session_id: str, action: BrowserAction[R]) -> tuple[HttpRequest, Callable[[Any], R]]:
        """A browser action's request, and the parser of its answer.

        The action says it all: its route, its body, how long it may take (the HTTP call waits that long
        plus a margin, and at least ``http_timeout``) and whether a 404 means the element or the session.
        """
        self.check_open()
        timeout = max(self.http_timeout, action.wait_ms / 1000 + _BROWSER_MARGIN)
        not_found: NotFound = ElementNotFoundError if action.finds_element else SessionNotFoundError
        call = HttpRequest(
            "POST",
            f"{_BROWSER}interactions/{action.route}",
            json=action.wire_body(session_id),
            timeout=timeout,
            not_found=not_found,
        )
        return call, lambda payload: action.parse_answer(payload, session_id)


def _unsupported(detail: str) -> CodeRunnerError:
    return UnsupportedOperationError(detail)


def _json_or_none(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


STREAM_ENDED = "The server's output stream ended before the execution's result arrived."
