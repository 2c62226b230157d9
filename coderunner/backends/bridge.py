"""One generic bridge between the backend protocols: an async backend from a sync one, and back.

Each backend is written once, in its natural colour (InProcess async: its engine runs on an event loop;
Docker sync: the Docker SDK and threads), and gets its twin from here:

* :class:`AsyncBridge` makes an :class:`~coderunner.backend.AsyncBackend` out of a sync backend: every
  call runs in a worker thread, so the caller's loop stays free. When the task awaiting an ``execute`` is
  cancelled, the worker thread cannot be: the bridge interrupts that session, so the code stops (the
  session keeps its state) instead of running on unobserved. ``aclose`` is the wrapped ``close``.
* :class:`SyncBridge` makes a :class:`~coderunner.backend.Backend` out of an async backend: every
  coroutine runs on a :class:`~coderunner._loop.LoopThread` (not ``asyncio.run``, which fails inside a
  running loop: Jupyter, FastAPI), the bridge's own or one the wrapped backend already runs on. ``close``
  awaits the wrapped ``aclose``; later calls raise :class:`~coderunner.errors.ConfigurationError`.

The browser capability (:mod:`coderunner.browser.protocol`) is bridged too, by the
:class:`AsyncBrowserBridge` and :class:`SyncBrowserBridge` subclasses: the session methods and the one
``browser_act`` (the ``browser_navigate`` ... sugar comes from :mod:`coderunner.browser.sugar`). It is
detected with ``isinstance``, so a bridge has the ``browser_*`` methods only when the backend it wraps
has them. :func:`to_async_backend` and :func:`to_sync_backend` pick the class; a backend module
subclasses one to keep its own constructor.
Errors pass through unchanged, as the same exception objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar, overload

from coderunner._loop import LoopThread
from coderunner.backend import AsyncBackend, Backend, OutputCallback
from coderunner.browser.actions import BrowserAction
from coderunner.browser.models import BrowserSessionInfo
from coderunner.browser.protocol import AsyncBrowserBackend, BrowserBackend
from coderunner.browser.sugar import AsyncBrowserActionMethods, BrowserActionMethods
from coderunner.errors import CodeRunnerError, ConfigurationError
from coderunner.models import ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

__all__ = [
    "AsyncBridge",
    "AsyncBrowserBridge",
    "AsyncBrowserCapableBackend",
    "BrowserCapableBackend",
    "SyncBridge",
    "SyncBrowserBridge",
    "to_async_backend",
    "to_sync_backend",
]

T = TypeVar("T")
R = TypeVar("R")


class BrowserCapableBackend(Backend, BrowserBackend, Protocol):
    """A :class:`~coderunner.backend.Backend` that also has the browser capability."""


class AsyncBrowserCapableBackend(AsyncBackend, AsyncBrowserBackend, Protocol):
    """An :class:`~coderunner.backend.AsyncBackend` that also has the browser capability."""


S = TypeVar("S", bound=Backend)
SB = TypeVar("SB", bound=BrowserCapableBackend)
A = TypeVar("A", bound=AsyncBackend)
AB = TypeVar("AB", bound=AsyncBrowserCapableBackend)


# -- async from sync: calls in worker threads ----------------------------------------------------------


class AsyncBridge(Generic[S]):
    """An :class:`~coderunner.backend.AsyncBackend` running a sync backend's calls in worker threads.

    Args:
        wrapped: The sync backend; it must be safe to call from several threads at once.
    """

    name: str

    def __init__(self, wrapped: S) -> None:
        self.wrapped = wrapped
        self.name = wrapped.name

    async def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session (the wrapped backend checks the spec's options)."""
        return await asyncio.to_thread(self.wrapped.create_session, spec)

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return await asyncio.to_thread(self.wrapped.get_session, session_id)

    async def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        return await asyncio.to_thread(self.wrapped.list_sessions)

    async def close_session(self, session_id: str) -> None:
        """Stop a session."""
        await asyncio.to_thread(self.wrapped.close_session, session_id)

    async def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``request`` in a session (the callbacks are called from a worker thread); cancelling interrupts it."""
        try:
            return await asyncio.to_thread(
                self.wrapped.execute, session_id, request, on_stdout=on_stdout, on_stderr=on_stderr
            )
        except asyncio.CancelledError:
            # The worker thread cannot be cancelled and keeps waiting: stop the code it waits for, so the
            # session is free for the next call. Shielded, so a second cancel does not lose the interrupt.
            with contextlib.suppress(CodeRunnerError):
                await asyncio.shield(asyncio.to_thread(self.wrapped.interrupt, session_id))
            raise

    async def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution."""
        return await asyncio.to_thread(self.wrapped.interrupt, session_id)

    async def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes into the session directory."""
        return await asyncio.to_thread(self.wrapped.upload_file, session_id, path, data)

    async def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory."""
        return await asyncio.to_thread(self.wrapped.download_file, session_id, path)

    async def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session."""
        return await asyncio.to_thread(self.wrapped.list_files, session_id, path)

    async def aclose(self) -> None:
        """Close the wrapped backend (in a worker thread: closing blocks)."""
        await asyncio.to_thread(self.wrapped.close)


class AsyncBrowserBridge(AsyncBridge[SB], AsyncBrowserActionMethods):
    """An :class:`AsyncBridge` whose sync backend has the browser capability, awaited here too."""

    async def browser_create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Open an isolated browser session."""
        return await asyncio.to_thread(
            self.wrapped.browser_create_session, viewport_width, viewport_height, user_agent, idle_timeout=idle_timeout
        )

    async def browser_get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a browser session."""
        return await asyncio.to_thread(self.wrapped.browser_get_session, session_id)

    async def browser_list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session."""
        return await asyncio.to_thread(self.wrapped.browser_list_sessions)

    async def browser_close_session(self, session_id: str) -> None:
        """Close a browser session."""
        await asyncio.to_thread(self.wrapped.browser_close_session, session_id)

    async def browser_act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one browser action (in a worker thread, as every call)."""
        return await asyncio.to_thread(self.wrapped.browser_act, session_id, action)


# -- sync from async: coroutines on a loop thread ------------------------------------------------------


class SyncBridge(Generic[A]):
    """A :class:`~coderunner.backend.Backend` running an async backend's coroutines on a loop thread.

    Args:
        wrapped: The async backend; all its coroutines run on the one loop of ``loop``.
        loop: The loop thread to run them on, when the wrapped backend already has one (it stays the
            backend's: the bridge does not stop it). Default: a loop thread of the bridge's own, stopped
            by :meth:`close` (or when the bridge is garbage-collected).
    """

    name: str

    def __init__(self, wrapped: A, *, loop: LoopThread | None = None) -> None:
        self.wrapped = wrapped
        self.name = wrapped.name
        self._closed = False
        self._stop_loop: Callable[[], object] | None = None
        if loop is None:
            loop = LoopThread(name=f"coderunner-{wrapped.name}-bridge")
            self._stop_loop = weakref.finalize(self, loop.stop)
        self._loop = loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:  # the loop may be stopped: a coroutine sent there would never finish
            coro.close()
            raise ConfigurationError("This backend is closed; create a new CodeRunner.")
        return self._loop.run(coro)

    def _shutdown(self) -> None:
        """Release the wrapped backend: await its ``aclose`` on the loop.

        A subclass overrides this when that ``aclose`` cannot run there (one that stops the very loop).
        """
        self._loop.run(self.wrapped.aclose())

    def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session (the wrapped backend checks the spec's options)."""
        return self._run(self.wrapped.create_session(spec))

    def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return self._run(self.wrapped.get_session(session_id))

    def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        return self._run(self.wrapped.list_sessions())

    def close_session(self, session_id: str) -> None:
        """Stop a session."""
        self._run(self.wrapped.close_session(session_id))

    def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``request`` in a session (the callbacks are called from the loop thread)."""
        return self._run(self.wrapped.execute(session_id, request, on_stdout=on_stdout, on_stderr=on_stderr))

    def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution."""
        return self._run(self.wrapped.interrupt(session_id))

    def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes into the session directory."""
        return self._run(self.wrapped.upload_file(session_id, path, data))

    def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory."""
        return self._run(self.wrapped.download_file(session_id, path))

    def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session."""
        return self._run(self.wrapped.list_files(session_id, path))

    def close(self) -> None:
        """Close the wrapped backend, then stop the loop thread if it is the bridge's own. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._shutdown()
        finally:
            if self._stop_loop is not None:
                self._stop_loop()


class SyncBrowserBridge(SyncBridge[AB], BrowserActionMethods):
    """A :class:`SyncBridge` whose async backend has the browser capability, run synchronously here too."""

    def browser_create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Open an isolated browser session."""
        return self._run(
            self.wrapped.browser_create_session(viewport_width, viewport_height, user_agent, idle_timeout=idle_timeout)
        )

    def browser_get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a browser session."""
        return self._run(self.wrapped.browser_get_session(session_id))

    def browser_list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session."""
        return self._run(self.wrapped.browser_list_sessions())

    def browser_close_session(self, session_id: str) -> None:
        """Close a browser session."""
        self._run(self.wrapped.browser_close_session(session_id))

    def browser_act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one browser action."""
        return self._run(self.wrapped.browser_act(session_id, action))


# -- picking the class ---------------------------------------------------------------------------------


@overload
def to_async_backend(backend: SB) -> AsyncBrowserBridge[SB]: ...
@overload
def to_async_backend(backend: S) -> AsyncBridge[S]: ...
def to_async_backend(backend: Backend) -> AsyncBridge[Any]:
    """The async twin of a sync backend, with the browser capability when ``backend`` has it."""
    if isinstance(backend, BrowserBackend):
        return AsyncBrowserBridge(backend)
    return AsyncBridge(backend)


@overload
def to_sync_backend(backend: AB, *, loop: LoopThread | None = None) -> SyncBrowserBridge[AB]: ...
@overload
def to_sync_backend(backend: A, *, loop: LoopThread | None = None) -> SyncBridge[A]: ...
def to_sync_backend(backend: AsyncBackend, *, loop: LoopThread | None = None) -> SyncBridge[Any]:
    """The sync twin of an async backend, with the browser capability when ``backend`` has it.

    Args:
        backend: The async backend.
        loop: The loop thread its coroutines must run on, if it has one; default: a new one, stopped
            with the bridge.
    """
    if isinstance(backend, AsyncBrowserBackend):
        return SyncBrowserBridge(backend, loop=loop)
    return SyncBridge(backend, loop=loop)
