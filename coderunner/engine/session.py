"""One engine session: a working directory, an environment, and a kernel per language, with the execution policy.

The policy lives here once for every language: serialise executions, enforce the
time limit by interrupting (state kept) and restarting only when the interrupt
is ignored, kill the processes an interrupted execution left behind, notice dead
interpreters (during a call or between calls), say when the process limit is
what failed, cap output, measure CPU and memory, and track the files an
execution touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from coderunner import _core
from coderunner.engine import processes
from coderunner.engine.base import Kernel, KernelReply, NullSink
from coderunner.engine.output import CappedSink
from coderunner.errors import BackendError
from coderunner.models import ErrorInfo, ExecutionResult, SessionInfo

__all__ = ["EngineSession", "ExecutionLimits"]

log = logging.getLogger(__name__)

KernelProvider = Callable[[str, Path, Mapping[str, str]], Awaitable[Kernel]]
"""Returns a started kernel for (language, cwd, env), from the pool when it can."""

SPILL_DIR = ".coderunner/output"

# How long the interpreter gets to collect the children the engine killed (see processes.python_reap_code).
_REAP_TIMEOUT = 10.0
# A no-op answers in milliseconds; the bound only keeps a kernel that aborts it silently from holding the session.
_SETTLE_TIMEOUT = 2.0
# Output that suggests a fork failed for lack of processes (EAGAIN), worth the cost of counting them.
_NO_PROCESSES = re.compile(r"Resource temporarily unavailable|EAGAIN|BlockingIOError|can't start new thread|fork")


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

    @property
    def process(self) -> psutil.Process | None:
        """The kernel's process (None when it could not be looked up)."""
        return self._proc

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
        # Per language: why its interpreter was replaced between calls, for the next result to say.
        self._lost: dict[str, str] = {}

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
        if kernel is not None and not self._exited(kernel):
            return kernel
        if kernel is not None:
            # Killed from outside (or exited by itself) between calls: the next result must say the state is gone.
            returncode = await _exit_status(kernel)
            self._lost[language] = (
                f"the {language} interpreter {_cause(returncode)} while idle (between calls); a fresh interpreter "
                f"ran this code: all variables and imports of the earlier {language} calls were lost (files in "
                "the session directory remain)"
            )
            await self._retire(kernel)
            del self.kernels[language]
        task = self._starting.get(language)
        if task is None:
            task = asyncio.ensure_future(self._provider(language, self.working_dir, self.env))
            self._starting[language] = task
        try:
            kernel = await asyncio.shield(task)
        except BackendError as exc:
            limit = processes.process_limit()
            if limit is None or not limit.exhausted:
                raise
            raise BackendError(f"{exc.message.rstrip('.')}: {self._limit_message(limit)}") from exc
        finally:
            self._starting.pop(language, None)
        if self.closed:
            await kernel.shutdown()
            raise BackendError("The session was closed while its interpreter was starting.")
        self.kernels[language] = kernel
        self.touch()  # starting took time that must not count as idleness
        return kernel

    def _exited(self, kernel: Kernel) -> bool:
        """True when the kernel's process has exited, even if the kernel has not noticed yet.

        Right after a ``kill -9`` a kernel may still look alive: asyncio learns of bash's exit a moment later,
        and a multithreaded process cannot be collected until all its threads are gone. The process itself
        says so at once (gone, or a zombie).
        """
        if not kernel.is_alive():
            return True
        meter = self._meters.get(kernel.pid) if kernel.pid is not None else None
        proc = meter.process if meter is not None else None
        if proc is None:
            return False
        try:
            return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True

    async def close(self) -> None:
        """Interrupt what runs, stop every kernel and kill every process their code started. Idempotent."""
        self.closed = True
        for task in list(self._starting.values()):
            task.cancel()
        kernels, self.kernels = list(self.kernels.values()), {}
        await asyncio.gather(*(self._retire(k) for k in kernels), return_exceptions=True)

    async def _retire(self, kernel: Kernel) -> list[processes.ProcInfo]:
        """Stop a kernel for good, with everything its code started, wherever that went (returned)."""
        await kernel.shutdown()
        return await self._kill_leftovers(kernel, keep_kernel=False)

    async def _kill_leftovers(self, kernel: Kernel, *, keep_kernel: bool) -> list[processes.ProcInfo]:
        """Kill the processes started from ``kernel`` (``keep_kernel``: spare the interpreter itself).

        The interpreter is not stopped meanwhile, though a loop of ``fork()`` in it keeps starting processes:
        SIGSTOP/SIGCONT just before an interrupt makes Linux hand the SIGINT to one of ipykernel's other
        threads, and then ``time.sleep()`` in the main thread is not interrupted. Repeated passes do instead.
        """
        tag = kernel.tag
        if tag is None:
            return []
        kernel_pids = [kernel.pid] if keep_kernel and kernel.pid is not None and kernel.is_alive() else []
        since = kernel.started
        killed = processes.kill_leftovers({tag}, kernel_pids, since=since)
        if killed:
            # One that was between fork() and our scan escaped the freeze: look once more.
            await asyncio.sleep(0.05)
            killed += processes.kill_leftovers({tag}, kernel_pids, since=since)
        return killed

    async def _collect(self, kernel: Kernel, killed: list[processes.ProcInfo]) -> None:
        """Have a live Python interpreter collect its killed children: as zombies they hold the process limit.

        Only while the kernel is idle: this is an execution of its own.
        """
        children = sorted({p.pid for p in killed if p.ppid == kernel.pid})
        # bash and node collect their children themselves; Python's os.fork() children wait for the user's code.
        if kernel.language != "python" or not children or not kernel.is_alive():
            return
        try:
            await asyncio.wait_for(kernel.execute(processes.python_reap_code(children), NullSink()), _REAP_TIMEOUT)
        except (asyncio.TimeoutError, BackendError) as exc:
            log.warning("the python interpreter did not collect %d killed children: %s", len(children), exc)

    async def _settle(self, kernel: Kernel) -> None:
        """Let an interrupt that came just after the code had stopped land on a no-op, not on the next code.

        A SIGINT sent as the interrupted execution was already ending (the first one at a timeout, or a
        resend) is raised in the kernel's next dispatch, which ipykernel then aborts ("KeyboardInterrupt
        caught in kernel") without running it: the user's next code would come back empty.
        """
        if kernel.language != "python" or not kernel.is_alive():
            return
        with contextlib.suppress(asyncio.TimeoutError, BackendError):
            await asyncio.wait_for(kernel.execute("pass", NullSink()), _SETTLE_TIMEOUT)

    def _limit_message(self, limit: processes.ProcessLimit) -> str:
        """Why nothing can start: the limit, whose processes hold it, and how to free them."""
        procs = processes.scan()
        parts = []
        for language, kernel in sorted(self.kernels.items()):
            if kernel.tag is None:
                continue
            alive = [kernel.pid] if kernel.pid is not None and kernel.is_alive() else []
            n = len(processes.leftovers(procs, {kernel.tag}, alive))
            if n:
                parts.append(
                    f"{n} {'is a leftover process' if n == 1 else 'are leftover processes'} of the "
                    f"{language} interpreter"
                )
        text = f"the process limit is reached, {limit.describe()}"
        if not parts:
            return f"{text}; none of them were started by this session's code"
        return (
            f"{text}: {', '.join(parts)}. Call interrupt() on the session to kill the processes its code left "
            "running (the interpreters and their variables are kept); a timeout also kills those of the "
            "interpreter that timed out"
        )

    # -- execution ----------------------------------------------------------------------------------

    async def interrupt(self, *, leftovers: bool = True) -> bool:
        """Cancel the running execution (state is kept when the interpreter obeys), killing what it started.

        When no execution runs, kill instead what earlier executions left running in the background
        (e.g. after a fork bomb), in every language; the interpreters and their variables are kept.

        Args:
            leftovers: Kill the leftovers of an idle session (False: just cancel a running execution).

        Returns:
            True when an execution was running and was asked to stop; False when the session was idle.
        """
        running = self._running
        if running is not None:
            running.cancel.set()
            return True
        if leftovers and not self._lock.locked():
            async with self._lock:  # free, so taken at once: no execution starts meanwhile
                killed = 0
                for kernel in list(self.kernels.values()):
                    gone = await self._kill_leftovers(kernel, keep_kernel=True)
                    await self._collect(kernel, gone)
                    killed += len(gone)
                if killed:
                    log.info("session %s: interrupt() killed %d leftover processes", self.session_id, killed)
        return False

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
        warnings: list[str] = []
        lost = self._lost.pop(language, None)
        if lost is not None:
            state_lost = True
            warnings.append(lost)
        killed: list[processes.ProcInfo] = []
        task = asyncio.ensure_future(kernel.execute(code, sink))
        try:
            reply = await self._wait(task, running, limits.timeout)
            if reply is None:
                timed_out = not running.cancel.is_set()
                cancelled = not timed_out
                # The execution is over: what it started goes first. That ends a fork bomb, which would keep
                # the interpreter from answering, and spares its children the interrupt: a Python child forked
                # without exec would run the kernel's own reply code on the kernel's sockets.
                killed += await self._kill_leftovers(kernel, keep_kernel=True)
                await kernel.interrupt()
                reply = await self._interrupted(task, kernel, limits.interrupt_grace, killed)
                if reply is None:
                    # The interpreter ignored the interrupt: the only way out is a fresh one.
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                    await kernel.shutdown()
                    killed += await self._kill_leftovers(kernel, keep_kernel=False)
                    self.kernels.pop(language, None)
                    state_lost = True
                    notes.append(
                        f"the {language} interpreter did not stop within {limits.interrupt_grace:g} s of the "
                        "interrupt and was restarted: all variables and imports of this session were lost"
                    )
                    reply = KernelReply(exit_code=130, interrupted=True)
                else:
                    # Started while it handled the interrupt (a cleanup handler, say).
                    killed += await self._kill_leftovers(kernel, keep_kernel=True)
                    await self._collect(kernel, killed)
                    await self._settle(kernel)
        except asyncio.CancelledError:
            # Our caller went away (e.g. the server shut down): do not leave the code running.
            task.cancel()
            if kernel.tag is not None:
                processes.kill_leftovers({kernel.tag}, [kernel.pid] if kernel.pid and kernel.is_alive() else [])
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
            killed += await self._retire(kernel)
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
        if killed:
            n = len({(p.pid, p.start) for p in killed})  # a dying process may be met by several passes
            when = (
                "the execution was cancelled"
                if cancelled
                else "the execution was interrupted at the time limit"
                if timed_out
                else "the interpreter died"
            )
            warnings.append(
                f"killed {n} {'process' if n == 1 else 'processes'} the {language} code had started and left "
                f"running when {when}"
            )
        if notes and error is not None:
            error = ErrorInfo(name=error.name, value=f"{error.value} ({'; '.join(notes)})", traceback=error.traceback)

        after = _core.snapshot_files(self.working_dir) if limits.track_files else None
        created, modified = _core.diff_snapshots(before, after)
        stdout = sink.out.text()
        stderr = sink.err.text()
        if sink.dropped_outputs:
            stderr += f"\n[coderunner: {sink.dropped_outputs} more rich outputs were dropped]\n"
        failed = exit_code != 0 or error is not None
        # The cgroup's figures cost two small reads; counting processes for RLIMIT_NPROC reads them all, so
        # only when a fork seems to have failed.
        hint = failed and bool(_NO_PROCESSES.search(f"{stderr[-4000:]}\n{error.value if error else ''}"))
        limit = processes.process_limit(include_rlimit=hint)
        if limit is not None and limit.exhausted:
            warnings.append(self._limit_message(limit))
        error = sink.clean_error(error)  # a lone surrogate in an error text would make the result unserialisable
        warnings.extend(sink.warnings)
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
            warnings=warnings,
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

    async def _interrupted(
        self, task: asyncio.Future[KernelReply], kernel: Kernel, grace: float, killed: list[processes.ProcInfo]
    ) -> KernelReply | None:
        """Wait up to ``grace`` for an interrupted execution to end; None if it did not.

        While it runs on, its new processes are killed and the interrupt is sent again, at growing intervals:
        a loop of ``fork()`` keeps starting processes, and Python loses an interrupt that arrives during
        ``fork()`` (it is raised in an at-fork handler, which ignores it).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        step = 0.25
        while True:
            reply = await self._wait(task, None, max(0.0, min(step, deadline - loop.time())))
            if reply is not None or loop.time() >= deadline:
                return reply
            killed += await self._kill_leftovers(kernel, keep_kernel=True)
            await kernel.interrupt()
            step *= 2

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


def _cause(returncode: int | None, *, oom_hint: bool = False) -> str:
    """``was killed by SIGKILL``, ``exited with status 3``: how an interpreter ended."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        cause = f"was killed by {name}"
        if oom_hint and -returncode == signal.SIGKILL:
            cause += " (often: out of memory)"
        return cause
    if returncode is not None:
        return f"exited with status {returncode}"
    return "stopped unexpectedly"


async def _exit_status(kernel: Kernel) -> int | None:
    """The exit status of a kernel whose process is gone (executing on a dead kernel reports it at once)."""
    try:
        reply = await asyncio.wait_for(kernel.execute("", NullSink()), 5.0)
    except (asyncio.TimeoutError, BackendError):
        return None
    return reply.returncode if reply.died else None


def _death_message(language: str, returncode: int | None) -> str:
    return (
        f"The {language} interpreter {_cause(returncode, oom_hint=True)} during this execution. A fresh interpreter "
        "will be used for the next call; all variables and imports of this session were lost (files in the "
        "session directory remain)."
    )
