"""The async client: :class:`AsyncCodeRunner` and its :class:`AsyncSession` objects."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from coderunner.backend import AsyncBackend, create_async_backend
from coderunner.client.core import TASK_POLL, ClientCore, task_result
from coderunner.config import Settings
from coderunner.errors import ConfigurationError, SessionNotFoundError
from coderunner.models import ExecutionResult, FileInfo, SessionInfo, TaskInfo
from coderunner.specs import ExecRequest

if TYPE_CHECKING:
    from coderunner.browser.client import AsyncBrowserManager


OutputCallback = Callable[[str], None]


class AsyncCodeRunner:
    """The async twin of :class:`CodeRunner`: the same methods, awaited. See :class:`CodeRunner` for arguments."""

    def __init__(
        self,
        backend: str | AsyncBackend | None = None,
        *,
        language: str = "python",
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        lifetime: float | None = None,
        **options: Any,
    ) -> None:
        self._core = ClientCore(
            backend, language=language, env=env, working_dir=working_dir, lifetime=lifetime, options=options
        )
        self._backend: AsyncBackend | None = None
        self._owns_backend = True
        if backend is not None and not isinstance(backend, str):
            if not isinstance(backend, AsyncBackend):
                raise ConfigurationError(f"{backend!r} is not an AsyncBackend (for sync backends use CodeRunner).")
            if self._core.backend_options:
                raise ConfigurationError("Backend options cannot be combined with a backend instance.")
            self._backend = backend
            self._owns_backend = False
        self._lock = asyncio.Lock()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._turns: dict[str, asyncio.Lock] = {}  # see CodeRunner._turns
        self._running_tasks: dict[str, str] = {}

    async def _get_backend(self) -> AsyncBackend:
        if self._backend is None:
            # Building a backend may block (starting the engine thread, a first kernel): keep the loop free.
            self._backend = await asyncio.to_thread(
                create_async_backend, settings=self._core.settings, **self._core.backend_options
            )
        return self._backend

    @functools.cached_property
    def browser(self) -> AsyncBrowserManager:
        """Browser sessions on this runner's backend (created on first use)."""
        from coderunner.browser.client import async_browser_manager_for

        return async_browser_manager_for(self._get_backend)

    @property
    def backend(self) -> AsyncBackend:
        """The backend (created on first use)."""
        if self._backend is None:
            raise ConfigurationError("The backend is created on first use; await a call (or use 'async with') first.")
        return self._backend

    @property
    def session_id(self) -> str | None:
        """The default session's id, once it exists."""
        return self._core.session_id

    @property
    def settings(self) -> Settings:
        """The effective settings."""
        return self._core.settings

    async def start_session(self, language: str | None = None, **options: Any) -> str:
        """Start a new default session (closing the previous one) and return its id."""
        backend = await self._get_backend()
        spec = self._core.default_spec(language, **options)
        async with self._lock:
            old = self._core.session_id
            info = await backend.create_session(spec)
            self._core.session_id = info.session_id
            self._core.owned_sessions.add(info.session_id)
        if old is not None:
            await self._close_quietly(old)
        return info.session_id

    async def close_session(self, session_id: str | None = None) -> bool:
        """Close a session (default: the default session). Returns True."""
        sid = session_id or self._core.session_id
        if sid is None:
            return True
        if sid == self._core.session_id:
            self._core.session_id = None
        await self._close_quietly(sid)
        return True

    async def is_session_active(self, session_id: str | None = None) -> bool:
        """True when the session exists and is active."""
        sid = session_id or self._core.session_id
        if sid is None:
            return False
        try:
            return (await (await self._get_backend()).get_session(sid)).status == "active"
        except SessionNotFoundError:
            return False

    async def get_session_info(self, session_id: str | None = None) -> SessionInfo:
        """Describe a session (default: the default session, started if needed)."""
        return await (await self._get_backend()).get_session(session_id or await self._default_session())

    async def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session of the backend."""
        return await (await self._get_backend()).list_sessions()

    async def execute(
        self,
        code: str,
        language: str = "python",
        timeout: float | None = None,
        *,
        session_id: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and return its result. See :meth:`CodeRunner.execute`."""
        request = self._core.prepare(code, language, timeout)
        backend = await self._get_backend()

        async def run(sid: str) -> ExecutionResult:
            async with self._turn(sid):
                return await backend.execute(sid, request, on_stdout=on_stdout, on_stderr=on_stderr)

        if session_id is not None:
            return await run(session_id)
        sid = await self._default_session()
        try:
            return await run(sid)
        except SessionNotFoundError as exc:
            async with self._lock:
                if self._core.session_id == sid:
                    self._core.session_id = None
            return self._core.replaced(await run(await self._default_session()), sid, exc.message)

    def _turn(self, session_id: str) -> asyncio.Lock:
        return self._turns.setdefault(session_id, asyncio.Lock())

    async def execute_async(
        self, code: str, language: str = "python", timeout: float | None = None, *, session_id: str | None = None
    ) -> str:
        """Start ``code`` in the background (on this event loop) and return a task id at once."""
        request = self._core.prepare(code, language, timeout)
        sid = session_id or await self._default_session()
        task = self._core.tasks.new(sid, request.language or "python")
        self._tasks[task.task_id] = asyncio.ensure_future(self._run_task(task.task_id, sid, request))
        return task.task_id

    async def _run_task(self, task_id: str, sid: str, request: ExecRequest) -> None:
        try:
            async with self._turn(sid):
                if not self._core.tasks.start(task_id):
                    return  # cancelled while it waited for its turn
                self._running_tasks[task_id] = sid
                try:
                    result = await (await self._get_backend()).execute(sid, request)
                except Exception as exc:  # recorded on the task: the caller reads it with get_task()
                    self._core.tasks.fail(task_id, exc)
                else:
                    self._core.tasks.finish(task_id, result, cancel_requested=task_id not in self._running_tasks)
                finally:
                    self._running_tasks.pop(task_id, None)
        finally:
            self._tasks.pop(task_id, None)

    async def get_task(self, task_id: str) -> TaskInfo:
        """The task's current record, without waiting."""
        return self._core.tasks.get(task_id)

    async def get_task_result(self, task_id: str, timeout: float = 60.0) -> ExecutionResult:
        """Wait up to ``timeout`` seconds for a task and return its result. See :meth:`CodeRunner.get_task_result`."""
        deadline = time.monotonic() + timeout
        while True:
            task = self._core.tasks.get(task_id)
            if task.is_complete:
                return task_result(task)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Task {task_id} is still {task.status} after {timeout:g} s.")
            await asyncio.sleep(TASK_POLL)

    async def cancel_task(self, task_id: str) -> TaskInfo:
        """Cancel a task: a pending one never runs; a running one is interrupted."""
        self._core.tasks.cancel_pending(task_id)
        sid = self._running_tasks.pop(task_id, None)
        if sid is not None:
            await (await self._get_backend()).interrupt(sid)
        return self._core.tasks.get(task_id)

    async def list_tasks(self) -> list[TaskInfo]:
        """Every task this runner knows, oldest first."""
        return self._core.tasks.list()

    async def interrupt(self, session_id: str | None = None) -> bool:
        """Interrupt what runs in a session (default session)."""
        sid = session_id or self._core.session_id
        return False if sid is None else await (await self._get_backend()).interrupt(sid)

    async def upload_file(
        self, local_path: str | os.PathLike[str], remote_path: str | None = None, *, session_id: str | None = None
    ) -> FileInfo:
        """Copy a local file into the session directory."""
        data = await asyncio.to_thread(self._core.read_local, local_path)
        backend = await self._get_backend()
        return await backend.upload_file(
            session_id or await self._default_session(), remote_path or Path(local_path).name, data
        )

    async def write_file(self, path: str, content: str | bytes, *, session_id: str | None = None) -> FileInfo:
        """Write text or bytes to a file in the session directory."""
        data = self._core.to_bytes(content)
        backend = await self._get_backend()
        return await backend.upload_file(session_id or await self._default_session(), path, data)

    async def download_file(
        self, remote_name: str, local_path: str | os.PathLike[str] | None = None, *, session_id: str | None = None
    ) -> bytes:
        """Return a file's bytes, also saving them to ``local_path`` if given."""
        backend = await self._get_backend()
        data = await backend.download_file(session_id or await self._default_session(), remote_name)
        if local_path is not None:
            await asyncio.to_thread(Path(local_path).expanduser().write_bytes, data)
        return data

    async def list_files(self, path: str = ".", *, session_id: str | None = None) -> list[FileInfo]:
        """List a directory of the session."""
        backend = await self._get_backend()
        return await backend.list_files(session_id or await self._default_session(), path)

    async def install_packages(
        self,
        packages: Sequence[str] | str,
        language: str = "python",
        *,
        session_id: str | None = None,
        timeout: float = 600.0,
    ) -> ExecutionResult:
        """Install packages into the session's environment (pip for python, npm for javascript)."""
        lang, code = self._core.install_command(packages, language)
        return await self.execute(code, lang, timeout, session_id=session_id)

    async def session(
        self,
        language: str = "python",
        *,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        lifetime: float | None = None,
        idle_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **options: Any,
    ) -> AsyncSession:
        """Create an explicit session; use ``async with`` to close it.

        ``options`` are the backend's own session options, e.g. ``cpus=2`` or ``memory="2g"`` on Docker.
        """
        backend = await self._get_backend()
        spec = self._core.session_spec(language, env, working_dir, lifetime, idle_timeout, metadata, options)
        info = await backend.create_session(spec)
        self._core.owned_sessions.add(info.session_id)
        return AsyncSession(self, info.session_id, info.language)

    async def _default_session(self) -> str:
        backend = await self._get_backend()
        async with self._lock:
            if self._core.session_id is None:
                info = await backend.create_session(self._core.default_spec())
                self._core.session_id = info.session_id
                self._core.owned_sessions.add(info.session_id)
            return self._core.session_id

    async def _close_quietly(self, session_id: str) -> None:
        self._core.owned_sessions.discard(session_id)
        self._turns.pop(session_id, None)
        with contextlib.suppress(SessionNotFoundError):
            await (await self._get_backend()).close_session(session_id)

    async def aclose(self) -> None:
        """Close the sessions this runner created (and its backend, if it made it). Idempotent."""
        if self._core.closed:
            return
        self._core.closed = True
        for task_id in list(self._running_tasks):
            await self.cancel_task(task_id)
        for task in list(self._tasks.values()):
            task.cancel()
        browser = self.__dict__.get("browser")
        if browser is not None and self._backend is not None and not self._owns_backend:
            await browser.close_all()
        if self._backend is None:
            return
        if self._owns_backend:
            await self._backend.aclose()
        else:
            for sid in list(self._core.owned_sessions):
                await self._close_quietly(sid)

    async def __aenter__(self) -> AsyncCodeRunner:
        await self._get_backend()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class AsyncSession:
    """An explicit session of an :class:`AsyncCodeRunner`."""

    def __init__(self, runner: AsyncCodeRunner, session_id: str, language: str) -> None:
        self.runner = runner
        self.session_id = session_id
        self.language = language

    async def execute(
        self,
        code: str,
        language: str | None = None,
        timeout: float | None = None,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run code in this session."""
        return await self.runner.execute(
            code,
            language or self.language,
            timeout,
            session_id=self.session_id,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )

    async def execute_async(self, code: str, language: str | None = None, timeout: float | None = None) -> str:
        """Start code in the background in this session; returns a task id."""
        return await self.runner.execute_async(code, language or self.language, timeout, session_id=self.session_id)

    async def info(self) -> SessionInfo:
        """Describe this session."""
        return await self.runner.get_session_info(self.session_id)

    async def is_active(self) -> bool:
        """True while the session exists."""
        return await self.runner.is_session_active(self.session_id)

    async def interrupt(self) -> bool:
        """Interrupt the running execution."""
        return await self.runner.interrupt(self.session_id)

    async def upload_file(self, local_path: str | os.PathLike[str], remote_path: str | None = None) -> FileInfo:
        """Copy a local file into this session's directory."""
        return await self.runner.upload_file(local_path, remote_path, session_id=self.session_id)

    async def write_file(self, path: str, content: str | bytes) -> FileInfo:
        """Write text or bytes into this session's directory."""
        return await self.runner.write_file(path, content, session_id=self.session_id)

    async def download_file(self, remote_name: str, local_path: str | os.PathLike[str] | None = None) -> bytes:
        """Read a file from this session's directory."""
        return await self.runner.download_file(remote_name, local_path, session_id=self.session_id)

    async def list_files(self, path: str = ".") -> list[FileInfo]:
        """List a directory of this session."""
        return await self.runner.list_files(path, session_id=self.session_id)

    async def install_packages(self, packages: Sequence[str] | str, language: str | None = None) -> ExecutionResult:
        """Install packages for this session."""
        return await self.runner.install_packages(packages, language or self.language, session_id=self.session_id)

    async def close(self) -> None:
        """Close this session."""
        await self.runner.close_session(self.session_id)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
