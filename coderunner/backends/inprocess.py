"""The InProcess backend: Jupyter/bash/node kernels as child processes of the caller.

Not a security boundary: code runs as your user, with your files and network.
Use the Docker backend for untrusted code.

One engine per process. Every InProcess backend of a process with the same ``runtime_dir`` and
``kernel_start`` shares one :class:`~coderunner.engine.engine.Engine` on one loop thread (a ``_Host``): one
warm kernel pool, one record of the kernels for exit and orphan clean-up. So a second runner's first session
is a pooled kernel, not a kernel start. Each backend is a tenant of the host (a ``_Tenant``): it sees and
closes only the sessions it created (another runner's session id is unknown to it), its own settings apply
to its sessions and executions (default timeout, output cap, interrupt grace, file tracking, idle timeout,
its ``max_sessions``), and the pool holds between the largest ``pool_size`` and the largest ``pool_max`` of
the live tenants. The last tenant to close shuts the host down; the next backend starts a new one.
``shared_engine=False`` (``CODERUNNER_SHARED_ENGINE=0``) gives a backend a host of its own.

It also has the browser capability (:mod:`coderunner.browser.protocol`): a Chromium driven by
Playwright (:mod:`coderunner.engine.browser`) on the same engine thread, started on the first browser
session; every action goes to :meth:`~coderunner.engine.browser.engine.BrowserEngine.act`. The browser
engine is each backend's own (its settings are: egress rules, Chromium path, limits), on the shared loop.

The engine is async, so :class:`AsyncInProcessBackend` is the implementation; :class:`InProcessBackend`
is its sync twin from :mod:`coderunner.backends.bridge`, running its coroutines on the engine's own loop
thread (one thread, no hop between loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from coderunner._loop import LoopThread
from coderunner.backends.bridge import SyncBrowserBridge
from coderunner.browser.actions import BrowserAction
from coderunner.browser.config import BrowserSettings
from coderunner.browser.models import BrowserSessionInfo
from coderunner.browser.sugar import AsyncBrowserActionMethods
from coderunner.config import Settings
from coderunner.engine.engine import Engine
from coderunner.engine.table import FULL, KEEP
from coderunner.errors import CapacityError, ConfigurationError, SessionNotFoundError
from coderunner.models import ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

if TYPE_CHECKING:  # imported on first use: most runners (and every code container's agent) never start it
    from coderunner.engine.browser.engine import BrowserEngine

__all__ = ["AsyncInProcessBackend", "InProcessBackend", "factory"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

NOT_YOURS = (
    "Session {session_id!r} does not exist in this runner (a session belongs to the runner that created it). "
    "Create one with create_session()."
)
"""A session id this backend did not create: unknown, or another runner's (the two are not told apart)."""

# The shared engine's own session table is not the limit: each tenant enforces its runner's max_sessions.
_ENGINE_MAX_SESSIONS = 1 << 30
_CLOSE_TIMEOUT = 30.0

_HOSTS: dict[tuple[str, str, str], _Host] = {}
"""The shared hosts by (backend name, real runtime_dir, kernel_start): what defines an engine rather than a
runner's use of it. Guarded by _HOSTS_LOCK, as every _Host.tenants."""
# Held only for a few dictionary and set operations, never while waiting for a loop, and no loop ever takes
# it: a backend's finalizer may run on any thread at any allocation (garbage collection), also on one that
# holds it already (hence re-entrant), and it waits for a loop to close the backend's sessions.
_HOSTS_LOCK = threading.RLock()
_TENANT_NUMBERS = itertools.count(1)


class _Host:
    """An :class:`Engine` running on its own loop thread, shared by its tenants (one per backend)."""

    def __init__(self, settings: Settings, backend_name: str, key: tuple[str, str, str] | None) -> None:
        self.key = key
        self.thread = LoopThread()
        self.engine = Engine(
            dataclasses.replace(settings, max_sessions=_ENGINE_MAX_SESSIONS), backend_name=backend_name
        )
        self.tenants: set[_Tenant] = set()
        self.started = False  # set on the loop, once the engine has started
        self.failed: BaseException | None = None
        self.closed = False
        self._start_lock = threading.Lock()

    def wait_started(self) -> None:
        """Start the engine (the first tenant does; the others wait for it here, not under _HOSTS_LOCK)."""
        with self._start_lock:
            if self.failed is not None:
                raise self.failed
            if self.started:
                return
            try:
                self.thread.run(self._start())
            except BaseException as exc:
                self.failed = exc
                raise

    async def _start(self) -> None:
        await self.engine.start()
        self.started = True

    def pool_changed(self) -> None:
        """The tenants changed: have the loop resize the pool to the live tenants' bounds (without waiting).

        The largest ``pool_size`` and ``pool_max`` of the tenants now, sent under the lock: the loop applies
        them in the order the changes happened, so the last one it applies is the current tenants'.
        """
        with _HOSTS_LOCK:
            wanted = [t.settings for t in list(self.tenants)]
            if self.closed or not wanted:
                return
            bounds = (max(s.pool_size for s in wanted), max(s.pool_max for s in wanted))
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to resize
                self.thread.loop.call_soon_threadsafe(self._apply_pool, *bounds)

    def _apply_pool(self, pool_size: int, pool_max: int) -> None:
        # Before the engine has started, the tenant that starts it sends the bounds again right after.
        if self.started and not self.closed:
            self.engine.set_pool_bounds(pool_size, pool_max)

    def shutdown(self) -> None:
        """Close the engine (every session and kernel left) and stop the loop thread. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.thread.run(self.engine.close(), timeout=_CLOSE_TIMEOUT)
        except Exception:  # the loop may already be gone at interpreter exit; kill directly
            self.engine.kill_now()
        finally:
            self.thread.stop()


def _acquire(tenant: _Tenant) -> _Host:
    """The host ``tenant`` joins: the process's shared one for its runtime_dir, started if new."""
    settings = tenant.settings
    key = (
        (tenant.backend_name, os.path.realpath(settings.runtime_dir), settings.kernel_start)
        if settings.shared_engine
        else None
    )
    with _HOSTS_LOCK:
        host = _HOSTS.get(key) if key is not None else None
        if host is None or host.failed is not None or host.closed:
            host = _Host(settings, tenant.backend_name, key)
            if key is not None:
                _HOSTS[key] = host
        host.tenants.add(tenant)
    try:
        host.wait_started()
    except BaseException:
        _leave(host, tenant)
        raise
    host.pool_changed()
    return host


def _leave(host: _Host, tenant: _Tenant) -> None:
    """Take ``tenant`` off ``host``; the last one out shuts the host down (outside the lock)."""
    with _HOSTS_LOCK:
        host.tenants.discard(tenant)
        last = not host.tenants
        if last and host.key is not None and _HOSTS.get(host.key) is host:
            del _HOSTS[host.key]  # from now on a new backend starts a new host, even while this one closes
    if last:
        host.shutdown()
    else:
        host.pool_changed()


class _Tenant:
    """One backend's share of a host: its settings, the sessions it created, its browser engine.

    Its session bookkeeping is touched only on the host's loop (the coroutines below), so it needs no lock;
    :meth:`stats` reads copies from other threads. It holds no reference to its backend, so the backend's
    finalizer can release it.
    """

    def __init__(self, settings: Settings, browser_settings: BrowserSettings | None, backend_name: str) -> None:
        self.settings = settings
        self.browser_settings = browser_settings
        self.backend_name = backend_name
        self.number = next(_TENANT_NUMBERS)
        self.closed = False
        self.live: set[str] = set()
        """Sessions this tenant created and has not closed (some may have expired in the engine since)."""
        self.known: OrderedDict[str, None] = OrderedDict()
        """Every session id this tenant created, oldest first, live or gone (bounded, as the engine's record)."""
        self.creating = 0
        self.totals = {"sessions_created": 0, "executions": 0}
        self.browser: BrowserEngine | None = None
        self._browser_lock = threading.Lock()
        self.host = _acquire(self)

    @property
    def engine(self) -> Engine:
        """The host's engine."""
        return self.host.engine

    # -- sessions (on the loop) --------------------------------------------------------------------

    def check(self, session_id: str) -> None:
        """Refuse a session id this tenant did not create, as an unknown one.

        Raises:
            SessionNotFoundError: Never created by this backend (the engine says why one of its own is gone).
        """
        if session_id not in self.known:
            raise SessionNotFoundError(NOT_YOURS.format(session_id=session_id))

    def live_sessions(self) -> set[str]:
        """The sessions of this tenant still live in the engine (those that expired there are dropped)."""
        self.live = {sid for sid in self.live if self.engine.has_session(sid)}
        return self.live

    async def create_session(self, spec: SessionSpec) -> SessionInfo:
        """Create a session under this tenant's ``max_sessions`` and settings."""
        live = self.live_sessions()
        limit = self.settings.max_sessions
        # Sessions being created count too: those started at the same time cannot pass the limit together.
        if len(live) + self.creating >= limit:
            raise CapacityError(FULL.format(count=len(live), limit=limit))
        self.creating += 1
        try:
            info = await self.engine.create_session(spec, settings=self.settings)
        finally:
            self.creating -= 1
        if self.closed:  # the backend was closed while this session was being created
            await self.engine.close_session(info.session_id)
            raise ConfigurationError("This backend is closed; create a new AsyncCodeRunner.")
        self.live.add(info.session_id)
        self._remember(info.session_id)
        self.totals["sessions_created"] += 1
        return info

    def _remember(self, session_id: str) -> None:
        self.known[session_id] = None
        if len(self.known) <= KEEP + self.settings.max_sessions:
            return
        for old in list(self.known):  # oldest first; the live ones stay
            if len(self.known) <= KEEP:
                break
            if old not in self.live:
                del self.known[old]

    async def list_sessions(self) -> list[SessionInfo]:
        """Describe this tenant's live sessions."""
        mine = self.live_sessions()
        return [info for info in await self.engine.list_sessions() if info.session_id in mine]

    async def close_session(self, session_id: str) -> None:
        """Close one of this tenant's sessions (a no-op when it is closed already)."""
        self.check(session_id)
        await self.engine.close_session(session_id)
        self.live.discard(session_id)

    async def execute(
        self,
        session_id: str,
        request: ExecRequest,
        on_stdout: Callable[[str], None] | None,
        on_stderr: Callable[[str], None] | None,
    ) -> ExecutionResult:
        """Run ``request`` with this tenant's limits."""
        self.check(session_id)
        self.engine.session(session_id)  # gone: raises before it counts as an execution
        self.totals["executions"] += 1
        return await self.engine.execute(
            session_id, request, on_stdout=on_stdout, on_stderr=on_stderr, settings=self.settings
        )

    async def close_own(self) -> None:
        """Close every session and the browser engine of this tenant; the host's other tenants go on."""
        sessions = list(self.live_sessions())
        results = await asyncio.gather(*(self.engine.close_session(s) for s in sessions), return_exceptions=True)
        for error in (r for r in results if isinstance(r, BaseException)):
            # Not a warning: at interpreter exit the engine's file threads are gone already, and what is
            # left of the session dies with the engine (the last runner out, or the exit hook) anyway.
            log.debug("closing a session of a closed runner failed: %s", error)
        self.live.clear()
        if self.browser is not None:
            await self.browser.close()
            with contextlib.suppress(OSError):  # empty by now (kill_now removed the profile)
                os.rmdir(self.engine.dir / "browser" / str(self.number))

    # -- the rest ----------------------------------------------------------------------------------

    def get_browser(self) -> BrowserEngine:
        """The browser engine, created on first use (Chromium itself starts with the first session)."""
        from coderunner.engine.browser.engine import BrowserEngine

        with self._browser_lock:
            if self.browser is None:
                self.browser = BrowserEngine(
                    self.browser_settings,
                    # Under the engine directory: the orphan reaper removes it, and the registered pid
                    # lets Engine.kill_now() and reap_orphans() kill a browser left by a crashed runner.
                    runtime_dir=self.engine.dir / "browser" / str(self.number),
                    register_pid=self.engine.register_process,
                    backend_name=self.backend_name,
                )
            return self.browser

    def stats(self) -> dict[str, int]:
        """Session and execution counters of this tenant, and the shared pool's (safe from any thread)."""
        engine = self.engine
        mine = [sid for sid in list(self.live) if engine.has_session(sid)]
        busy = 0
        for sid in mine:
            with contextlib.suppress(SessionNotFoundError):  # it may be gone since
                busy += engine.session(sid).busy
        stats = engine.stats()
        stats.update(active_sessions=len(mine), running_executions=busy, **self.totals)
        if self.browser is not None:
            stats.update(self.browser.stats())
        return stats

    def release(self) -> None:
        """Close this tenant's sessions and browser and leave the host (the backend's finalizer; runs once)."""
        self.closed = True
        host = self.host
        if host.thread.in_loop_thread:
            # Garbage collection dropped the backend on the engine's own thread, which must not wait for
            # itself: release from a thread of its own.
            try:
                threading.Thread(target=self._release, name="coderunner-release", daemon=True).start()
                return
            except RuntimeError:  # no new thread (interpreter shutdown, process limit): close without waiting
                host.thread.loop.create_task(self.close_own())
                _leave(host, self)  # the last tenant out cannot wait here either: its host kills instead
                return
        self._release()

    def _release(self) -> None:
        try:
            self.host.thread.run(self.close_own(), timeout=_CLOSE_TIMEOUT)
        except Exception as exc:  # the loop may be gone at interpreter exit; the last tenant out kills all
            log.debug("could not close a runner's sessions cleanly: %s", exc)
            if self.browser is not None:
                self.browser.kill_now()
        finally:
            _leave(self.host, self)


class AsyncInProcessBackend(AsyncBrowserActionMethods):
    """Asynchronous InProcess backend. See :class:`coderunner.backend.AsyncBackend`.

    Backends of one process share an engine (see the module docstring); each sees only its own sessions.
    """

    name = "inprocess"

    def __init__(self, settings: Settings | None = None, *, browser_settings: BrowserSettings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.browser_settings = browser_settings
        self._tenant = _Tenant(self.settings, browser_settings, self.name)
        self._host = self._tenant.host
        self._finalizer = weakref.finalize(self, self._tenant.release)

    @property
    def browser_engine(self) -> BrowserEngine:
        """The browser engine of this backend (its methods must run on the engine's loop)."""
        return self._tenant.get_browser()

    @property
    def engine(self) -> Engine:
        """The engine, shared with the process's other InProcess backends (its methods must run on its loop)."""
        return self._host.engine

    def stats(self) -> dict[str, int]:
        """Session and execution counters of this backend, the shared pool's, and the browser's once used.

        ``active_sessions``, ``running_executions``, ``sessions_created`` and ``executions`` count this
        backend's own; ``pooled_kernels``, ``pool_target`` and ``pool_starting`` describe the shared pool.
        """
        return self._tenant.stats()

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._tenant.closed:
            coro.close()
            raise ConfigurationError("This backend is closed; create a new AsyncCodeRunner.")
        return await self._host.thread.arun(coro)

    async def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session; its default language's interpreter is ready when this returns."""
        spec = spec or SessionSpec()
        spec.check_options(self.name)  # container options (cpus, memory) have no meaning here
        return await self._run(self._tenant.create_session(spec))

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return await self._run(self._mine(session_id, self.engine.get_session(session_id)))

    async def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session of this backend."""
        return await self._run(self._tenant.list_sessions())

    async def close_session(self, session_id: str) -> None:
        """Stop a session."""
        await self._run(self._tenant.close_session(session_id))

    async def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Run ``request`` in a session (callbacks are called from the engine thread)."""
        return await self._run(self._tenant.execute(session_id, request, on_stdout, on_stderr))

    async def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution."""
        return await self._run(self._mine(session_id, self.engine.interrupt(session_id)))

    async def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes into the session directory (absolute paths: see ``Settings.absolute_paths``)."""
        absolute = self.settings.absolute_paths
        call = self.engine.upload(session_id, path, data, absolute_paths=absolute)
        return await self._run(self._mine(session_id, call))

    async def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory (absolute paths: see ``Settings.absolute_paths``)."""
        absolute = self.settings.absolute_paths
        call = self.engine.download(session_id, path, absolute_paths=absolute)
        return await self._run(self._mine(session_id, call))

    async def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session (absolute paths: see ``Settings.absolute_paths``)."""
        absolute = self.settings.absolute_paths
        call = self.engine.list_files(session_id, path, absolute_paths=absolute)
        return await self._run(self._mine(session_id, call))

    async def _mine(self, session_id: str, call: Coroutine[Any, Any, T]) -> T:
        # On the loop, where the tenant's bookkeeping lives: another runner's session is not found here.
        try:
            self._tenant.check(session_id)
        except BaseException:
            call.close()
            raise
        return await call

    async def aclose(self) -> None:
        """Stop every session this backend created, and its browser; the last backend out stops the engine."""
        # Closing blocks on the engine thread; keep the caller's loop free meanwhile.
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
        # The async aclose may stop the loop thread the bridge runs coroutines on (the last backend out
        # stops the engine), so it cannot run there: release from this thread instead (what aclose does
        # from a worker thread).
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
