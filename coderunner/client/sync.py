"""The sync client: :class:`CodeRunner` and its :class:`Session` objects."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from coderunner.backend import Backend, create_backend
from coderunner.client.core import TASK_POLL, ClientCore, task_result
from coderunner.config import Settings
from coderunner.errors import ConfigurationError, SessionNotFoundError
from coderunner.models import ExecutionResult, FileInfo, SessionInfo, TaskInfo
from coderunner.specs import ExecRequest

if TYPE_CHECKING:
    from coderunner.browser.client import BrowserManager


OutputCallback = Callable[[str], None]


class CodeRunner:
    r"""Run code in persistent sessions, synchronously.

    Args:
        backend: A backend name ('inprocess', 'docker', 'instavm', 'fake', or an entry point), a
            :class:`~coderunner.backend.Backend` instance, or None for ``CODERUNNER_BACKEND`` /
            'inprocess'.
        language: Default language of the runner's default session.
        env: Environment variables for sessions this runner creates.
        working_dir: Directory for the default session (default: a fresh private one).
        lifetime: Hard lifetime of the default session in seconds (default: none).
        **options: Settings (``timeout``, ``max_output_chars``, ``max_sessions``, ``idle_timeout``,
            ``pool_size``, ``pool_max``, ``runtime_dir``, ``interrupt_grace``, ``track_files``,
            ``shared_engine``) and backend options (e.g. ``api_key``, ``base_url`` for 'instavm').

    Example:
        >>> with CodeRunner() as runner:
        ...     runner.execute("x = 41")
        ...     runner.execute("print(x + 1)").stdout
        '42\n'
    """

    def __init__(
        self,
        backend: str | Backend | None = None,
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
        if backend is not None and not isinstance(backend, str):
            if not isinstance(backend, Backend):
                raise ConfigurationError(f"{backend!r} is not a Backend (for async backends use AsyncCodeRunner).")
            if self._core.backend_options:
                raise ConfigurationError("Backend options cannot be combined with a backend instance.")
            self.backend: Backend = backend
            self._owns_backend = False
        else:
            self.backend = create_backend(settings=self._core.settings, **self._core.backend_options)
            self._owns_backend = True
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._running_tasks: dict[str, str] = {}
        # One turn per session for this runner's executions: a task counts as running only while it holds
        # its session's turn, so cancelling a task that still waits for it never interrupts another call.
        self._turns: dict[str, threading.Lock] = {}

    # -- InstaVM-compatible surface -----------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """The default session's id, once it exists."""
        return self._core.session_id

    @functools.cached_property
    def browser(self) -> BrowserManager:
        """Browser sessions on this runner's backend (InstaVM-style; needs ``coderunner[browser]``)."""
        from coderunner.browser.client import browser_manager_for

        return browser_manager_for(self.backend)

    @property
    def settings(self) -> Settings:
        """The effective settings."""
        return self._core.settings

    def start_session(self, language: str | None = None, **options: Any) -> str:
        """Start a new default session (closing the previous one) and return its id."""
        backend = self.backend
        spec = self._core.default_spec(language, **options)
        with self._lock:
            old = self._core.session_id
            info = backend.create_session(spec)
            self._core.session_id = info.session_id
            self._core.owned_sessions.add(info.session_id)
        if old is not None:
            self._close_quietly(old)
        return info.session_id

    def close_session(self, session_id: str | None = None) -> bool:
        """Close a session (default: the default session). Returns True."""
        sid = session_id or self._core.session_id
        if sid is None:
            return True
        if sid == self._core.session_id:
            self._core.session_id = None
        self._close_quietly(sid)
        return True

    def is_session_active(self, session_id: str | None = None) -> bool:
        """True when the session (default: the default session) exists and is active."""
        sid = session_id or self._core.session_id
        if sid is None:
            return False
        try:
            return self.backend.get_session(sid).status == "active"
        except SessionNotFoundError:
            return False

    def get_session_info(self, session_id: str | None = None) -> SessionInfo:
        """Describe a session (default: the default session, started if needed)."""
        return self.backend.get_session(session_id or self._default_session())

    def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session of the backend."""
        return self.backend.list_sessions()

    def execute(
        self,
        code: str,
        language: str = "python",
        timeout: float | None = None,
        *,
        session_id: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and return its result. Errors in the code are in the result, not raised.

        Args:
            code: Source code (python, bash or javascript).
            language: 'python', 'bash', 'javascript' or an alias ('py', 'sh', 'js', 'node', ...).
            timeout: Seconds before the execution is interrupted (state kept); default from settings.
            session_id: Run in this session instead of the default one.
            on_stdout: Called with each chunk of stdout as it is produced.
            on_stderr: Called with each chunk of stderr as it is produced.
        """
        request = self._core.prepare(code, language, timeout)

        def run(sid: str) -> ExecutionResult:
            with self._turn(sid):
                return self.backend.execute(sid, request, on_stdout=on_stdout, on_stderr=on_stderr)

        if session_id is not None:
            return run(session_id)
        sid = self._default_session()
        try:
            return run(sid)
        except SessionNotFoundError as exc:
            with self._lock:
                if self._core.session_id == sid:
                    self._core.session_id = None
            return self._core.replaced(run(self._default_session()), sid, exc.message)

    def _turn(self, session_id: str) -> threading.Lock:
        with self._lock:
            return self._turns.setdefault(session_id, threading.Lock())

    def execute_async(
        self, code: str, language: str = "python", timeout: float | None = None, *, session_id: str | None = None
    ) -> str:
        """Start ``code`` in the background and return a task id at once (see :meth:`get_task_result`)."""
        request = self._core.prepare(code, language, timeout)
        sid = session_id or self._default_session()
        task = self._core.tasks.new(sid, request.language or "python")
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="coderunner-task")
            self._pool.submit(self._run_task, task.task_id, sid, request)
        return task.task_id

    def _run_task(self, task_id: str, sid: str, request: ExecRequest) -> None:
        with self._turn(sid):
            if not self._core.tasks.start(task_id):
                return  # cancelled while it waited for its turn
            self._running_tasks[task_id] = sid
            try:
                result = self.backend.execute(sid, request)
            except Exception as exc:  # recorded on the task: the caller reads it with get_task()
                self._core.tasks.fail(task_id, exc)
            else:
                self._core.tasks.finish(task_id, result, cancel_requested=task_id not in self._running_tasks)
            finally:
                self._running_tasks.pop(task_id, None)

    def get_task(self, task_id: str) -> TaskInfo:
        """The task's current record (status, and result once finished), without waiting."""
        return self._core.tasks.get(task_id)

    def get_task_result(self, task_id: str, timeout: float = 60.0) -> ExecutionResult:
        """Wait up to ``timeout`` seconds for a task and return its result.

        Raises:
            TimeoutError: The task is still running after ``timeout`` seconds (it keeps running).
            TaskNotFoundError: Unknown task id.
            BackendError: The task could not run at all (the message says why).
        """
        deadline = time.monotonic() + timeout
        while True:
            task = self._core.tasks.get(task_id)
            if task.is_complete:
                return task_result(task)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Task {task_id} is still {task.status} after {timeout:g} s.")
            time.sleep(TASK_POLL)

    def cancel_task(self, task_id: str) -> TaskInfo:
        """Cancel a task: a pending one never runs; a running one is interrupted."""
        self._core.tasks.cancel_pending(task_id)
        sid = self._running_tasks.pop(task_id, None)
        if sid is not None:
            self.backend.interrupt(sid)
        return self._core.tasks.get(task_id)

    def list_tasks(self) -> list[TaskInfo]:
        """Every task this runner knows, oldest first."""
        return self._core.tasks.list()

    def interrupt(self, session_id: str | None = None) -> bool:
        """Interrupt what runs in a session (default session); False if nothing ran."""
        sid = session_id or self._core.session_id
        return False if sid is None else self.backend.interrupt(sid)

    def upload_file(
        self, local_path: str | os.PathLike[str], remote_path: str | None = None, *, session_id: str | None = None
    ) -> FileInfo:
        """Copy a local file into the session directory (default name: the local file's name)."""
        data = self._core.read_local(local_path)
        return self.backend.upload_file(
            session_id or self._default_session(), remote_path or Path(local_path).name, data
        )

    def write_file(self, path: str, content: str | bytes, *, session_id: str | None = None) -> FileInfo:
        """Write text (UTF-8) or bytes to a file in the session directory."""
        data = self._core.to_bytes(content)
        return self.backend.upload_file(session_id or self._default_session(), path, data)

    def download_file(
        self, remote_name: str, local_path: str | os.PathLike[str] | None = None, *, session_id: str | None = None
    ) -> bytes:
        """Return a file's bytes from the session directory, also saving them to ``local_path`` if given."""
        data = self.backend.download_file(session_id or self._default_session(), remote_name)
        if local_path is not None:
            Path(local_path).expanduser().write_bytes(data)
        return data

    def list_files(self, path: str = ".", *, session_id: str | None = None) -> list[FileInfo]:
        """List a directory of the session (default: its root)."""
        return self.backend.list_files(session_id or self._default_session(), path)

    def install_packages(
        self,
        packages: Sequence[str] | str,
        language: str = "python",
        *,
        session_id: str | None = None,
        timeout: float = 600.0,
    ) -> ExecutionResult:
        """Install packages into the session's environment (pip for python, npm for javascript)."""
        lang, code = self._core.install_command(packages, language)
        return self.execute(code, lang, timeout, session_id=session_id)

    def session(
        self,
        language: str = "python",
        *,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        lifetime: float | None = None,
        idle_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Session:
        """Create an explicit session with its own state; use it as a context manager to close it.

        ``options`` are the backend's own session options, e.g. ``cpus=2`` or ``memory="2g"`` on Docker.
        """
        backend = self.backend
        spec = self._core.session_spec(language, env, working_dir, lifetime, idle_timeout, metadata, options)
        info = backend.create_session(spec)
        self._core.owned_sessions.add(info.session_id)
        return Session(self, info.session_id, info.language)

    # -- lifecycle ----------------------------------------------------------------------------------

    def _default_session(self) -> str:
        with self._lock:
            if self._core.session_id is None:
                info = self.backend.create_session(self._core.default_spec())
                self._core.session_id = info.session_id
                self._core.owned_sessions.add(info.session_id)
            return self._core.session_id

    def _close_quietly(self, session_id: str) -> None:
        self._core.owned_sessions.discard(session_id)
        with self._lock:
            self._turns.pop(session_id, None)
        with contextlib.suppress(SessionNotFoundError):
            self.backend.close_session(session_id)

    def close(self) -> None:
        """Close the sessions this runner created (and its backend, if it made it). Idempotent."""
        if self._core.closed:
            return
        self._core.closed = True
        if self._pool is not None:
            for task_id in list(self._running_tasks):
                self.cancel_task(task_id)
            self._pool.shutdown(wait=False, cancel_futures=True)
        browser = self.__dict__.get("browser")
        if browser is not None and not self._owns_backend:
            browser.close_all()  # an owned backend closes its browser sessions itself
        if self._owns_backend:
            self.backend.close()
        else:
            for sid in list(self._core.owned_sessions):
                self._close_quietly(sid)

    def __enter__(self) -> CodeRunner:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Session:
    """An explicit session of a :class:`CodeRunner`: its own interpreters, directory and state."""

    def __init__(self, runner: CodeRunner, session_id: str, language: str) -> None:
        self.runner = runner
        self.session_id = session_id
        self.language = language

    def execute(
        self,
        code: str,
        language: str | None = None,
        timeout: float | None = None,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run code in this session (default language: the session's)."""
        return self.runner.execute(
            code,
            language or self.language,
            timeout,
            session_id=self.session_id,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )

    def execute_async(self, code: str, language: str | None = None, timeout: float | None = None) -> str:
        """Start code in the background in this session; returns a task id."""
        return self.runner.execute_async(code, language or self.language, timeout, session_id=self.session_id)

    def info(self) -> SessionInfo:
        """Describe this session."""
        return self.runner.get_session_info(self.session_id)

    def is_active(self) -> bool:
        """True while the session exists."""
        return self.runner.is_session_active(self.session_id)

    def interrupt(self) -> bool:
        """Interrupt the running execution."""
        return self.runner.interrupt(self.session_id)

    def upload_file(self, local_path: str | os.PathLike[str], remote_path: str | None = None) -> FileInfo:
        """Copy a local file into this session's directory."""
        return self.runner.upload_file(local_path, remote_path, session_id=self.session_id)

    def write_file(self, path: str, content: str | bytes) -> FileInfo:
        """Write text or bytes into this session's directory."""
        return self.runner.write_file(path, content, session_id=self.session_id)

    def download_file(self, remote_name: str, local_path: str | os.PathLike[str] | None = None) -> bytes:
        """Read a file from this session's directory."""
        return self.runner.download_file(remote_name, local_path, session_id=self.session_id)

    def list_files(self, path: str = ".") -> list[FileInfo]:
        """List a directory of this session."""
        return self.runner.list_files(path, session_id=self.session_id)

    def install_packages(self, packages: Sequence[str] | str, language: str | None = None) -> ExecutionResult:
        """Install packages for this session."""
        return self.runner.install_packages(packages, language or self.language, session_id=self.session_id)

    def close(self) -> None:
        """Close this session."""
        self.runner.close_session(self.session_id)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
