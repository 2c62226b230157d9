"""The InProcess backend: Jupyter/bash/node kernels as child processes of the caller.

Not a security boundary: code runs as your user, with your files and network.
Use the Docker backend for untrusted code.

It also has the browser capability (:mod:`coderunner.browser.protocol`): a Chromium driven by
Playwright (:mod:`coderunner.engine.browser`) on the same engine thread, started on the first browser
session; every action goes to :meth:`~coderunner.engine.browser.engine.BrowserEngine.act`.

The engine is async, so :class:`AsyncInProcessBackend` is the implementation; :class:`InProcessBackend`
is its sync twin from :mod:`coderunner.backends.bridge`, running its coroutines on the engine's own loop
thread (one thread, no hop between loops).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from coderunner._loop import LoopThread
from coderunner.backends.bridge import SyncBrowserBridge
from coderunner.browser.actions import BrowserAction
from coderunner.browser.config import BrowserSettings
from coderunner.browser.models import BrowserSessionInfo
from coderunner.browser.sugar import AsyncBrowserActionMethods
from coderunner.config import Settings
from coderunner.engine.browser.engine import BrowserEngine
from coderunner.engine.engine import Engine
from coderunner.errors import ConfigurationError
from coderunner.models import ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

__all__ = ["AsyncInProcessBackend", "InProcessBackend", "factory"]

T = TypeVar("T")
R = TypeVar("R")


class _Host:
    """An :class:`Engine` running on its own loop thread."""

    def __init__(self, settings: Settings, backend_name: str) -> None:
        self.thread = LoopThread()
        self.engine = Engine(settings, backend_name=backend_name)
        self.browser: BrowserEngine | None = None
        self.browser_lock = threading.Lock()
        self.closed = False
        try:
            self.thread.run(self.engine.start())
        except BaseException:
            self.thread.stop()
            raise

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.thread.run(self._close_all(), timeout=30)
        except Exception:  # the loop may already be gone at interpreter exit; kill directly
            if self.browser is not None:
                self.browser.kill_now()
            self.engine.kill_now()
        finally:
            self.thread.stop()

    async def _close_all(self) -> None:
        if self.browser is not None:
            await self.browser.close()
        await self.engine.close()

    def get_browser(self, settings: BrowserSettings | None, backend_name: str) -> BrowserEngine:
        """The browser engine, created on first use (Chromium itself starts with the first session)."""
        with self.browser_lock:
            if self.browser is None:
                self.browser = BrowserEngine(
                    settings,
                    # Under the engine directory: the orphan reaper removes it, and the registered pid
                    # lets Engine.kill_now() and reap_orphans() kill a browser left by a crashed runner.
                    runtime_dir=self.engine.dir / "browser",
                    register_pid=self.engine.register_process,
                    backend_name=backend_name,
                )
            return self.browser


class AsyncInProcessBackend(AsyncBrowserActionMethods):
    """Asynchronous InProcess backend. See :class:`coderunner.backend.AsyncBackend`."""

    name = "inprocess"

    def __init__(self, settings: Settings | None = None, *, browser_settings: BrowserSettings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.browser_settings = browser_settings
        self._host = _Host(self.settings, self.name)
        self._finalizer = weakref.finalize(self, self._host.shutdown)

    @property
    def browser_engine(self) -> BrowserEngine:
        """The browser engine (its methods must run on the engine's loop)."""
        return self._host.get_browser(self.browser_settings, self.name)

    @property
    def engine(self) -> Engine:
        """The engine (its methods must run on the engine's loop)."""
        return self._host.engine

    def stats(self) -> dict[str, int]:
        """Session and execution counters (and the browser's, once it was used)."""
        stats = self._host.engine.stats()
        if self._host.browser is not None:
            stats.update(self._host.browser.stats())
        return stats

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._host.closed:
            coro.close()
            raise ConfigurationError("This backend is closed; create a new AsyncCodeRunner.")
        return await self._host.thread.arun(coro)

    async def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session; its default language's interpreter is ready when this returns."""
        spec = spec or SessionSpec()
        spec.check_options(self.name)  # container options (cpus, memory) have no meaning here
        return await self._run(self.engine.create_session(spec))

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return await self._run(self.engine.get_session(session_id))

    async def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        return await self._run(self.engine.list_sessions())

    async def close_session(self, session_id: str) -> None:
        """Stop a session."""
        await self._run(self.engine.close_session(session_id))

    async def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Run ``request`` in a session (callbacks are called from the engine thread)."""
        return await self._run(self.engine.execute(session_id, request, on_stdout=on_stdout, on_stderr=on_stderr))

    async def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution."""
        return await self._run(self.engine.interrupt(session_id))

    async def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes into the session directory."""
        return await self._run(self.engine.upload(session_id, path, data))

    async def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory."""
        return await self._run(self.engine.download(session_id, path))

    async def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session."""
        return await self._run(self.engine.list_files(session_id, path))

    async def aclose(self) -> None:
        """Stop every session and kernel this backend started."""
        # Shutting down blocks on the engine thread; keep the caller's loop free meanwhile.
        await asyncio.to_thread(self._finalizer)

    # -- browser capability (coderunner.browser.protocol.AsyncBrowserBackend) ---------------------------

    async def browser_create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Open an isolated browser session (Chromium starts with the first one)."""
        return await self._run(
            self.browser_engine.create_session(viewport_width, viewport_height, user_agent, idle_timeout=idle_timeout)
        )

    async def browser_get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a browser session."""
        return await self._run(self.browser_engine.get_session(session_id))

    async def browser_list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session."""
        return await self._run(self.browser_engine.list_sessions())

    async def browser_close_session(self, session_id: str) -> None:
        """Close a browser session."""
        await self._run(self.browser_engine.close_session(session_id))

    async def browser_act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one browser action on the engine thread's Chromium."""
        return await self._run(self.browser_engine.act(session_id, action))


class InProcessBackend(SyncBrowserBridge[AsyncInProcessBackend]):
    """Synchronous InProcess backend. See :class:`coderunner.backend.Backend`.

    The async backend's coroutines, run on its engine's loop thread (the callbacks of ``execute`` are
    called from that thread). Takes the arguments of :class:`AsyncInProcessBackend`.
    """

    name = "inprocess"

    def __init__(self, settings: Settings | None = None, *, browser_settings: BrowserSettings | None = None) -> None:
        backend = AsyncInProcessBackend(settings, browser_settings=browser_settings)
        super().__init__(backend, loop=backend._host.thread)
        self.settings = backend.settings
        self.browser_settings = backend.browser_settings

    @property
    def browser_engine(self) -> BrowserEngine:
        """The browser engine (its methods must run on the engine's loop)."""
        return self.wrapped.browser_engine

    @property
    def engine(self) -> Engine:
        """The engine (its methods must run on the engine's loop)."""
        return self.wrapped.engine

    def stats(self) -> dict[str, int]:
        """Session and execution counters (and the browser's, once it was used)."""
        return self.wrapped.stats()

    def _shutdown(self) -> None:
        # The async aclose stops the loop thread the bridge runs coroutines on, so it cannot run there:
        # shut the engine down from this thread instead (what aclose does from a worker thread).
        self.wrapped._finalizer()


def factory(settings: Settings, *, asynchronous: bool, **options: Any) -> InProcessBackend | AsyncInProcessBackend:
    """Registry entry: build the InProcess backend (its only option: ``browser_settings``)."""
    browser_settings = options.pop("browser_settings", None)
    if options:
        raise ConfigurationError(
            f"The inprocess backend takes only browser_settings; got {', '.join(sorted(options))}."
        )
    if browser_settings is not None and not isinstance(browser_settings, BrowserSettings):
        raise ConfigurationError("browser_settings must be a coderunner.browser.BrowserSettings.")
    cls = AsyncInProcessBackend if asynchronous else InProcessBackend
    return cls(settings, browser_settings=browser_settings)
