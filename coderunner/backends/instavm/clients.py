"""The two InstaVM clients, sync (``httpx.Client``) and async (``httpx.AsyncClient``): they only send."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from coderunner.backends.instavm.protocol import (
    CLIENT_OPTIONS,
    DEFAULT_HTTP_TIMEOUT,
    HTTPX_OPTIONS,
    STREAM_ENDED,
    HttpRequest,
    InstaVMProtocol,
)
from coderunner.browser.actions import BrowserAction
from coderunner.browser.models import BrowserSessionInfo
from coderunner.browser.sugar import AsyncBrowserActionMethods, BrowserActionMethods
from coderunner.config import Settings
from coderunner.errors import (
    BackendError,
    CodeRunnerError,
    ConfigurationError,
    SessionNotFoundError,
)
from coderunner.models import ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

R = TypeVar("R")


class InstaVMBackend(InstaVMProtocol, BrowserActionMethods):
    """Synchronous InstaVM backend (``httpx.Client``). See :class:`coderunner.backend.Backend`.

    Args:
        settings: Runner settings (default timeout).
        api_key: API key (default ``INSTAVM_API_KEY``); optional for a server on loopback.
        base_url: Server URL (default ``INSTAVM_BASE_URL`` or https://api.instavm.io).
        http_timeout: Seconds to wait for answers other than executions.
        max_retries: Retries of requests that could not connect (nothing was sent).
        transport: The httpx transport to send requests through (default: TCP); e.g.
            ``httpx.HTTPTransport(uds=path)`` for a server on a unix socket, as the Docker backend's
            browser container is.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            settings, api_key=api_key, base_url=base_url, http_timeout=http_timeout, max_retries=max_retries
        )
        self._client = httpx.Client(
            headers=self.headers(), timeout=http_timeout, transport=transport or httpx.HTTPTransport(**HTTPX_OPTIONS)
        )

    def _send(self, call: HttpRequest) -> Any:
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.request(
                    call.method,
                    self.url(call.path),
                    json=call.json,
                    data=call.data,
                    files=call.files,
                    params=call.params,
                    timeout=call.timeout or self.http_timeout,
                )
            except httpx.HTTPError as exc:
                retry = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) or (
                    call.idempotent and isinstance(exc, httpx.TransportError)
                )
                if retry and attempt < self.max_retries:
                    time.sleep(self.retry_delay(attempt))
                    continue
                raise self.transport_error(call, exc) from None
            return self.answer(call, response.status_code, response.content)
        raise AssertionError("unreachable")

    def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session on the server (InstaVM's VM)."""
        call, lang = self.create_session_call(spec)
        return self.session_created(self._send(call), lang)

    def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session; SessionNotFoundError once it ended."""
        return self.session_info(self._send(self.get_session_call(session_id)), session_id)

    def list_sessions(self) -> list[SessionInfo]:
        """The live sessions this backend created."""
        alive = []
        for sid in list(self.languages):
            try:
                alive.append(self.get_session(sid))
            except SessionNotFoundError:
                self.languages.pop(sid, None)
        return alive

    def close_session(self, session_id: str) -> None:
        """Stop a session."""
        self._send(self.close_session_call(session_id))
        self.languages.pop(session_id, None)

    def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Run code remotely.

        With callbacks, output is streamed as it comes (coderunner serve) or delivered in one piece
        after the run (other InstaVM servers).
        """
        if (on_stdout is not None or on_stderr is not None) and self.streaming:
            call, lang, warnings = self.stream_call(session_id, request)
            payload = self._stream(call, on_stdout, on_stderr)
            if payload is not None:
                return self.execution_result(payload, session_id, lang, warnings)
        call, lang, warnings = self.execute_call(session_id, request)
        result = self.execution_result(self._send(call), session_id, lang, warnings)
        if on_stdout is not None and result.stdout:
            on_stdout(result.stdout)
        if on_stderr is not None and result.stderr:
            on_stderr(result.stderr)
        return result

    def _stream(
        self, call: HttpRequest, on_stdout: Callable[[str], None] | None, on_stderr: Callable[[str], None] | None
    ) -> Any:
        """Run a streaming execution; None when the server has no streaming route (nothing ran)."""
        for attempt in range(self.max_retries + 1):
            try:
                with self._client.stream(
                    call.method, self.url(call.path), json=call.json, timeout=call.timeout or self.http_timeout
                ) as response:
                    if response.status_code >= 300:
                        error = self.stream_refused(call, response.status_code, response.read())
                        if error is None:
                            return None
                        raise error
                    for line in response.iter_lines():
                        payload = self.stream_event(line, on_stdout, on_stderr)
                        if payload is not None:
                            return payload
                raise BackendError(STREAM_ENDED)
            except httpx.HTTPError as exc:
                if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) and attempt < self.max_retries:
                    time.sleep(self.retry_delay(attempt))
                    continue
                raise self.transport_error(call, exc) from None
        raise AssertionError("unreachable")

    def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution (coderunner serve only)."""
        return self.interrupted(self._send(self.interrupt_call(session_id)))

    def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes to a path in the session."""
        return self.uploaded(self._send(self.upload_call(session_id, path, data)), path, len(data))

    def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file of the session."""
        return self.downloaded(self._send(self.download_call(session_id, path)))

    def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session (coderunner serve only)."""
        return self.file_list(self._send(self.list_files_call(session_id, path)))

    # -- browser capability (coderunner.browser.protocol.BrowserBackend) ---------------------------

    def browser_create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Open an isolated browser session on the server."""
        call, parse = self.browser_create_session_call(viewport_width, viewport_height, user_agent, idle_timeout)
        return parse(self._send(call))

    def browser_get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a browser session."""
        return self.browser_info(self._send(self.browser_get_session_call(session_id)))

    def browser_list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session of the server."""
        return self.browser_session_list(self._send(self.browser_list_sessions_call()))

    def browser_close_session(self, session_id: str) -> None:
        """Close a browser session (a no-op when already closed)."""
        with contextlib.suppress(SessionNotFoundError):
            self._send(self.browser_close_session_call(session_id))

    def browser_act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one browser action on the server."""
        call, parse = self.browser_action_call(session_id, action)
        return parse(self._send(call))

    def close(self) -> None:
        """Stop the sessions this backend created and release the connection pool. Idempotent."""
        if self.closed:
            return
        for bid in list(self.browser_sessions):
            with contextlib.suppress(CodeRunnerError):
                self.browser_close_session(bid)
        for sid in list(self.languages):
            # Already gone or server unreachable: nothing more to do for that session.
            with contextlib.suppress(CodeRunnerError):
                self.close_session(sid)
        self.closed = True
        self._client.close()


class AsyncInstaVMBackend(InstaVMProtocol, AsyncBrowserActionMethods):
    """Asynchronous InstaVM backend (``httpx.AsyncClient``). See :class:`coderunner.backend.AsyncBackend`.

    Takes the same arguments as :class:`InstaVMBackend`.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
        max_retries: int = 2,
    ) -> None:
        super().__init__(
            settings, api_key=api_key, base_url=base_url, http_timeout=http_timeout, max_retries=max_retries
        )
        self._client = httpx.AsyncClient(
            headers=self.headers(), timeout=http_timeout, transport=httpx.AsyncHTTPTransport(**HTTPX_OPTIONS)
        )

    async def _send(self, call: HttpRequest) -> Any:
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._client.request(
                    call.method,
                    self.url(call.path),
                    json=call.json,
                    data=call.data,
                    files=call.files,
                    params=call.params,
                    timeout=call.timeout or self.http_timeout,
                )
            except httpx.HTTPError as exc:
                retry = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) or (
                    call.idempotent and isinstance(exc, httpx.TransportError)
                )
                if retry and attempt < self.max_retries:
                    await asyncio.sleep(self.retry_delay(attempt))
                    continue
                raise self.transport_error(call, exc) from None
            return self.answer(call, response.status_code, response.content)
        raise AssertionError("unreachable")

    async def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session on the server."""
        call, lang = self.create_session_call(spec)
        return self.session_created(await self._send(call), lang)

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session; SessionNotFoundError once it ended."""
        return self.session_info(await self._send(self.get_session_call(session_id)), session_id)

    async def list_sessions(self) -> list[SessionInfo]:
        """The live sessions this backend created."""
        alive = []
        for sid in list(self.languages):
            try:
                alive.append(await self.get_session(sid))
            except SessionNotFoundError:
                self.languages.pop(sid, None)
        return alive

    async def close_session(self, session_id: str) -> None:
        """Stop a session."""
        await self._send(self.close_session_call(session_id))
        self.languages.pop(session_id, None)

    async def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Run code remotely; output is streamed to the callbacks as with :meth:`InstaVMBackend.execute`."""
        if (on_stdout is not None or on_stderr is not None) and self.streaming:
            call, lang, warnings = self.stream_call(session_id, request)
            payload = await self._stream(call, on_stdout, on_stderr)
            if payload is not None:
                return self.execution_result(payload, session_id, lang, warnings)
        call, lang, warnings = self.execute_call(session_id, request)
        result = self.execution_result(await self._send(call), session_id, lang, warnings)
        if on_stdout is not None and result.stdout:
            on_stdout(result.stdout)
        if on_stderr is not None and result.stderr:
            on_stderr(result.stderr)
        return result

    async def _stream(
        self, call: HttpRequest, on_stdout: Callable[[str], None] | None, on_stderr: Callable[[str], None] | None
    ) -> Any:
        """Run a streaming execution; None when the server has no streaming route (nothing ran)."""
        for attempt in range(self.max_retries + 1):
            try:
                async with self._client.stream(
                    call.method, self.url(call.path), json=call.json, timeout=call.timeout or self.http_timeout
                ) as response:
                    if response.status_code >= 300:
                        error = self.stream_refused(call, response.status_code, await response.aread())
                        if error is None:
                            return None
                        raise error
                    async for line in response.aiter_lines():
                        payload = self.stream_event(line, on_stdout, on_stderr)
                        if payload is not None:
                            return payload
                raise BackendError(STREAM_ENDED)
            except httpx.HTTPError as exc:
                if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) and attempt < self.max_retries:
                    await asyncio.sleep(self.retry_delay(attempt))
                    continue
                raise self.transport_error(call, exc) from None
        raise AssertionError("unreachable")

    async def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution (coderunner serve only)."""
        return self.interrupted(await self._send(self.interrupt_call(session_id)))

    async def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes to a path in the session."""
        return self.uploaded(await self._send(self.upload_call(session_id, path, data)), path, len(data))

    async def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file of the session."""
        return self.downloaded(await self._send(self.download_call(session_id, path)))

    async def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session (coderunner serve only)."""
        return self.file_list(await self._send(self.list_files_call(session_id, path)))

    # -- browser capability (coderunner.browser.protocol.AsyncBrowserBackend) ---------------------------

    async def browser_create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Open an isolated browser session on the server."""
        call, parse = self.browser_create_session_call(viewport_width, viewport_height, user_agent, idle_timeout)
        return parse(await self._send(call))

    async def browser_get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a browser session."""
        return self.browser_info(await self._send(self.browser_get_session_call(session_id)))

    async def browser_list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session of the server."""
        return self.browser_session_list(await self._send(self.browser_list_sessions_call()))

    async def browser_close_session(self, session_id: str) -> None:
        """Close a browser session (a no-op when already closed)."""
        with contextlib.suppress(SessionNotFoundError):
            await self._send(self.browser_close_session_call(session_id))

    async def browser_act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one browser action on the server."""
        call, parse = self.browser_action_call(session_id, action)
        return parse(await self._send(call))

    async def aclose(self) -> None:
        """Stop the sessions this backend created and release the connection pool. Idempotent."""
        if self.closed:
            return
        for bid in list(self.browser_sessions):
            with contextlib.suppress(CodeRunnerError):
                await self.browser_close_session(bid)
        for sid in list(self.languages):
            # Already gone or server unreachable: nothing more to do for that session.
            with contextlib.suppress(CodeRunnerError):
                await self.close_session(sid)
        self.closed = True
        await self._client.aclose()


def factory(settings: Settings, *, asynchronous: bool, **options: Any) -> InstaVMBackend | AsyncInstaVMBackend:
    """Registry entry for ``backend="instavm"``; options: api_key, base_url, http_timeout, max_retries."""
    unknown = set(options) - CLIENT_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"The instavm backend does not take: {', '.join(sorted(unknown))}. "
            f"It takes: {', '.join(sorted(CLIENT_OPTIONS))}."
        )
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    cls = AsyncInstaVMBackend if asynchronous else InstaVMBackend
    return cls(settings, **kwargs)
