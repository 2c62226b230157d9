r"""Test helpers for people building on coderunner: an in-memory ``FakeBackend`` that runs nothing.

Use it to unit-test an agent loop without starting interpreters::

    from coderunner import CodeRunner
    from coderunner.testing import FakeBackend

    fake = FakeBackend()
    fake.queue("42\n")                      # next execute() prints 42
    runner = CodeRunner(backend=fake)
    assert runner.execute("print(6 * 7)").stdout == "42\n"
    assert fake.calls[0].code == "print(6 * 7)"

Or select it by name: ``CodeRunner(backend="fake")`` / ``CODERUNNER_BACKEND=fake``.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from coderunner.config import Settings
from coderunner.errors import (
    CapacityError,
    ConfigurationError,
    FileNotFoundInSessionError,
    PathError,
    SessionNotFoundError,
)
from coderunner.models import ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

__all__ = ["AsyncFakeBackend", "FakeBackend", "FakeCall", "factory"]

Handler = Callable[["FakeCall"], "ExecutionResult | str"]


@dataclass(frozen=True)
class FakeCall:
    """One recorded ``execute`` call."""

    session_id: str
    code: str
    language: str
    timeout: float | None


def _now() -> datetime:
    return datetime.now(timezone.utc)


class FakeBackend:
    """A synchronous :class:`~coderunner.backend.Backend` that records calls and returns scripted results.

    Results come, in order of preference, from :meth:`queue` (FIFO), then ``handler``, then an
    empty successful result. Files live in memory with the same path rules as real backends.
    """

    name = "fake"

    def __init__(self, handler: Handler | None = None, *, max_sessions: int = 32) -> None:
        self.handler = handler
        self.max_sessions = max_sessions
        self.calls: list[FakeCall] = []
        self._queue: deque[ExecutionResult | str] = deque()
        self._sessions: dict[str, SessionInfo] = {}
        self._files: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()
        self.closed = False

    def queue(self, *results: ExecutionResult | str) -> None:
        """Queue results for the next executions; a str becomes a successful result with that stdout."""
        self._queue.extend(results)

    def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create an in-memory session."""
        spec = spec or SessionSpec()
        spec.check_options(self.name)
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise CapacityError(f"The fake backend allows {self.max_sessions} sessions.")
            sid = str(uuid.uuid4())
            now = _now()
            info = SessionInfo(
                session_id=sid,
                status="active",
                language=spec.language,
                languages=[spec.language],
                working_dir=spec.working_dir or f"/fake/{sid}",
                created_at=now,
                last_activity_at=now,
                idle_timeout=spec.idle_timeout,
                backend=self.name,
                metadata=dict(spec.metadata),
            )
            self._sessions[sid] = info
            self._files[sid] = {}
            return info

    def _session(self, session_id: str) -> SessionInfo:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFoundError(f"Session {session_id!r} does not exist.") from None

    def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return self._session(session_id)

    def list_sessions(self) -> list[SessionInfo]:
        """Every live session."""
        return list(self._sessions.values())

    def close_session(self, session_id: str) -> None:
        """Forget a session and its files."""
        self._session(session_id)
        self._sessions.pop(session_id, None)
        self._files.pop(session_id, None)

    def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Record the call and return the next scripted result."""
        info = self._session(session_id)
        lang = request.language_or(info.language)
        call = FakeCall(session_id, request.code, lang, request.timeout)
        self.calls.append(call)
        scripted: ExecutionResult | str
        if self._queue:
            scripted = self._queue.popleft()
        elif self.handler is not None:
            scripted = self.handler(call)
        else:
            scripted = ""
        if isinstance(scripted, str):
            result = ExecutionResult(status="ok", stdout=scripted, language=lang, session_id=session_id)
        else:
            result = scripted.model_copy(update={"session_id": session_id, "language": lang})
        if on_stdout and result.stdout:
            on_stdout(result.stdout)
        if on_stderr and result.stderr:
            on_stderr(result.stderr)
        return result

    def interrupt(self, session_id: str) -> bool:
        """Nothing runs in the background here: always False."""
        self._session(session_id)
        return False

    @staticmethod
    def _key(path: str) -> str:
        if not isinstance(path, str) or not path.strip() or "\x00" in path:
            raise PathError("The path is empty: name a file inside the session directory.")
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts:
            raise PathError(f"Path {path!r} is outside the session directory. Use a relative path.")
        return pure.as_posix()

    def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Store bytes in memory."""
        self._session(session_id)
        key = self._key(path)
        self._files[session_id][key] = bytes(data)
        return FileInfo(path=key, size=len(data), modified_at=_now())

    def download_file(self, session_id: str, path: str) -> bytes:
        """Return stored bytes."""
        self._session(session_id)
        try:
            return self._files[session_id][self._key(path)]
        except KeyError:
            raise FileNotFoundInSessionError(f"No file {path!r} in the session.") from None

    def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List stored files below ``path``."""
        self._session(session_id)
        prefix = "" if path in (".", "", "./") else self._key(path).rstrip("/") + "/"
        if prefix and not any(k.startswith(prefix) for k in self._files[session_id]):
            # Like the real backends: a missing directory (or a file path) is an error, not [].
            raise FileNotFoundInSessionError(f"No directory {path!r} in the session directory.")
        return [
            FileInfo(path=k, size=len(v), modified_at=_now())
            for k, v in sorted(self._files[session_id].items())
            if k.startswith(prefix)
        ]

    def close(self) -> None:
        """Forget everything."""
        self._sessions.clear()
        self._files.clear()
        self.closed = True


class AsyncFakeBackend:
    """The async twin of :class:`FakeBackend` (same state, awaited methods)."""

    name = "fake"

    def __init__(self, handler: Handler | None = None, *, max_sessions: int = 32) -> None:
        self.sync = FakeBackend(handler, max_sessions=max_sessions)

    @property
    def calls(self) -> list[FakeCall]:
        """Recorded execute calls."""
        return self.sync.calls

    def queue(self, *results: ExecutionResult | str) -> None:
        """Queue results for the next executions."""
        self.sync.queue(*results)

    async def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create an in-memory session."""
        return self.sync.create_session(spec)

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return self.sync.get_session(session_id)

    async def list_sessions(self) -> list[SessionInfo]:
        """Every live session."""
        return self.sync.list_sessions()

    async def close_session(self, session_id: str) -> None:
        """Forget a session."""
        self.sync.close_session(session_id)

    async def execute(self, session_id: str, request: ExecRequest, **callbacks: Any) -> ExecutionResult:
        """Record the call and return the next scripted result."""
        return self.sync.execute(session_id, request, **callbacks)

    async def interrupt(self, session_id: str) -> bool:
        """Always False."""
        return self.sync.interrupt(session_id)

    async def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Store bytes."""
        return self.sync.upload_file(session_id, path, data)

    async def download_file(self, session_id: str, path: str) -> bytes:
        """Return stored bytes."""
        return self.sync.download_file(session_id, path)

    async def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List stored files."""
        return self.sync.list_files(session_id, path)

    async def aclose(self) -> None:
        """Forget everything."""
        self.sync.close()


def factory(settings: Settings, *, asynchronous: bool, **options: Any) -> FakeBackend | AsyncFakeBackend:
    """Registry entry for ``backend="fake"``."""
    unknown = set(options) - {"handler"}
    if unknown:
        raise ConfigurationError(f"The fake backend does not take: {', '.join(sorted(unknown))}.")
    cls = AsyncFakeBackend if asynchronous else FakeBackend
    return cls(options.get("handler"), max_sessions=settings.max_sessions)
