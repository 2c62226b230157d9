"""Server-side state shared by the routes: the backend, the job manager, the session ledger, the default session.

The ledger remembers every session this server created (bounded, oldest forgotten first) with the
usage its executions reported, so ``/v1/sessions/usage/{id}`` keeps answering after a session ended
and ``/v1/sessions/status/{id}`` can say ``expired`` instead of "unknown".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from coderunner import _core
from coderunner.backend import AsyncBackend
from coderunner.browser.protocol import AsyncBrowserBackend
from coderunner.config import Settings
from coderunner.errors import SessionNotFoundError
from coderunner.models import ErrorInfo, ExecutionResult, SessionInfo
from coderunner.server.jobs import JobManager
from coderunner.specs import ExecRequest, SessionSpec

__all__ = ["LedgerEntry", "ServerState", "SessionLedger", "wire_time_limits"]

log = logging.getLogger(__name__)

_LEDGER_SIZE = 10_000
# How much earlier than the client's HTTP timeout the engine's own limit fires, leaving time to
# interrupt the code, kill what it left running, shape the result and send it (0.45 s after the answer
# margin: on a loaded 2-core machine 0.35 s was sometimes not enough, and the interpreter was restarted).
_ENGINE_MARGIN = 0.6
# How much earlier than the client's HTTP timeout the server answers no matter what (an interpreter
# that ignores the interrupt is restarted in the background).
_ANSWER_MARGIN = 0.15
WIRE_DEFAULT_TIMEOUT = 300.0
"""The InstaVM SDK's default HTTP timeout (its ``timeout`` argument), used when a request sends none."""

SessionState = Literal["active", "expired", "closed"]


def wire_time_limits(client_timeout: float) -> tuple[float, float]:
    """Return (engine time limit, answer deadline) for a client that gives up after ``client_timeout`` s.

    The engine limit leaves room to interrupt and report; the deadline is the last moment the
    server still answers in time.
    """
    engine = max(client_timeout - _ENGINE_MARGIN, client_timeout * 0.4)
    deadline = max(client_timeout - _ANSWER_MARGIN, engine)
    return engine, deadline


@dataclass
class LedgerEntry:
    """What the server knows about one session it created."""

    info: SessionInfo
    lifetime: float | None = None
    memory_mb: int | None = None
    vcpu_count: int | None = None
    executions: int = 0
    cpu_time: float = 0.0
    execution_time: float = 0.0
    peak_memory_bytes: int | None = None
    last_activity_at: datetime | None = None
    ended: SessionState | None = None
    ended_reason: str | None = None
    ended_at: datetime | None = None


class SessionLedger:
    """Bounded record of sessions created through this server and what they used."""

    def __init__(self, size: int = _LEDGER_SIZE) -> None:
        self._entries: OrderedDict[str, LedgerEntry] = OrderedDict()
        self._size = size

    def add(
        self,
        info: SessionInfo,
        *,
        lifetime: float | None = None,
        memory_mb: int | None = None,
        vcpu_count: int | None = None,
    ) -> LedgerEntry:
        """Remember a new session."""
        entry = LedgerEntry(info=info, lifetime=lifetime, memory_mb=memory_mb, vcpu_count=vcpu_count)
        self._entries[info.session_id] = entry
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return entry

    def get(self, session_id: str) -> LedgerEntry | None:
        """The entry for a session, if this server created it and has not forgotten it."""
        return self._entries.get(session_id)

    def record(self, session_id: str, result: ExecutionResult) -> None:
        """Add one execution's figures to a session's usage."""
        entry = self._entries.get(session_id)
        if entry is None:
            return
        entry.executions += 1
        entry.cpu_time += result.cpu_time or 0.0
        entry.execution_time += result.execution_time
        if result.peak_memory_bytes is not None:
            entry.peak_memory_bytes = max(entry.peak_memory_bytes or 0, result.peak_memory_bytes)
        entry.last_activity_at = datetime.now(timezone.utc)

    def end(self, session_id: str, status: SessionState, reason: str) -> None:
        """Mark a session as ended (closed on request, or found expired)."""
        entry = self._entries.get(session_id)
        if entry is not None and entry.ended is None:
            entry.ended, entry.ended_reason, entry.ended_at = status, reason, datetime.now(timezone.utc)

    def live_ids(self) -> list[str]:
        """Ids of sessions not known to have ended."""
        return [sid for sid, e in self._entries.items() if e.ended is None]


@dataclass
class ServerState:
    """Everything a request handler needs; one per app."""

    backend: AsyncBackend
    settings: Settings
    jobs: JobManager
    api_key: str | None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started_monotonic: float = field(default_factory=time.monotonic)
    ledger: SessionLedger = field(default_factory=SessionLedger)
    executions: int = 0
    sessions_created: int = 0
    default_session_id: str | None = None
    _default_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    default_browser_session_id: str | None = None
    _default_browser_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stragglers: set[asyncio.Task[ExecutionResult]] = field(default_factory=set)

    # -- sessions ----------------------------------------------------------------------------------

    async def create_session(
        self, spec: SessionSpec | None = None, *, memory_mb: int | None = None, vcpu_count: int | None = None
    ) -> SessionInfo:
        """Create a session on the backend and remember it in the ledger (with the VM size the client asked for)."""
        spec = spec or SessionSpec()
        info = await self.backend.create_session(spec)
        self.sessions_created += 1
        self.ledger.add(info, lifetime=spec.lifetime, memory_mb=memory_mb, vcpu_count=vcpu_count)
        return info

    async def session_state(self, session_id: str) -> tuple[SessionState, SessionInfo, str | None]:
        """Return (state, info, reason) for a session; raises SessionNotFoundError if never seen."""
        try:
            info = await self.backend.get_session(session_id)
        except SessionNotFoundError as exc:
            entry = self.ledger.get(session_id)
            if entry is None:
                raise
            self.ledger.end(session_id, "expired", exc.message)
            return entry.ended or "expired", entry.info, entry.ended_reason
        return "active", info, None

    async def close_session(self, session_id: str) -> None:
        """Close a session and note it in the ledger."""
        await self.backend.close_session(session_id)
        self.ledger.end(session_id, "closed", "it was closed on request")
        if session_id == self.default_session_id:
            self.default_session_id = None

    async def default_session(self) -> tuple[str, str | None]:
        """The server's default session (local mode), created on first use or after it expired.

        Returns:
            (session id, warning) where warning says the previous default session was replaced.
        """
        async with self._default_lock:
            warning = None
            sid = self.default_session_id
            if sid is not None:
                try:
                    await self.backend.get_session(sid)
                    return sid, None
                except SessionNotFoundError as exc:
                    warning = (
                        f"The previous default session ({sid}) was gone ({exc.message}); this code ran in a new "
                        "session, so earlier variables are not defined."
                    )
            info = await self.create_session(SessionSpec(metadata={"role": "default"}))
            self.default_session_id = info.session_id
            return info.session_id, warning

    async def default_browser_session(self, browser: AsyncBrowserBackend) -> str:
        """The server's default browser session, for local mode's url-based calls.

        Created on first use, and again after it was closed or expired.
        """
        async with self._default_browser_lock:
            sid = self.default_browser_session_id
            if sid is not None:
                try:
                    await browser.browser_get_session(sid)
                    return sid
                except SessionNotFoundError:
                    pass
            info = await browser.browser_create_session()
            self.default_browser_session_id = info.session_id
            return info.session_id

    # -- execution ---------------------------------------------------------------------------------

    def record(self, session_id: str, result: ExecutionResult) -> None:
        """Account one execution (counters and the session's usage)."""
        self.executions += 1
        self.ledger.record(session_id, result)

    def default_wire_timeout(self, session_id: str) -> float:
        """The HTTP timeout an InstaVM client most likely uses when its request names none.

        The SDK's default HTTP timeout is the ``timeout`` it was built with, which is also the
        ``vm_lifetime_seconds`` it sent when creating the session.
        """
        candidates = [WIRE_DEFAULT_TIMEOUT]
        if self.settings.timeout is not None:
            candidates.append(self.settings.timeout)
        entry = self.ledger.get(session_id)
        if entry is not None and entry.lifetime is not None:
            candidates.append(entry.lifetime)
        return max(1.0, min(candidates))

    async def execute_before(self, session_id: str, request: ExecRequest, client_timeout: float) -> ExecutionResult:
        """Run code so that the answer is ready before ``client_timeout`` seconds have passed.

        The engine's limit is set a little below the client's; should the interpreter ignore the
        interrupt, the answer goes out at the deadline anyway (status 'timeout') while the engine
        finishes restarting the interpreter in the background.
        """
        engine_limit, deadline = wire_time_limits(client_timeout)
        started = time.perf_counter()
        task = asyncio.ensure_future(self.backend.execute(session_id, request.replace(timeout=engine_limit)))
        done, _ = await asyncio.wait({task}, timeout=deadline)
        if task in done:
            result = task.result()
            self.record(session_id, result)
            if result.status == "timeout" and engine_limit < client_timeout:
                note = (
                    f"the limit was set to {engine_limit:g} s, just under the requested {client_timeout:g} s, "
                    "so that this answer reaches the client before its HTTP timeout"
                )
                result = result.model_copy(update={"warnings": [*result.warnings, note]})
            return result
        # Keep the engine's call alive until it has cleaned up, and log what it ends with.
        self._stragglers.add(task)
        task.add_done_callback(self._straggler_done)
        lang = request.language or "python"
        return _core.build_result(
            language=lang,
            session_id=session_id,
            stdout="",
            stderr="",
            exit_code=_core.EXIT_TIMEOUT,
            error=ErrorInfo(
                name="Timeout",
                value=f"Execution did not finish within {client_timeout:g} s and ignored the interrupt; its "
                "interpreter is being restarted, so this session's variables are lost. Output was not collected.",
            ),
            outputs=[],
            execution_time=round(time.perf_counter() - started, 6),
            timed_out=True,
            state_lost=True,
        )

    def _straggler_done(self, task: asyncio.Task[ExecutionResult]) -> None:
        self._stragglers.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("a timed-out execution ended with an error after its answer was sent: %s", exc)

    async def aclose(self) -> None:
        """Stop background executions that outlived their answer."""
        for task in list(self._stragglers):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._stragglers, return_exceptions=True)

    @property
    def uptime(self) -> float:
        """Seconds since the server started."""
        return time.monotonic() - self.started_monotonic
