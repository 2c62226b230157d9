"""The InProcess backend: Jupyter/bash/node kernels as child processes of the caller.

Not a security boundary: code runs as your user, with your files and network.
Use the Docker backend for untrusted code.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from coderunner._loop import LoopThread
from coderunner.config import Settings
from coderunner.engine.engine import Engine
from coderunner.errors import ConfigurationError
from coderunner.models import ExecutionResult, FileInfo, SessionInfo

__all__ = ["AsyncInProcessBackend", "InProcessBackend", "factory"]

T = TypeVar("T")


class _Host:
    """An :class:`Engine` running on its own loop thread."""

    def __init__(self, settings: Settings, backend_name: str) -> None:
        self.thread = LoopThread()
        self.engine = Engine(settings, backend_name=backend_name)
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
            self.thread.run(self.engine.close(), timeout=30)
        except Exception:  # the loop may already be gone at interpreter exit; kill directly
            self.engine.kill_now()
        finally:
            self.thread.stop()


class _Base:
    name = "inprocess"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self._host = _Host(self.settings, self.name)
        self._finalizer = weakref.finalize(self, self._host.shutdown)

    @property
    def engine(self) -> Engine:
        """The engine (its methods must run on the engine's loop)."""
        return self._host.engine

    def stats(self) -> dict[str, int]:
        """Session and execution counters."""
        return self._host.engine.stats()


class InProcessBackend(_Base):
    """Synchronous InProcess backend. See :class:`coderunner.backend.Backend`."""

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._host.closed:
            coro.close()
            raise ConfigurationError("This backend is closed; create a new CodeRunner.")
        return self._host.thread.run(coro)

    def create_session(
        self,
        language: str = "python",
        *,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        lifetime: float | None = None,
        idle_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> SessionInfo:
        """Create a session; its default language's interpreter is ready when this returns."""
        return self._run(
            self.engine.create_session(
                language,
                env=env,
                working_dir=working_dir,
                lifetime=lifetime,
                idle_timeout=idle_timeout,
                metadata=metadata,
            )
        )

    def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return self._run(self.engine.get_session(session_id))

    def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        return self._run(self.engine.list_sessions())

    def close_session(self, session_id: str) -> None:
        """Stop a session's interpreters and remove its directory (unless it was yours)."""
        self._run(self.engine.close_session(session_id))

    def execute(
        self,
        session_id: str,
        code: str,
        language: str | None = None,
        *,
        timeout: float | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Run code in a session (callbacks are called from the engine thread)."""
        return self._run(
            self.engine.execute(session_id, code, language, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr)
        )

    def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution."""
        return self._run(self.engine.interrupt(session_id))

    def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes into the session directory."""
        return self._run(self.engine.upload(session_id, path, data))

    def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory."""
        return self._run(self.engine.download(session_id, path))

    def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session."""
        return self._run(self.engine.list_files(session_id, path))

    def close(self) -> None:
        """Stop every session and kernel this backend started."""
        self._finalizer()


class AsyncInProcessBackend(_Base):
    """Asynchronous InProcess backend. See :class:`coderunner.backend.AsyncBackend`."""

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._host.closed:
            coro.close()
            raise ConfigurationError("This backend is closed; create a new AsyncCodeRunner.")
        return await self._host.thread.arun(coro)

    async def create_session(
        self,
        language: str = "python",
        *,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        lifetime: float | None = None,
        idle_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> SessionInfo:
        """Create a session; its default language's interpreter is ready when this returns."""
        return await self._run(
            self.engine.create_session(
                language,
                env=env,
                working_dir=working_dir,
                lifetime=lifetime,
                idle_timeout=idle_timeout,
                metadata=metadata,
            )
        )

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
        code: str,
        language: str | None = None,
        *,
        timeout: float | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Run code in a session (callbacks are called from the engine thread)."""
        return await self._run(
            self.engine.execute(session_id, code, language, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr)
        )

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
        import asyncio

        # Shutting down blocks on the engine thread; keep the caller's loop free meanwhile.
        await asyncio.to_thread(self._finalizer)


def factory(settings: Settings, *, asynchronous: bool, **options: Any) -> InProcessBackend | AsyncInProcessBackend:
    """Registry entry: build the InProcess backend."""
    if options:
        raise ConfigurationError(f"The inprocess backend takes no options; got {', '.join(sorted(options))}.")
    return AsyncInProcessBackend(settings) if asynchronous else InProcessBackend(settings)
