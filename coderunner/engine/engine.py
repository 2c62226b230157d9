"""The execution engine: sessions, the warm kernel pool, expiry, files and orphan clean-up (async, one loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import importlib
import json
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import psutil

from coderunner import _core, languages
from coderunner.config import Settings
from coderunner.engine import processes
from coderunner.engine.base import Kernel, ipc_leftovers
from coderunner.engine.demand import DEMAND_WINDOW, PoolDemand, parallel_starts
from coderunner.engine.forkserver import ForkServer, fork_supported
from coderunner.engine.processes import pid_signature
from coderunner.engine.session import EngineSession, ExecutionLimits
from coderunner.engine.table import SessionTable
from coderunner.errors import (
    FileNotFoundInSessionError,
    InvalidRequestError,
    PathError,
    PermissionDeniedError,
)
from coderunner.models import ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

__all__ = ["Engine", "kernel_class", "kill_group", "pid_signature", "reap_orphans"]

log = logging.getLogger(__name__)

# Threads for blocking file work (removing directories, reading and writing files). Started with the
# engine, never more: when a fork bomb holds every slot of the process limit, a new thread cannot start,
# and closing the session (which removes its directory) must still work.
_IO_THREADS = 4


def kernel_class(language: str) -> type[Kernel]:
    """The kernel implementation for a normalised language (imported lazily)."""
    try:
        lang = languages.by_name(language)
    except KeyError:
        raise InvalidRequestError(f"No kernel for language {language!r}.") from None
    cls: type[Kernel] = getattr(importlib.import_module(lang.kernel_module), lang.kernel_class)
    return cls


def kill_group(pid: int, signature: float | None) -> None:
    """Kill ``pid``'s process group, but only if ``pid`` is still the process we started (its :func:`pid_signature`)."""
    sig = pid_signature(pid)
    if sig is None or (signature is not None and abs(sig - signature) > 0.01):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def reap_orphans(runtime_root: Path) -> int:
    """Kill kernels, and every process their code started, and remove directories left by engines whose owner is gone.

    The user's processes are found by the engine's name in their environment
    (:mod:`coderunner.engine.processes`), so those that left the kernel's process group are reaped too.

    Returns:
        How many engine directories were cleaned up.
    """
    cleaned = 0
    if not runtime_root.is_dir():
        return 0
    processes.remove_stale_staging(runtime_root, "e-*")
    orphans: list[Path] = []
    for engine_dir in runtime_root.glob("e-*"):
        try:
            owner = json.loads((engine_dir / processes.OWNER_FILE).read_text())
            owner_pid, owner_start = int(owner["pid"]), float(owner["start"])
        except (OSError, ValueError, KeyError, TypeError):
            owner_pid, owner_start = -1, None
        if owner_pid > 0 and processes.same_process(owner_pid, owner_start):
            continue  # its owner is alive: not an orphan
        for pid_file in (engine_dir / "pids").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                kill_group(int(pid_file.name), float(pid_file.read_text()))
        orphans.append(engine_dir)
    if orphans:
        # Before the directories go: a crash between the two leaves the directory, so the next sweep retries.
        killed = processes.kill_engine_processes({d.name for d in orphans})
        if killed:
            log.info("killed %d processes left running by crashed engines", len(killed))
    for engine_dir in orphans:
        shutil.rmtree(engine_dir, ignore_errors=True)
        # Sockets of an engine whose runtime path was too long for them (see engine.base.ipc_base).
        for left in ipc_leftovers(engine_dir.name):
            with contextlib.suppress(OSError):
                left.unlink()
        cleaned += 1
    return cleaned


_T = TypeVar("_T")


class Engine:
    """Owns every session and kernel of one runner or server. All methods run on one event loop.

    The InProcess backend shares one engine between the runners of a process (see
    :mod:`coderunner.backends.inprocess`): they pass their own :class:`Settings` to :meth:`create_session`
    and :meth:`execute`, and keep track of which sessions are theirs.
    """

    pool_starts: int = parallel_starts()
    """Most pool kernel starts under way at once: a start is CPU-bound, so more at once only slows each."""
    pool_window: float = DEMAND_WINDOW
    """Seconds of demand the pool remembers: its target is the kernels taken in that time (see demand.py)."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend_name: str = "inprocess",
        kernel_factory: Callable[[str], Kernel] | None = None,
    ) -> None:
        self.settings = settings
        self.backend_name = backend_name
        self._factory = kernel_factory or self._new_kernel
        self._forkserver: ForkServer | None = None
        self._sessions: SessionTable[EngineSession] = SessionTable(settings.max_sessions)
        self._pool: dict[str, deque[Kernel]] = {}
        self._pool_tasks: set[asyncio.Task[None]] = set()
        self._kernels: dict[int, float | None] = {}
        self._io: concurrent.futures.ThreadPoolExecutor | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self._started = False
        self.root = Path(settings.runtime_dir)
        self.dir = self.root / f"e-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.created = time.time()
        # pool_hits / pool_misses: kernels of a pooled language handed out warm / started for the asker.
        self.totals = {"sessions_created": 0, "executions": 0, "pool_hits": 0, "pool_misses": 0}
        self._demand: dict[str, PoolDemand] = {}
        self._pool_timer: asyncio.TimerHandle | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Clean up orphans of crashed runs, create our directory, warm the pool, start expiry."""
        if self._started:
            return
        self._started = True
        await self._start_io_threads()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        cleaned = await self._blocking(reap_orphans, self.root)
        if cleaned:
            log.info("removed %d leftover engine directories from earlier runs", cleaned)
        me = os.getpid()
        processes.publish_owned_dir(
            self.dir, {"pid": me, "start": pid_signature(me)}, subdirs=("pids", "pool", "sessions")
        )
        processes.kill_at_exit(self)
        self._fill_pool()
        self._reaper = asyncio.ensure_future(self._expire_loop())

    async def _start_io_threads(self) -> None:
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=_IO_THREADS, thread_name_prefix="coderunner-io")
        # The pool starts a thread only when no idle one is there: tasks that wait for each other make it
        # start all of them now.
        barrier = threading.Barrier(_IO_THREADS)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(*(loop.run_in_executor(self._io, barrier.wait, 5.0) for _ in range(_IO_THREADS)))
        except (RuntimeError, threading.BrokenBarrierError) as exc:  # RuntimeError: at the process limit already
            log.warning("could not start all %d I/O threads of the engine: %s", _IO_THREADS, exc)
        from coderunner.engine.python import start_zmq_threads  # jupyter_client is imported on first use

        # ZMQ's threads too: libzmq aborts the process when it cannot start one, and its first kernel client
        # may come while a session's fork bomb holds every slot of the process limit (a container's agent).
        start_zmq_threads()

    async def _blocking(self, func: Callable[..., _T], *args: object) -> _T:
        """Run blocking file work on the engine's own threads (started in advance, see ``_IO_THREADS``)."""
        return await asyncio.get_running_loop().run_in_executor(self._io, func, *args)

    async def close(self) -> None:
        """Close every session and pooled kernel and remove the engine directory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        pool_tasks = list(self._pool_tasks)
        for task in pool_tasks:
            task.cancel()
        # Wait for half-started pool kernels to be shut down before their directory goes away.
        await asyncio.gather(*pool_tasks, return_exceptions=True)
        # Not remembered as gone: after close, their ids are unknown (the Docker backend and the browser
        # engine say 'the runner was closed' instead).
        sessions = self._sessions.clear()
        pooled = [k for q in self._pool.values() for k in q]
        self._pool.clear()
        await asyncio.gather(
            *(self._close_session_obj(s) for s in sessions),
            *(k.shutdown() for k in pooled),
            return_exceptions=True,
        )
        if self._forkserver is not None:
            await self._forkserver.close()
        self.kill_now()

    def kill_now(self) -> None:
        """Synchronously kill every kernel this engine started and what their code started; remove the directory.

        For atexit, and the last step of :meth:`close`.
        """
        if self._forkserver is not None:
            self._forkserver.kill_now()
        for pid, ct in list(self._kernels.items()):
            kill_group(pid, ct)
        self._kernels.clear()
        if self._started:
            processes.kill_engine_processes({self.dir.name})
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._io is not None:
            self._io.shutdown(wait=False)
        processes.forget_at_exit(self)

    # -- kernels and pool --------------------------------------------------------------------------

    def _demand_of(self, language: str) -> PoolDemand:
        return self._demand.setdefault(language, PoolDemand())

    def _pool_target(self, language: str) -> int:
        if not languages.by_name(language).pooled:
            return 0
        return self._demand_of(language).target(
            self.settings.pool_size, self.settings.pool_max, time.monotonic(), self.pool_window
        )

    def _warming(self, language: str | None = None) -> list[asyncio.Task[None]]:
        """The pool's kernel starts under way (for ``language``, or all of them)."""
        names = {f"pool-{language}"} if language else {f"pool-{lang}" for lang in languages.LANGUAGES}
        # A copy first: stats() reads this from the caller's thread while the loop adds and removes tasks.
        return [t for t in list(self._pool_tasks) if t.get_name() in names]

    def _fill_pool(self) -> None:
        """Bring each pooled language to its target: start what is missing, shut a surplus down.

        At most :attr:`pool_starts` starts are under way at once; each one that ends calls this again, so
        the pool refills in parallel up to that bound. While demand keeps the target above ``pool_size``,
        a timer calls this again when the oldest take leaves the window, which is how the pool shrinks.
        """
        if self._closed:
            return
        now = time.monotonic()
        recheck: list[float] = []
        for language in (lang for lang in languages.LANGUAGES if languages.by_name(lang).pooled):
            queue = self._pool.setdefault(language, deque())
            target = self._pool_target(language)
            while len(queue) > target:  # demand fell, or the runner that wanted a bigger pool left
                self._pool_task(queue.pop().shutdown(), "pool-drop")
            missing = target - len(queue) - len(self._warming(language))
            room = self.pool_starts - len(self._warming())
            for _ in range(max(min(missing, room), 0)):
                self._pool_task(self._start_pooled(language), f"pool-{language}")
            change = self._demand_of(language).next_change(now, self.pool_window)
            if target > self.settings.pool_size and change is not None:
                recheck.append(change)
        if self._pool_timer is not None:
            self._pool_timer.cancel()
            self._pool_timer = None
        if recheck:
            # A little late rather than early: a timer may fire a clock tick before its time.
            delay = max(min(recheck), 0.0) + 0.05
            self._pool_timer = asyncio.get_running_loop().call_later(delay, self._fill_pool)

    def _pool_task(self, coro: Coroutine[object, object, None], name: str) -> None:
        # In _pool_tasks so close() cancels and awaits it (and a kernel half-started is shut down).
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._pool_tasks.add(task)
        task.add_done_callback(self._pool_tasks.discard)

    async def _start_pooled(self, language: str) -> None:
        try:
            kernel = await self._start_kernel(language, self.dir / "pool", os.environ)
        except Exception as exc:  # the pool is an optimisation; a failed warm start must not surface here
            log.warning("could not pre-start a %s kernel: %s", language, exc)
            return  # and no refill from here: a start that fails would fail again at once
        if self._closed:
            await kernel.shutdown()
            return
        self._pool.setdefault(language, deque()).append(kernel)
        # This start is over: out of the count before the refill, so the next one may begin in its place.
        me = asyncio.current_task()
        if me is not None:
            self._pool_tasks.discard(me)
        self._fill_pool()

    def set_pool_bounds(self, pool_size: int, pool_max: int) -> None:
        """Keep between ``pool_size`` and ``pool_max`` warm kernels from now on; runs on the engine's loop.

        A shared engine follows its runners with this: the largest ``pool_size`` and ``pool_max`` any of
        them asked for. A pool above the new bounds is shut down to them at once.
        """
        self.settings = dataclasses.replace(self.settings, pool_size=pool_size, pool_max=pool_max)
        if self._started:
            self._fill_pool()

    async def _start_kernel(self, language: str, cwd: Path, env: Mapping[str, str]) -> Kernel:
        kernel = self._factory(language)
        # The tag every process started from this kernel inherits: how its leftovers are found (processes.py).
        kernel.tag = processes.new_tag(self.dir.name)
        try:
            await kernel.start(cwd, {**env, processes.TAG_VAR: kernel.tag}, self.dir)
        except BaseException:
            # A half-started interpreter may have left a process behind (e.g. it forked, then no thread
            # could be started to wait for it): it carries the tag.
            processes.kill_leftovers({kernel.tag})
            raise
        finally:
            if kernel.pid is not None:
                self.register_process(kernel.pid)
        if kernel.pid is not None:
            kernel.started = processes.start_mark(kernel.pid)
        return kernel

    def _new_kernel(self, language: str) -> Kernel:
        if language == "python":
            from coderunner.engine.python import PythonKernel

            return PythonKernel(forkserver=self._python_forkserver())
        return kernel_class(language)()

    def _python_forkserver(self) -> ForkServer | None:
        """The fork server Python kernels come from (made on first use), or None when they are spawned."""
        mode = self.settings.kernel_start
        if mode == "spawn" or (mode == "auto" and not fork_supported()):
            return None
        if self._forkserver is None:
            # Its tag marks it (and, until they rewrite it, its children) as this engine's: see processes.py.
            env = {**os.environ, processes.TAG_VAR: processes.new_tag(self.dir.name)}
            from coderunner.engine.python import make_fork_server

            self._forkserver = make_fork_server(env, on_start=self.register_process)
        return self._forkserver

    def register_process(self, pid: int) -> None:
        """Record a child process (a kernel, the browser) so exit and the orphan reaper can kill it."""
        ct = pid_signature(pid)
        self._kernels[pid] = ct
        with contextlib.suppress(OSError):
            (self.dir / "pids" / str(pid)).write_text(repr(ct))

    async def _provide(self, language: str, cwd: Path, env: Mapping[str, str]) -> Kernel:
        queue = self._pool.setdefault(language, deque())
        pooled = languages.by_name(language).pooled
        if pooled:
            demand = self._demand_of(language)
            demand.took(time.monotonic())
            self._fill_pool()  # the target may have grown: more starts can begin now, in parallel
            while not queue:
                warming = self._warming(language)
                if len(warming) <= demand.waiting:
                    break  # each start under way is spoken for: a start of our own beats waiting behind them
                # A warm start is already under way (e.g. right after the runner was created):
                # joining it is faster than starting a second kernel from scratch.
                demand.waiting += 1
                try:
                    await asyncio.wait(warming, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    demand.waiting -= 1
        while queue:
            kernel = queue.popleft()
            self._fill_pool()
            if not kernel.is_alive():
                await kernel.shutdown()
                continue
            try:
                # The tag is the kernel's own: a session's environment must not replace it.
                await kernel.configure(cwd, {k: v for k, v in env.items() if k != processes.TAG_VAR})
                self.totals["pool_hits"] += 1
                return kernel
            except Exception as exc:  # a bad pooled kernel: fall back to a fresh start
                log.warning("discarding a pooled %s kernel: %s", language, exc)
                await kernel.shutdown()
        if pooled:
            self.totals["pool_misses"] += 1
        full_env = _core.merge_env(os.environ, env)
        return await self._start_kernel(language, cwd, full_env)

    # -- sessions ----------------------------------------------------------------------------------

    async def create_session(
        self, spec: SessionSpec | None = None, *, warm: bool = True, settings: Settings | None = None
    ) -> SessionInfo:
        """Create a session as ``spec`` says; with ``warm`` its default language's interpreter is started now.

        ``settings`` are the asking runner's (its default ``idle_timeout``); default: the engine's.
        """
        spec = spec or SessionSpec()
        settings = settings or self.settings
        language = spec.language
        self._check_open()
        with self._sessions.reserve() as place:
            session_id = str(uuid.uuid4())
            if spec.working_dir is not None:
                wd = Path(spec.working_dir).expanduser().resolve()
                wd.mkdir(parents=True, exist_ok=True)
                owns = False
            else:
                wd = self.dir / "sessions" / session_id
                wd.mkdir(parents=True)
                owns = True
            session = EngineSession(
                session_id=session_id,
                language=language,
                working_dir=wd,
                owns_dir=owns,
                env=dict(spec.env),
                idle_timeout=spec.idle_timeout if spec.idle_timeout is not None else settings.idle_timeout,
                lifetime=spec.lifetime,
                metadata=dict(spec.metadata),
                backend_name=self.backend_name,
                kernel_provider=self._provide,
            )
            place.add(session_id, session)
        self._wake.set()
        self.totals["sessions_created"] += 1
        if warm:
            try:
                await session.kernel(language)
            except BaseException:
                await self._drop(session_id, "its interpreter failed to start")
                raise
        return session.info()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidRequestError("This runner is closed; create a new one.")

    def session(self, session_id: str) -> EngineSession:
        """Look up a live session.

        Raises:
            SessionNotFoundError: Unknown, closed or expired, with the reason when known.
        """
        return self._sessions.get(session_id)

    def has_session(self, session_id: str) -> bool:
        """Whether ``session_id`` is a live session (not closed, not expired)."""
        return session_id in self._sessions

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a live session."""
        return self.session(session_id).info()

    async def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        return [s.info() for s in self._sessions.values()]

    async def close_session(self, session_id: str) -> None:
        """Close a session; closing an already-closed one is a no-op."""
        if self._sessions.is_gone(session_id):
            return
        self.session(session_id)
        await self._drop(session_id, "it was closed")

    async def _drop(self, session_id: str, reason: str) -> None:
        session = self._sessions.forget(session_id, reason)
        if session is not None:
            await self._close_session_obj(session)

    async def _close_session_obj(self, session: EngineSession) -> None:
        await session.interrupt(leftovers=False)  # close() kills those, with the kernels
        await session.close()
        for kernel_pid in [p for p in self._kernels if not psutil.pid_exists(p)]:
            self._kernels.pop(kernel_pid, None)
            with contextlib.suppress(OSError):
                (self.dir / "pids" / str(kernel_pid)).unlink()
        if session.owns_dir:
            await self._blocking(shutil.rmtree, session.working_dir, True)

    async def _expire_loop(self) -> None:
        while True:
            # Sleep until the next check is due, or until a new session may need an earlier one.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._expiry_period())
            self._wake.clear()
            for gone in self._sessions.expire(time.monotonic()):
                log.info("session %s expired: %s", gone.session_id, gone.reason)
                await self._close_session_obj(gone.session)

    def _expiry_period(self) -> float:
        return self._sessions.next_check(floor=0.1)

    # -- execution ---------------------------------------------------------------------------------

    async def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
        settings: Settings | None = None,
    ) -> ExecutionResult:
        """Run ``request`` (checked when it was made) in a session; see :meth:`EngineSession.execute`.

        ``settings`` are the asking runner's (default timeout, output cap, grace, file tracking); default:
        the engine's.
        """
        session = self.session(session_id)
        lang = request.language_or(session.language)
        settings = settings or self.settings
        limits = ExecutionLimits(
            timeout=request.timeout_or(settings.timeout),
            max_output_chars=settings.max_output_chars,
            interrupt_grace=settings.interrupt_grace,
            track_files=settings.track_files,
        )
        self.totals["executions"] += 1
        return await session.execute(request.code, lang, limits, on_stdout, on_stderr)

    async def interrupt(self, session_id: str) -> bool:
        """Interrupt whatever runs in the session and kill what its code left running; False when no execution ran.

        See :meth:`EngineSession.interrupt`.
        """
        return await self.session(session_id).interrupt()

    # -- files -------------------------------------------------------------------------------------

    async def upload(self, session_id: str, path: str, data: bytes, *, absolute_paths: bool = False) -> FileInfo:
        """Write ``data`` to ``path`` inside the session directory (parents are created).

        ``absolute_paths``: an absolute path names the sandbox's filesystem and is written as this process's
        user may (see :data:`coderunner._core.ABSOLUTE_PATHS_RULE`); relative paths stay in the session directory.
        """
        session = self.session(session_id)
        target = _core.resolve_in_root(session.working_dir, path, absolute=absolute_paths)
        if target == session.working_dir.resolve():
            raise PathError("Upload needs a file name, not the session directory itself.")
        if target.is_dir():
            raise InvalidRequestError(f"{path!r} is a directory; name the file to write.")
        session.touch()
        with _os_errors(path):
            return await self._blocking(_write_file, session.working_dir.resolve(), target, data)

    async def download(self, session_id: str, path: str, *, absolute_paths: bool = False) -> bytes:
        """Read a file from the session directory (``absolute_paths``: as for :meth:`upload`)."""
        session = self.session(session_id)
        target = _core.resolve_in_root(session.working_dir, path, absolute=absolute_paths)
        session.touch()
        if target.is_dir():
            raise InvalidRequestError(
                f"{path!r} is a directory, not a file; name a file in it (list_files lists them)."
            )
        if not target.is_file():
            raise FileNotFoundInSessionError(
                f"No file {path!r} in the session directory. Use list_files() to see what is there."
            )
        with _os_errors(path):
            return await self._blocking(target.read_bytes)

    async def list_files(self, session_id: str, path: str = ".", *, absolute_paths: bool = False) -> list[FileInfo]:
        """List a directory of the session (non-recursive), folders first (``absolute_paths``: see :meth:`upload`)."""
        session = self.session(session_id)
        target = _core.resolve_in_root(session.working_dir, path, absolute=absolute_paths)
        if not target.is_dir():
            raise FileNotFoundInSessionError(f"No directory {path!r} in the session directory.")
        with _os_errors(path):
            return await self._blocking(_list_dir, session.working_dir.resolve(), target)

    # -- figures -----------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters for health reports."""
        return {
            "active_sessions": len(self._sessions),
            "running_executions": sum(1 for s in self._sessions.values() if s.busy),
            "pooled_kernels": sum(len(q) for q in self._pool.values()),
            "pool_target": sum(self._pool_target(lang) for lang in languages.LANGUAGES),
            "pool_starting": len(self._warming()),
            **self.totals,
        }


@contextlib.contextmanager
def _os_errors(path: str) -> Iterator[None]:
    """Turn what the filesystem refuses (absolute paths reach beyond the session directory) into the tree."""
    try:
        yield
    except PermissionError:
        raise PermissionDeniedError(
            f"Permission denied for {path!r}: the sandbox's user may not do that there; use a path it owns "
            "(the session directory or /tmp)."
        ) from None
    except NotADirectoryError:
        raise PathError(f"Path {path!r} goes through a file where a directory should be.") from None
    except IsADirectoryError:
        raise InvalidRequestError(f"{path!r} is a directory; name a file.") from None
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        raise PermissionDeniedError(
            f"{path!r} is on a read-only filesystem in the sandbox; write under the session directory or /tmp."
        ) from None


def _file_info(root: Path, path: Path) -> FileInfo:
    st = path.stat()
    return FileInfo(
        path=_core.relative_posix(root, path),
        size=0 if path.is_dir() else st.st_size,
        is_dir=path.is_dir(),
        modified_at=datetime.fromtimestamp(st.st_mtime, timezone.utc),
    )


def _write_file(root: Path, target: Path, data: bytes) -> FileInfo:
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a symlink planted at the target after our check must not redirect the write.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return _file_info(root, target)


def _list_dir(root: Path, folder: Path) -> list[FileInfo]:
    entries = []
    for child in sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
        if child.parent == root and child.name == ".coderunner":
            continue
        with contextlib.suppress(OSError):
            entries.append(_file_info(root, child))
    return entries
