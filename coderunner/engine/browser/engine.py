"""The browser engine: one shared Chromium driven by Playwright (async), one isolated context per session.

Sessions share nothing: each is its own browser *context* (cookies, storage, cache, pages) with its
own egress proxy (:mod:`coderunner.browser.proxy`). Chromium is started on the first session and
restarted on the next one if it died; sessions of a dead browser are reported as lost
(:class:`~coderunner.browser.errors.BrowserSessionLostError`), never silently replaced. A small pool
of ready contexts makes a new session cost a few milliseconds instead of the ~150 ms of a new page.

This module is the lifecycle (Chromium, the context pool, the session table, expiry) and the one
entry point for actions, :meth:`BrowserEngine.act`, which hands each action to its handler in
:mod:`coderunner.engine.browser.actions`. All methods run on one event loop (the InProcess backend's
engine thread). Playwright errors are translated at this edge
(:mod:`coderunner.engine.browser.errors`): callers only see :mod:`coderunner.browser.errors` and the
core tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import psutil

from coderunner.browser.actions import DEFAULT_TIMEOUT_MS, BrowserAction
from coderunner.browser.config import BrowserSettings
from coderunner.browser.errors import BrowserSessionLostError, BrowserTimeoutError
from coderunner.browser.models import BrowserSessionInfo, Viewport
from coderunner.browser.proxy import EgressProxy
from coderunner.engine.browser.actions import HANDLERS
from coderunner.engine.browser.errors import action_error, first_line, playwright_api, timeout_error
from coderunner.engine.browser.session import Session, Slot
from coderunner.engine.engine import kill_group, pid_signature
from coderunner.engine.processes import forget_at_exit, kill_at_exit
from coderunner.engine.table import SessionTable
from coderunner.errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidRequestError,
    SessionNotFoundError,
    UnsupportedOperationError,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright, ViewportSize
    from playwright.async_api import Error as PlaywrightError

__all__ = ["CHROMIUM_ARGS", "BrowserEngine", "find_chromium"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    # A failed page would otherwise reload itself in the background (after 1 s, 5 s, 30 s, ...): navigations
    # nobody asked for, which can race the next navigate() and reach a destination again on their own.
    "--disable-auto-reload",
    # WebRTC may otherwise send UDP around the egress proxy.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)
"""Flags every Chromium is launched with (besides Playwright's own)."""

_DEFAULT_VIEWPORT = (1920, 1080)
_CLOSE_TIMEOUT = 10.0
_GRACE = 15.0
_SLOT_TIMEOUT = 30.0
_REFILL_DELAY = 1.0
_LOST = (
    "the browser process exited unexpectedly (it crashed or was killed), taking the session's pages, "
    "cookies and storage with it"
)
_GONE = "Browser session {session_id} is gone: {reason}. Create a new one with create_session()."
_UNKNOWN = "Browser session {session_id!r} does not exist. Create one with create_session()."
_FULL = "{count} browser sessions are open (max_sessions={limit}). Close one, or raise CODERUNNER_BROWSER_MAX_SESSIONS."
_PROFILE_DIR = "profile"
_TMP_DIR = "tmp"
_SINGLETON_SOCKET = "/org.chromium.Chromium.XXXXXX/SingletonSocket"  # Chromium's unix socket, below TMPDIR
_UNIX_PATH_MAX = 108  # bytes in a unix socket address, the final NUL included


def find_chromium(configured: str | None = None, playwright_path: str | None = None) -> str:
    """Locate a Chromium executable.

    Order: ``configured`` (``CODERUNNER_CHROMIUM``), Playwright's own browser (if ``playwright
    install chromium`` was run), then ``chromium`` / ``chromium-browser`` on ``PATH``.

    Raises:
        ConfigurationError: ``configured`` is not an executable file.
        BackendUnavailableError: No Chromium was found; the message says how to install one.
    """
    if configured:
        path = shutil.which(configured) or configured
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ConfigurationError(f"CODERUNNER_CHROMIUM={configured!r} is not an executable file.")
        return path
    if playwright_path and os.path.isfile(playwright_path) and os.access(playwright_path, os.X_OK):
        return playwright_path
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise BackendUnavailableError(
        "No Chromium browser was found. Install one with `apt-get install chromium` (Debian/Ubuntu) or "
        "`playwright install chromium`, or point CODERUNNER_CHROMIUM at a Chromium/Chrome executable."
    )


def _find_browser_pid(marker: str) -> int | None:
    """The main Chromium process launched with ``marker`` among our descendants (the Playwright driver's child)."""
    tagged: dict[int, psutil.Process] = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if marker in proc.cmdline():
                tagged[proc.pid] = proc
    for pid, proc in tagged.items():
        with contextlib.suppress(psutil.Error):
            if proc.ppid() not in tagged:
                return pid
    return None


class BrowserEngine:
    """Owns one Chromium process and every browser session of one backend. All methods run on one loop.

    Args:
        settings: Limits and egress rules (default: from ``CODERUNNER_BROWSER_*`` variables).
        runtime_dir: A directory for the browser's files, under the code engine's runtime directory so
            its orphan reaper removes it (default: a private temporary directory).
        register_pid: Called with Chromium's pid after each launch, so the code engine can kill the
            browser's process group at exit and after a crash of this process.
        backend_name: Reported in :class:`BrowserSessionInfo`.
    """

    def __init__(
        self,
        settings: BrowserSettings | None = None,
        *,
        runtime_dir: str | os.PathLike[str] | None = None,
        register_pid: Callable[[int], None] | None = None,
        backend_name: str = "inprocess",
    ) -> None:
        self.settings = settings or BrowserSettings.from_env()
        self.policy = self.settings.policy()
        self.backend_name = backend_name
        self._runtime_dir = Path(runtime_dir) if runtime_dir is not None else None
        self._own_dir: Path | None = None
        self._far_tmp: Path | None = None  # Chromium's TMPDIR when the runtime directory is too long for it
        self._register_pid = register_pid
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._browser_pid: int | None = None
        self._browser_ct: float | None = None
        self._generation = 0
        self._launch_lock = asyncio.Lock()
        self._sessions: SessionTable[Session] = SessionTable(
            self.settings.max_sessions, gone=_GONE, unknown=_UNKNOWN, full=_FULL
        )
        self._spares: deque[Slot] = deque()
        self._pool_tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.totals = {"sessions_created": 0, "browser_launches": 0, "browser_crashes": 0, "actions": 0}

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def browser_pid(self) -> int | None:
        """Process id of the running Chromium, if one runs."""
        return self._browser_pid if self._browser is not None else None

    @property
    def running(self) -> bool:
        """True while a Chromium process is connected."""
        return self._browser is not None and self._browser.is_connected()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidRequestError("This browser engine is closed; create a new runner.")

    def _dir(self) -> Path:
        if self._runtime_dir is not None:
            self._runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return self._runtime_dir
        if self._own_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="coderunner-browser-"))
        return self._own_dir

    async def _ensure_browser(self) -> Browser:
        self._check_open()
        browser = self._browser
        if browser is not None and browser.is_connected():
            return browser
        async with self._launch_lock:
            self._check_open()
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._browser is not None:
                self._on_disconnected(self._generation)  # a crash noticed before its event arrived
            return await self._launch()

    def _fresh_dirs(self) -> tuple[Path, Path]:
        """An empty profile directory and TMPDIR for the next Chromium, the previous one's leftovers removed.

        Both live under our directory, not in /tmp: Chromium's singleton socket directory
        (org.chromium.Chromium.*), its shared-memory files and the profile go with it on close, and with
        the engine directory when the orphan sweep finds this process dead. A crashed browser's files are
        never taken over by the next one.
        """
        root = self._dir()
        profile, tmp = root / _PROFILE_DIR, root / _TMP_DIR
        for leftover in (profile, tmp, self._far_tmp):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
        self._far_tmp = None
        if len(os.fsencode(tmp)) + len(_SINGLETON_SOCKET) >= _UNIX_PATH_MAX:
            # Chromium does not start when its singleton socket's path is too long for a unix socket.
            tmp = Path(tempfile.mkdtemp(prefix="coderunner-chromium-"))
            self._far_tmp = tmp
            log.warning(
                "the browser runtime directory %s is too long for Chromium's unix socket; its temporary files go "
                "to %s (removed on close, but not by the orphan sweep after a crash)",
                root,
                tmp,
            )
        else:
            tmp.mkdir(mode=0o700)
        return profile, tmp

    async def _launch(self) -> Browser:
        api = playwright_api()
        root = self._dir()
        # A real Chromium switch whose value is unique to this engine: it finds the process (Playwright
        # does not expose its pid) and keeps crash dumps under our runtime directory.
        marker = f"--crash-dumps-dir={root / 'crash'}"
        failure = ""
        for _attempt in (1, 2):
            try:
                profile, tmp = self._fresh_dirs()
                env: dict[str, str | float | bool] = {**os.environ, "TMPDIR": str(tmp)}
                if self._pw is None:
                    self._pw = await api.async_playwright().start()
                executable = find_chromium(self.settings.chromium, self._pw.chromium.executable_path)
                # A persistent context is Playwright's only way to choose the profile directory (it refuses
                # --user-data-dir); sessions still get contexts of their own, never this default one.
                default = await self._pw.chromium.launch_persistent_context(
                    str(profile), executable_path=executable, args=[*CHROMIUM_ARGS, marker], env=env, timeout=60_000
                )
                break
            except (api.Error, OSError) as exc:
                failure = first_line(exc)
                # The Playwright driver itself may have died: retry once with a fresh one.
                if self._pw is not None:
                    with contextlib.suppress(api.Error, OSError):
                        await self._pw.stop()
                self._pw = None
        else:
            raise BackendUnavailableError(
                f"Chromium failed to start: {failure}. Install a working one with `apt-get install chromium` "
                "or `playwright install chromium`, or set CODERUNNER_CHROMIUM."
            )
        if default.browser is None:  # Chromium always has one; only Android and Electron do not
            await _quietly(default.close())
            raise BackendUnavailableError("Playwright started Chromium without a browser handle.")
        browser: Browser = default.browser
        for blank in default.pages:  # its startup tab would only hold a renderer's memory
            await _quietly(blank.close())
        self._generation += 1
        generation = self._generation
        self._browser = browser
        browser.on("disconnected", lambda _b: self._on_disconnected(generation))
        self._browser_pid = _find_browser_pid(marker)
        self._browser_ct = pid_signature(self._browser_pid) if self._browser_pid else None
        if self._browser_pid is not None and self._register_pid is not None:
            self._register_pid(self._browser_pid)
        self.totals["browser_launches"] += 1
        kill_at_exit(self)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._expire_loop())
        log.info("started Chromium %s (pid %s)", browser.version, self._browser_pid)
        return browser

    def _on_disconnected(self, generation: int) -> None:
        """The browser is gone: its sessions are lost (unless we are closing on purpose)."""
        if generation != self._generation or self._browser is None:
            return
        self._browser = None
        if self._browser_pid is not None:
            kill_group(self._browser_pid, self._browser_ct)  # leftover renderers of a killed browser
        if self._closed:
            return
        self.totals["browser_crashes"] += 1
        log.warning("Chromium (pid %s) exited unexpectedly; its sessions are lost", self._browser_pid)
        for session in self._sessions.values():
            if session.slot.generation == generation:
                self._lose(session.session_id, _LOST)
                self._spawn(session.slot.proxy.close())
        while self._spares:
            self._spawn(self._spares.popleft().proxy.close())
        # A context being prepared on the dead browser may never get an answer: drop it.
        for task in list(self._pool_tasks):
            task.cancel()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Close every session and the browser, and stop Playwright. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        pool_tasks = list(self._pool_tasks)
        for task in pool_tasks:
            task.cancel()
        await asyncio.gather(*pool_tasks, return_exceptions=True)
        slots = [s.slot for s in self._sessions.forget_all("the runner was closed")] + list(self._spares)
        self._spares.clear()
        await asyncio.gather(*(self._dispose(slot) for slot in slots), return_exceptions=True)
        if self._browser is not None:
            with contextlib.suppress(Exception):  # a dead or hung browser must not block shutdown
                await asyncio.wait_for(self._browser.close(), _CLOSE_TIMEOUT)
        if self._pw is not None:
            with contextlib.suppress(Exception):  # same: the driver may already be gone
                await asyncio.wait_for(self._pw.stop(), _CLOSE_TIMEOUT)
            self._pw = None
        await asyncio.gather(*list(self._background), return_exceptions=True)
        self.kill_now()

    def kill_now(self) -> None:
        """Synchronously kill the browser's process group and remove private files (for atexit)."""
        if self._browser_pid is not None:
            kill_group(self._browser_pid, self._browser_ct)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
        elif self._runtime_dir is not None:
            for name in (_PROFILE_DIR, _TMP_DIR):
                shutil.rmtree(self._runtime_dir / name, ignore_errors=True)
        if self._far_tmp is not None:
            shutil.rmtree(self._far_tmp, ignore_errors=True)
        forget_at_exit(self)

    # -- contexts and the pool ---------------------------------------------------------------------

    async def _new_slot(self, browser: Browser, viewport: tuple[int, int], user_agent: str | None) -> Slot:
        try:
            return await asyncio.wait_for(self._open_slot(browser, viewport, user_agent), _SLOT_TIMEOUT)
        except asyncio.TimeoutError:
            raise BackendUnavailableError(
                f"Chromium did not open a browser context within {_SLOT_TIMEOUT:g} s."
            ) from None

    async def _open_slot(self, browser: Browser, viewport: tuple[int, int], user_agent: str | None) -> Slot:
        proxy = EgressProxy(self.policy)
        await proxy.start()
        try:
            context = await browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]},
                user_agent=user_agent,
                proxy={"server": proxy.url},
                # Service workers fetch outside the page; downloads would write to the host disk.
                service_workers="block",
                accept_downloads=False,
            )
            page = await context.new_page()
        except BaseException:
            await proxy.close()
            raise
        return Slot(context, page, proxy, self._generation)

    async def _dispose(self, slot: Slot) -> None:
        with contextlib.suppress(Exception):  # the browser may be dead; nothing left to release then
            await asyncio.wait_for(slot.context.close(), _CLOSE_TIMEOUT)
        await slot.proxy.close()

    def _fill_pool(self) -> None:
        if self._closed or not self.running:
            return
        missing = self.settings.pool_size - len(self._spares) - len(self._pool_tasks)
        for _ in range(max(missing, 0)):
            task = asyncio.ensure_future(self._warm())
            self._pool_tasks.add(task)
            task.add_done_callback(self._pool_tasks.discard)

    async def _warm(self) -> None:
        api = playwright_api()
        browser = self._browser
        if browser is None:
            return
        try:
            slot = await self._new_slot(browser, _DEFAULT_VIEWPORT, None)
        # The pool is an optimisation: a failed warm-up must not surface (the next session starts cold).
        except (api.Error, OSError, BackendUnavailableError) as exc:
            log.debug("could not prepare a spare browser context: %s", exc)
            return
        if self._closed or slot.generation != self._generation:
            await self._dispose(slot)
            return
        self._spares.append(slot)

    async def _take_spare(self) -> Slot | None:
        if not self._spares and self._pool_tasks:
            # A spare is being prepared: joining it is faster than starting another from scratch.
            await asyncio.wait(list(self._pool_tasks), timeout=_SLOT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        while self._spares:
            slot = self._spares.popleft()
            if slot.generation == self._generation and not slot.page.is_closed():
                return slot
            self._spawn(self._dispose(slot))
        return None

    # -- sessions ----------------------------------------------------------------------------------

    async def create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Create a session (a fresh browser context with one blank page).

        Args:
            viewport_width: Page width in CSS pixels (1..10000).
            viewport_height: Page height in CSS pixels (1..10000).
            user_agent: A User-Agent string to send instead of Chromium's.
            idle_timeout: Seconds without an action before it is closed (default: the settings').

        Raises:
            CapacityError: ``max_sessions`` sessions are open.
            MissingDependencyError: The ``playwright`` package is not installed.
            BackendUnavailableError: No Chromium was found or it would not start.
        """
        viewport = (_dimension(viewport_width, "viewport_width"), _dimension(viewport_height, "viewport_height"))
        if user_agent is not None and (not isinstance(user_agent, str) or not user_agent.strip()):
            raise InvalidRequestError("user_agent must be a non-empty string or None.")
        if user_agent is not None and any(c in user_agent for c in "\r\n\x00"):
            # It becomes a request header: a line break there would end it.
            raise InvalidRequestError("user_agent must not contain line breaks or NUL characters.")
        if idle_timeout is not None and idle_timeout <= 0:
            raise InvalidRequestError("idle_timeout must be a positive number of seconds.")
        self._check_open()
        # The place is held while the context is prepared, so sessions created meanwhile count.
        with self._sessions.reserve() as place:
            slot = await self._slot_for(viewport, user_agent)
            if self._closed:  # closed while the context was being prepared
                await self._dispose(slot)
                self._check_open()
            session = Session(
                session_id=str(uuid.uuid4()),
                slot=slot,
                viewport=Viewport(width=viewport[0], height=viewport[1]),
                user_agent=user_agent,
                idle_timeout=idle_timeout if idle_timeout is not None else self.settings.idle_timeout,
                created_at=datetime.now(timezone.utc),
                pages=[slot.page],
            )
            self._watch(session)
            place.add(session.session_id, session)
        self.totals["sessions_created"] += 1
        self._wake.set()
        # Refill the pool a little later: preparing a context costs ~100 ms of browser CPU, which would
        # otherwise slow down the new session's first navigation.
        asyncio.get_running_loop().call_later(_REFILL_DELAY, self._fill_pool)
        return self._info(session)

    async def _slot_for(self, viewport: tuple[int, int], user_agent: str | None) -> Slot:
        api = playwright_api()
        for attempt in (1, 2):
            browser = await self._ensure_browser()
            try:
                slot = await self._take_spare() if user_agent is None else None
                if slot is None:
                    return await self._new_slot(browser, viewport, user_agent)
                if viewport != _DEFAULT_VIEWPORT:
                    await slot.page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
                return slot
            except api.Error as exc:
                if attempt == 1 and not self.running:
                    continue  # the browser died under us: relaunch once
                raise BackendUnavailableError(f"Could not open a browser context: {first_line(exc)}") from None
        raise AssertionError("unreachable")

    def _watch(self, session: Session) -> None:
        """Follow popups (the newest page is the one actions use) and notice page crashes."""

        def on_page(page: Page) -> None:
            if page in session.pages:
                return
            session.pages.append(page)
            session.page_opened.set()
            page.on("close", on_close)
            page.on("crash", on_crash)
            if (session.viewport.width, session.viewport.height) != _DEFAULT_VIEWPORT:
                size: ViewportSize = {"width": session.viewport.width, "height": session.viewport.height}
                self._spawn(_quietly(page.set_viewport_size(size)))

        def on_close(page: Page) -> None:
            with contextlib.suppress(ValueError):
                session.pages.remove(page)

        def on_crash(page: Page) -> None:
            session.crashed = "its page crashed (the renderer ran out of memory or hit a bug)"

        session.slot.context.on("page", on_page)
        session.slot.page.on("close", on_close)
        session.slot.page.on("crash", on_crash)

    def _info(self, session: Session) -> BrowserSessionInfo:
        return BrowserSessionInfo(
            session_id=session.session_id,
            viewport=session.viewport,
            user_agent=session.user_agent,
            current_url=session.pages[-1].url if session.pages else "about:blank",
            created_at=session.created_at,
            last_activity_at=session.last_activity_at,
            idle_timeout=session.idle_timeout,
            backend=self.backend_name,
        )

    def _lose(self, session_id: str, reason: str) -> Session | None:
        """Forget a session whose pages died with the browser or their renderer: it raises BrowserSessionLostError."""
        return self._sessions.forget(session_id, reason, error=BrowserSessionLostError)

    async def get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a live session (raises SessionNotFoundError / BrowserSessionLostError when gone)."""
        return self._info(self._sessions.get(session_id))

    async def list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live session."""
        return [self._info(s) for s in self._sessions.values()]

    async def close_session(self, session_id: str) -> None:
        """Close a session and its pages; closing one that is already closed is a no-op."""
        if self._sessions.is_gone(session_id):
            return
        self._sessions.get(session_id)
        session = self._sessions.forget(session_id, "it was closed")
        if session is not None:
            await self._dispose(session.slot)

    async def _expire_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._expiry_period())
            self._wake.clear()
            for gone in self._sessions.expire(time.monotonic()):
                log.info("browser session %s expired: %s", gone.session_id, gone.reason)
                await self._dispose(gone.session.slot)

    def _expiry_period(self) -> float:
        return self._sessions.next_check(floor=0.05)

    def stats(self) -> dict[str, int]:
        """Counters for health reports."""
        return {
            "browser_sessions": len(self._sessions),
            "browser_pooled_contexts": len(self._spares),
            "browser_running": int(self.running),
            **self.totals,
        }

    # -- running actions ---------------------------------------------------------------------------

    async def act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one action in a session: navigate, click, ..., extract_content (see :mod:`coderunner.browser.actions`).

        Raises:
            SessionNotFoundError: The session is unknown, closed or expired (BrowserSessionLostError: crashed).
            UnsupportedOperationError: This engine has no handler for the action's type.
            BrowserError: The action failed; the subclass says why (not found, timeout, refused, ...).
        """
        handler = HANDLERS.get(type(action))
        if handler is None:
            raise UnsupportedOperationError(f"The browser engine cannot run a {type(action).__name__} action.")
        return cast(R, await handler(self, session_id, action))

    async def on_page(
        self,
        session_id: str,
        action: str,
        fn: Callable[[Session, Page], Awaitable[T]],
        *,
        selector: str | None = None,
        timeout: float | None = None,
        extra_seconds: float = 0.0,
    ) -> T:
        """Run ``fn`` on the session's current page, one action at a time (see :class:`~.session.PageRunner`)."""
        api = playwright_api()
        # Playwright enforces ``timeout`` itself; this outer limit only catches a call that never returns
        # (seen when Chromium dies in the middle of it).
        limit = (timeout if timeout is not None else DEFAULT_TIMEOUT_MS) / 1000 + extra_seconds + _GRACE
        session = self._sessions.get(session_id)
        async with session.lock:
            session = self._sessions.get(session_id)  # it may have been closed while we waited
            if session.crashed:
                self._lose(session_id, session.crashed)
                await self._dispose(session.slot)
                self._sessions.get(session_id)
            session.busy += 1
            session.touch()
            self.totals["actions"] += 1
            page: Page | None = None
            try:
                page = await self._page(session)
                return await asyncio.wait_for(fn(session, page), limit)
            except asyncio.TimeoutError:
                if not self.running or session.slot.generation != self._generation:
                    await self._page(session)  # raises the 'lost' error
                raise BrowserTimeoutError(f"{action} got no answer from the browser within {limit:g} s.") from None
            except api.TimeoutError as exc:
                raise await timeout_error(action, page, selector, timeout, exc) from None
            except api.Error as exc:
                raise self._translate(session, action, selector, exc) from None
            finally:
                session.busy -= 1
                session.touch()

    async def _page(self, session: Session) -> Page:
        if not self.running or session.slot.generation != self._generation:
            self._on_disconnected(session.slot.generation)
            if session.session_id in self._sessions:
                self._lose(session.session_id, _LOST)
                self._spawn(session.slot.proxy.close())
            self._sessions.get(session.session_id)  # raises the 'lost' error
        if not session.pages:
            # The page closed itself (window.close()); keep the session usable.
            page = await session.slot.context.new_page()
            if page not in session.pages:
                session.pages.append(page)
        return session.pages[-1]

    def _translate(self, session: Session, action: str, selector: str | None, exc: PlaywrightError) -> Exception:
        """The error for a Playwright failure, after noting what it says about the session (lost, crashed)."""
        message = first_line(exc)
        if not self.running or session.slot.generation != self._generation:
            self._on_disconnected(session.slot.generation)
        if session.crashed and session.session_id in self._sessions:
            self._lose(session.session_id, session.crashed)
            self._spawn(self._dispose(session.slot))
        if session.session_id not in self._sessions:
            try:
                self._sessions.get(session.session_id)
            except SessionNotFoundError as gone:
                return gone
        if "has been closed" in message or "Target crashed" in message:
            self._lose(session.session_id, f"its browser context closed unexpectedly ({message})")
            self._spawn(self._dispose(session.slot))
            return BrowserSessionLostError(
                f"Browser session {session.session_id} was lost during {action}: {message}. Create a new session."
            )
        return action_error(action, selector, message)


async def _quietly(coro: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):  # best effort on a page that may already be gone
        await coro


def _dimension(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise InvalidRequestError(f"{name} must be an integer from 1 to 10000.")
    return value
