"""One engine session: a working directory, an environment, and a kernel per language, with the execution policy.

The policy lives here once for every language: serialise executions, enforce the
time limit by interrupting (state kept) and restarting only when the interrupt
is ignored, notice dead interpreters, cap output, measure CPU and memory, and
track the files an execution touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from coderunner import _core
from coderunner.engine.base import Kernel, KernelReply
from coderunner.engine.output import CappedSink
from coderunner.errors import BackendError
from coderunner.models import ErrorInfo, ExecutionResult, SessionInfo

__all__ = ["EngineSession", "ExecutionLimits"]

log = logging.getLogger(__name__)

KernelProvider = Callable[[str, Path, Mapping[str, str]], Awaitable[Kernel]]
"""Returns a started kernel for (language, cwd, env), from the pool when it can."""

SPILL_DIR = ".coderunner/output"


@dataclass(frozen=True)
class ExecutionLimits:
    """Limits applied to one execution."""

    timeout: float | None
    max_output_chars: int
    interrupt_grace: float
    track_files: bool


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Running:
    kernel: Kernel
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


class _Meter:
    """CPU seconds and peak RSS of one kernel process (and its reaped children), per execution."""

    def __init__(self, pid: int | None) -> None:
        self._pid = pid
        self._cpu0 = 0.0
        self._proc: psutil.Process | None = None
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                self._proc = psutil.Process(pid)  # cached: building one per call costs more than reading it

    def _cpu(self) -> float:
        assert self._proc is not None
        t = self._proc.cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def start(self) -> None:
        if self._proc is None:
            return
        try:
            self._cpu0 = self._cpu()
        except psutil.Error:
            self._proc = None
            return
        # Linux lets a process owner reset the "high water mark" so VmHWM covers just this execution.
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError), open(f"/proc/{self._pid}/clear_refs", "w") as fh:
                fh.write("5")

    def finish(self) -> tuple[float | None, int | None]:
        if self._proc is None:
            return None, None
        try:
            cpu = max(self._cpu() - self._cpu0, 0.0)
        except psutil.Error:
            return None, None
        peak: int | None = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{self._pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peak = int(line.split()[1]) * 1024
                        break
        else:
            with contextlib.suppress(psutil.Error):
                peak = int(self._proc.memory_info().rss)
        return round(cpu, 6), peak


class EngineSession:
    """A live session inside the engine."""

    def __init__(
        self,
        *,
        session_id: str,
        language: str,
        working_dir: Path,
        owns_dir: bool,
        env: Mapping[str, str],
        idle_timeout: float | None,
        lifetime: float | None,
        metadata: Mapping[str, str],
        backend_name: str,
        kernel_provider: KernelProvider,
    ) -> None:
        self.session_id = session_id
        self.language = language
        self.working_dir = working_dir
        self.owns_dir = owns_dir
        self.env = dict(env)
        self.idle_timeout = idle_timeout
        self.metadata = dict(metadata)
        self.backend_name = backend_name
        self.created_at = _now()
        self.expires_at = (
            datetime.fromtimestamp(self.created_at.timestamp() + lifetime, timezone.utc) if lifetime else None
        )
        self.last_activity = time.monotonic()
        self.last_activity_at = self.created_at
        self.kernels: dict[str, Kernel] = {}
        self.closed = False
        self._provider = kernel_provider
        self._lock = asyncio.Lock()
        self._running: _Running | None = None
        self._starting: dict[str, asyncio.Task[Kernel]] = {}
        self._meters: dict[int, _Meter] = {}

    # -- bookkeeping -------------------------------------------------------------------------------

    def touch(self) -> None:
        """Record activity now (resets the idle clock)."""
        self.last_activity = time.monotonic()
        self.last_activity_at = _now()

    @property
    def busy(self) -> bool:
        """True while an execution runs or waits for the lock, or an interpreter is starting."""
        return self._lock.locked() or bool(self._starting)

    def expiry_reason(self, now_monotonic: float) -> str | None:
        """Why the session should expire now, or None."""
        if self.busy:
            return None
        if self.expires_at is not None and _now() >= self.expires_at:
            return "its lifetime ended"
        if self.idle_timeout is not None and now_monotonic - self.last_activity > self.idle_timeout:
            return f"it was idle for more than {self.idle_timeout:g} s"
        return None

    def info(self, status: str = "active") -> SessionInfo:
        """The public description of this session."""
        return SessionInfo(
            session_id=self.session_id,
            status=status,  # type: ignore[arg-type,unused-ignore]
            language=self.language,
            languages=sorted(self.kernels),
            working_dir=str(self.working_dir),
            created_at=self.created_at,
            last_activity_at=self.last_activity_at,
            expires_at=self.expires_at,
            idle_timeout=self.idle_timeout,
            backend=self.backend_name,
            metadata=self.metadata,
        )

    # -- kernels ------------------------------------------------------------------------------------

    async def kernel(self, language: str) -> Kernel:
        """The session's kernel for ``language``, starting one if needed."""
        kernel = self.kernels.get(language)
        if kernel is not None and kernel.is_alive():
            return kernel
        if kernel is not None:  # died while idle: clean up what is left of it
            await kernel.shutdown()
            del self.kernels[language]
        task = self._starting.get(language)
        if task is None:
            task = asyncio.ensure_future(self._provider(language, self.working_dir, self.env))
            self._starting[language] = task
        try:
            kernel = await asyncio.shield(task)
        finally:
            self._starting.pop(language, None)
        if self.closed:
            await kernel.shutdown()
            raise BackendError("The session was closed while its interpreter was starting.")
        self.kernels[language] = kernel
        self.touch()  # starting took time that must not count as idleness
        return kernel

    async def close(self) -> None:
        """Interrupt what runs, stop every kernel. Idempotent."""
        self.closed = True
        for task in list(self._starting.values()):
            task.cancel()
        kernels, self.kernels = list(self.kernels.values()), {}
        await asyncio.gather(*(k.shutdown() for k in kernels), return_exceptions=True)

    # -- execution ----------------------------------------------------------------------------------

    async def interrupt(self) -> bool:
        """Cancel the running execution (state is kept when the interpreter obeys). False if idle."""
        running = self._running
        if running is None:
            return False
        running.cancel.set()
        return True

    async def execute(
        self,
        code: str,
        language: str,
        limits: ExecutionLimits,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Run ``code`` in this session under ``limits``. User errors come back in the result."""
        async with self._lock:
            if self.closed:
                raise BackendError("The session was closed.")
            self.touch()
            try:
                return await self._execute_locked(code, language, limits, on_stdout, on_stderr)
            finally:
                self.touch()

    async def _execute_locked(
        self,
        code: str,
        language: str,
        limits: ExecutionLimits,
        on_stdout: Callable[[str], None] | None,
        on_stderr: Callable[[str], None] | None,
    ) -> ExecutionResult:
        kernel = await self.kernel(language)
        exec_id = secrets.token_hex(6)
        sink = CappedSink(
            limit=limits.max_output_chars,
            spill_dir=self.working_dir / SPILL_DIR,
            spill_display_dir=SPILL_DIR,
            exec_id=exec_id,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )
        # Inline, not in a thread: a scandir of a typical session directory takes microseconds,
        # a thread hop costs more, and snapshot_files stops at a bounded number of entries.
        before = _core.snapshot_files(self.working_dir) if limits.track_files else None
        usage = self._meter(kernel)
        usage.start()
        running = _Running(kernel)
        self._running = running
        started = time.perf_counter()
        timed_out = cancelled = state_lost = False
        notes: list[str] = []
        task = asyncio.ensure_future(kernel.execute(code, sink))
        try:
            reply = await self._wait(task, running, limits.timeout)
            if reply is None:
                timed_out = not running.cancel.is_set()
                cancelled = not timed_out
                await kernel.interrupt()
                reply = await self._wait(task, None, limits.interrupt_grace)
                if reply is None:
                    # The interpreter ignored the interrupt: the only way out is a fresh one.
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                    await kernel.shutdown()
                    self.kernels.pop(language, None)
                    state_lost = True
                    notes.append(
                        f"the {language} interpreter did not stop within {limits.interrupt_grace:g} s of the "
                        "interrupt and was restarted: all variables and imports of this session were lost"
                    )
                    reply = KernelReply(exit_code=130, interrupted=True)
        except asyncio.CancelledError:
            # Our caller went away (e.g. the server shut down): do not leave the code running.
            task.cancel()
            await kernel.interrupt()
            raise
        finally:
            self._running = None
        elapsed = time.perf_counter() - started
        cpu, peak = usage.finish() if not reply.died else (None, None)
        sink.close()

        error = reply.error
        exit_code = reply.exit_code
        if reply.died:
            state_lost = True
            await kernel.shutdown()
            self.kernels.pop(language, None)
            exit_code = _core.exit_code_for_returncode(reply.returncode)
            error = ErrorInfo(name="InterpreterDied", value=_death_message(language, reply.returncode))
        elif timed_out:
            exit_code = _core.EXIT_TIMEOUT
            kept = "session state was lost" if state_lost else "session state was kept"
            error = ErrorInfo(
                name="Timeout",
                value=f"Execution exceeded the {limits.timeout:g} s time limit and was interrupted; {kept}.",
                traceback=error.traceback if error else "",
            )
        elif cancelled:
            exit_code = _core.EXIT_CANCELLED
            kept = "session state was lost" if state_lost else "session state was kept"
            error = ErrorInfo(
                name="Cancelled",
                value=f"Execution was cancelled on request; {kept}.",
                traceback=error.traceback if error else "",
            )
        if notes and error is not None:
            error = ErrorInfo(name=error.name, value=f"{error.value} ({'; '.join(notes)})", traceback=error.traceback)

        after = _core.snapshot_files(self.working_dir) if limits.track_files else None
        created, modified = _core.diff_snapshots(before, after)
        stdout = sink.out.text()
        stderr = sink.err.text()
        if sink.dropped_outputs:
            stderr += f"\n[coderunner: {sink.dropped_outputs} more rich outputs were dropped]\n"
        return _core.build_result(
            language=language,
            session_id=self.session_id,
            stdout=stdout,
            stderr=stderr,
            exit_code=exit_code,
            error=error,
            outputs=sink.outputs,
            execution_time=round(elapsed, 6),
            timed_out=timed_out,
            cancelled=cancelled,
            cpu_time=cpu,
            peak_memory_bytes=peak,
            truncated=sink.out.truncated or sink.err.truncated,
            stdout_file=sink.out.spill_file(),
            stderr_file=sink.err.spill_file(),
            files_created=created,
            files_modified=modified,
            state_lost=state_lost,
            execution_count=reply.execution_count,
        )

    def _meter(self, kernel: Kernel) -> _Meter:
        pid = kernel.pid
        if pid is None:
            return _Meter(None)
        meter = self._meters.get(pid)
        if meter is None:
            live = {k.pid for k in self.kernels.values()}
            self._meters = {p: m for p, m in self._meters.items() if p in live}
            meter = self._meters[pid] = _Meter(pid)
        return meter

    @staticmethod
    async def _wait(
        task: asyncio.Future[KernelReply], running: _Running | None, timeout: float | None
    ) -> KernelReply | None:
        """Wait for the execution; None when the timeout passed or a cancel was requested first."""
        waiters: set[asyncio.Future[Any]] = {task}
        cancel_wait: asyncio.Future[Any] | None = None
        if running is not None:
            cancel_wait = asyncio.ensure_future(running.cancel.wait())
            waiters.add(cancel_wait)
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if cancel_wait is not None:
                cancel_wait.cancel()
        if task.done():
            return task.result()
        return None


def _death_message(language: str, returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        cause = f"was killed by {name}"
        if -returncode == signal.SIGKILL:
            cause += " (often: out of memory)"
    elif returncode is not None:
        cause = f"exited with status {returncode}"
    else:
        cause = "stopped unexpectedly"
    return (
        f"The {language} interpreter {cause} during this execution. A fresh interpreter will be used for the "
        "next call; all variables and imports of this session were lost (files in the session directory remain)."
    )
