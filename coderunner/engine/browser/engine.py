"""The browser engine: one shared Chromium driven by Playwright (async), one isolated context per session.

Sessions share nothing: each is its own browser *context* (cookies, storage, cache, pages) with its
own egress proxy (:mod:`coderunner.browser.proxy`). Chromium is started on the first session and
restarted on the next one if it died; sessions of a dead browser are reported as lost
(:class:`~coderunner.browser.errors.BrowserSessionLostError`), never silently replaced. A small pool
of ready contexts makes a new session cost a few milliseconds instead of the ~150 ms of a new page.

All methods run on one event loop (the InProcess backend's engine thread). Playwright errors are
translated here, at the edge: callers only see :mod:`coderunner.browser.errors` and the core tree.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import logging
import math
import os
import re
import shutil
import tempfile
import time
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import psutil

from coderunner.browser.config import BrowserSettings
from coderunner.browser.errors import (
    BrowserError,
    BrowserSessionLostError,
    BrowserTimeoutError,
    DestinationBlockedError,
    ElementNotFoundError,
    ElementNotInteractableError,
    InvalidSelectorError,
    NavigationError,
)
from coderunner.browser.models import (
    BrowserActionResult,
    BrowserSessionInfo,
    ExtractedElement,
    PageContent,
    Viewport,
)
from coderunner.browser.proxy import EgressProxy, ProxyEvent
from coderunner.engine.browser import _scripts
from coderunner.engine.engine import kill_group, pid_signature
from coderunner.engine.table import SessionTable
from coderunner.errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidRequestError,
    MissingDependencyError,
    SessionNotFoundError,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Frame, Page, Playwright, Request, ViewportSize
    from playwright.async_api import Error as PlaywrightError

__all__ = [
    "CHROMIUM_ARGS",
    "DEFAULT_TIMEOUT_MS",
    "WAIT_CONDITIONS",
    "BrowserEngine",
    "find_chromium",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

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

DEFAULT_TIMEOUT_MS = 30_000
"""Default action and navigation timeout, in milliseconds (as in the InstaVM API)."""
MAX_TIMEOUT_MS = 600_000
"""Longest timeout an action accepts: ten minutes."""
WAIT_CONDITIONS = ("visible", "hidden", "attached", "detached", "load", "domcontentloaded", "networkidle")
"""Conditions wait_for accepts; the first two and last three are InstaVM's, the others Playwright's."""
DEFAULT_EXTRACT_SELECTOR = "h1, h2, h3, h4, h5, h6, p, a, button, input, select, textarea, li, img"
"""What extract_elements reads when no selector is given."""

_DEFAULT_VIEWPORT = (1920, 1080)
_MAX_ELEMENTS = 500
_MAX_ELEMENT_TEXT = 2_000
_MAX_CONTENT_CHARS = 100_000
_MAX_INTERACTIVE = 300
_MAX_SHOT_HEIGHT = 16_384  # Chromium cannot capture taller than its maximum texture size
_CLOSE_TIMEOUT = 10.0
_POPUP_WAIT = 5.0
_ERROR_PAGE_WAIT = 5.0  # Chromium commits a failed navigation's error page within ~0.2 s
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
_SCHEMES = ("http", "https", "about", "data")
_PROFILE_DIR = "profile"
_TMP_DIR = "tmp"
_SINGLETON_SOCKET = "/org.chromium.Chromium.XXXXXX/SingletonSocket"  # Chromium's unix socket, below TMPDIR
_UNIX_PATH_MAX = 108  # bytes in a unix socket address, the final NUL included


def _playwright_api() -> Any:
    try:
        from playwright import async_api
    except ImportError:
        raise MissingDependencyError("playwright", "browser", "Browser automation") from None
    return async_api


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


_LIVE: weakref.WeakSet[BrowserEngine] = weakref.WeakSet()


@atexit.register
def _kill_all_at_exit() -> None:
    # Runs without the event loop: kill the browser process groups directly, which cannot hang.
    for engine in list(_LIVE):
        engine.kill_now()


@dataclass(eq=False)
class _Slot:
    """A browser context with a blank page and its proxy: a session, or a pooled one waiting to be."""

    context: BrowserContext
    page: Page
    proxy: EgressProxy
    generation: int


@dataclass(eq=False)
class _Session:
    session_id: str
    slot: _Slot
    viewport: Viewport
    user_agent: str | None
    idle_timeout: float | None
    created_at: datetime
    pages: list[Page] = field(default_factory=list)
    last_activity_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    last_activity: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    page_opened: asyncio.Event = field(default_factory=asyncio.Event)
    busy: int = 0
    crashed: str | None = None
    expires_at: datetime | None = None  # no lifetime for browser sessions: only idle time ends them

    def touch(self) -> None:
        self.last_activity = time.monotonic()
        self.last_activity_at = datetime.now(timezone.utc)

    def expiry_reason(self, now: float) -> str | None:
        if self.busy or not self.idle_timeout:
            return None
        if now - self.last_activity > self.idle_timeout:
            return f"it was idle for more than {self.idle_timeout:g} s"
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
        self._sessions: SessionTable[_Session] = SessionTable(
            self.settings.max_sessions, gone=_GONE, unknown=_UNKNOWN, full=_FULL
        )
        self._spares: deque[_Slot] = deque()
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
        api = _playwright_api()
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
                failure = _first_line(exc)
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
        _LIVE.add(self)
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
        _LIVE.discard(self)

    # -- contexts and the pool ---------------------------------------------------------------------

    async def _new_slot(self, browser: Browser, viewport: tuple[int, int], user_agent: str | None) -> _Slot:
        try:
            return await asyncio.wait_for(self._open_slot(browser, viewport, user_agent), _SLOT_TIMEOUT)
        except asyncio.TimeoutError:
            raise BackendUnavailableError(
                f"Chromium did not open a browser context within {_SLOT_TIMEOUT:g} s."
            ) from None

    async def _open_slot(self, browser: Browser, viewport: tuple[int, int], user_agent: str | None) -> _Slot:
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
        return _Slot(context, page, proxy, self._generation)

    async def _dispose(self, slot: _Slot) -> None:
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
        api = _playwright_api()
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

    async def _take_spare(self) -> _Slot | None:
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
            session = _Session(
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

    async def _slot_for(self, viewport: tuple[int, int], user_agent: str | None) -> _Slot:
        api = _playwright_api()
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
                raise BackendUnavailableError(f"Could not open a browser context: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    def _watch(self, session: _Session) -> None:
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

    def _info(self, session: _Session) -> BrowserSessionInfo:
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

    def _lose(self, session_id: str, reason: str) -> _Session | None:
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

    async def _act(
        self,
        session_id: str,
        action: str,
        fn: Callable[[_Session, Page], Awaitable[T]],
        *,
        selector: str | None = None,
        timeout: float | None = None,
        extra_seconds: float = 0.0,
    ) -> T:
        api = _playwright_api()
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
                raise await self._timeout_error(action, page, selector, timeout, exc) from None
            except api.Error as exc:
                raise await self._translate(session, action, selector, exc) from None
            finally:
                session.busy -= 1
                session.touch()

    async def _page(self, session: _Session) -> Page:
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

    async def _translate(self, session: _Session, action: str, selector: str | None, exc: PlaywrightError) -> Exception:
        message = _first_line(exc)
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
        if selector is not None and _is_selector_error(message):
            return InvalidSelectorError(
                f"{selector!r} is not a valid selector: {_sentence(message)} Use CSS (e.g. '#id', "
                "'form button[type=submit]') or a Playwright selector ('text=Sign in')."
            )
        if "Clipped area is either empty or outside" in message:
            return InvalidRequestError(
                f"{action} failed: the clip rectangle is empty or outside the page ({message}). Give a clip with "
                "positive width and height inside the page, or no clip."
            )
        if selector is not None and ("Element is not" in message or "Not a checkbox" in message):
            return ElementNotInteractableError(f"Cannot {action} {selector!r}: {_sentence(message)}")
        return BrowserError(f"{action} failed: {message}")

    async def _timeout_error(
        self,
        action: str,
        page: Page | None,
        selector: str | None,
        timeout: float | None,
        exc: PlaywrightError,
    ) -> Exception:
        api = _playwright_api()
        waited = f"{timeout:g} ms" if timeout is not None else "the timeout"
        if selector is None or page is None:
            return BrowserTimeoutError(f"{action} did not finish within {waited}: {_first_line(exc)}.")
        try:
            count = await page.locator(selector).count()
        except api.Error:
            count = -1
        if count == 0 and action != "wait_for":
            return ElementNotFoundError(
                f"No element matches {selector!r} on {page.url} (waited {waited}). Check the selector, or call "
                "extract_content() to list the page's interactive elements with their selectors."
            )
        if count == 0:
            return BrowserTimeoutError(
                f"wait_for timed out after {waited}: no element matches {selector!r} on {page.url}."
            )
        return BrowserTimeoutError(f"{action} on {selector!r} timed out after {waited}: {_call_log_reason(exc)}.")

    # -- actions -----------------------------------------------------------------------------------

    async def navigate(
        self, session_id: str, url: str, wait_timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Open ``url`` and wait for its load event.

        Raises:
            DestinationBlockedError: The egress policy refuses the URL (or a redirect it led to).
            NavigationError: The page could not be loaded (connection refused, DNS, TLS, ...).
            BrowserTimeoutError: It did not finish loading within ``wait_timeout`` ms (it may be partly shown).
        """
        url = self._check_url(url)
        timeout = _timeout(wait_timeout, "wait_timeout")
        decision = await self.policy.check_url(url)
        if not decision.allowed:
            raise DestinationBlockedError(f"Navigation to {url} was refused: {decision.reason}.")
        api = _playwright_api()

        async def run(session: _Session, page: Page) -> BrowserActionResult:
            started = time.perf_counter()
            proxy = session.slot.proxy
            mark = proxy.mark()
            watch = _NavigationWatch(page)
            try:
                try:
                    response = await page.goto(url, timeout=timeout, wait_until="load")
                except api.TimeoutError:
                    raise BrowserTimeoutError(
                        f"{url} did not finish loading within {timeout:g} ms; the page may be partly loaded (now "
                        f"at {page.url}). Retry with a larger wait_timeout, or wait_for('visible', selector) instead."
                    ) from None
                except api.Error as exc:
                    message = _first_line(exc)
                    if "net::ERR_" in message and "net::ERR_ABORTED" not in message:
                        # Chromium commits its error page for the failed navigation only after goto() has
                        # failed. Returning before that commit would let it interrupt the next navigation
                        # ("interrupted by another navigation to chrome-error://"), that one the next, and so
                        # on: every call would report the outcome of the call before it.
                        await watch.settled(_ERROR_PAGE_WAIT)
                    if "ERR_INVALID_URL" in message or "invalid URL" in message:
                        # The caller's URL, not the destination, is at fault (a malformed data: URL, say).
                        raise InvalidRequestError(
                            f"{url!r} is not a URL Chromium can open ({message}); check its syntax."
                        ) from None
                    # Only what the proxy did to this navigation's own requests (its redirect hops) explains
                    # it; a refusal of another request (the page being left, a late subresource) does not.
                    own = watch.own_events(proxy.events_since(mark), navigation=True)
                    for event in reversed(own):
                        if event.kind == "blocked":
                            raise DestinationBlockedError(f"Navigation to {url} was refused: {event.reason}.") from None
                    if own:
                        raise NavigationError(f"Could not load {url}: {own[-1].reason}.") from None
                    if "net::ERR_" in message or "Cannot navigate" in message or "invalid URL" in message:
                        raise NavigationError(f"Could not load {url}: {message}.") from None
                    raise
                final = page.url
                events = watch.own_events(proxy.events_since(mark), navigation=False)
            finally:
                watch.stop()
            for event in reversed(events):
                if _same_url(event.target, final):
                    # A plain-HTTP document the proxy refused or could not fetch (its error page is shown).
                    if event.kind == "blocked":
                        raise DestinationBlockedError(f"Navigation to {url} was refused: {event.reason}.")
                    raise NavigationError(f"Could not load {url}: {event.reason}.")
            data: dict[str, Any] = {
                "url": final,
                "title": await page.title(),
                "status": response.status if response is not None else None,
            }
            blocked = list(dict.fromkeys(e.target for e in events if e.kind == "blocked"))
            if blocked:
                data["blocked_requests"] = blocked[:20]
            return _result("navigate", session, data, started)

        return await self._act(session_id, "navigate", run, timeout=timeout)

    def _check_url(self, url: str) -> str:
        if not isinstance(url, str) or not url.strip():
            raise InvalidRequestError("url must be a non-empty string.")
        url = url.strip()
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError as exc:  # an unclosed IPv6 bracket, say
            raise InvalidRequestError(f"{url!r} is not a valid URL ({exc}); check its syntax.") from None
        if not scheme or ("://" not in url and scheme not in ("about", "data")):
            raise InvalidRequestError(f"{url!r} has no scheme; use a full URL such as 'https://example.com/'.")
        if scheme in _SCHEMES:
            return url
        if scheme == "file" and not self.policy.public_bind:
            return url
        raise DestinationBlockedError(
            f"Navigation to {url} was refused: the {scheme!r} scheme is not allowed "
            f"(allowed: http, https, about, data{'' if self.policy.public_bind else ', file'})."
        )

    async def click(
        self, session_id: str, selector: str, force: bool = False, timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Click the first element matching ``selector``, waiting for it to be visible, enabled and still.

        Args:
            session_id: The browser session.
            selector: A CSS (or Playwright) selector.
            force: Skip the actionability checks (click even if covered or invisible).
            timeout: Milliseconds to wait for the element.

        Raises:
            ElementNotFoundError: Nothing matched within ``timeout`` ms.
            BrowserTimeoutError: It matched but never became clickable.
            InvalidSelectorError: The selector does not parse.
        """
        selector = _selector(selector)
        ms = _timeout(timeout, "timeout")

        async def run(session: _Session, page: Page) -> BrowserActionResult:
            started = time.perf_counter()
            target = page.locator(selector).first
            # A link with target=_blank opens its page only after click() returns: wait for it, so the
            # next action already runs on the new page (the one the user sees).
            opens_page = await target.evaluate(_scripts.OPENS_NEW_PAGE, timeout=ms)
            session.page_opened.clear()
            await target.click(force=bool(force), timeout=ms)
            if opens_page:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(session.page_opened.wait(), _POPUP_WAIT)
            current = session.pages[-1] if session.pages else page
            return _result("click", session, {"url": current.url, "selector": selector}, started)

        return await self._act(session_id, "click", run, selector=selector, timeout=ms)

    async def type(
        self,
        session_id: str,
        selector: str,
        text: str,
        delay: float = 100,
        timeout: float = DEFAULT_TIMEOUT_MS,
    ) -> BrowserActionResult:
        """Type ``text`` key by key into the element (``delay`` ms between keys), after what it holds."""
        selector = _selector(selector)
        ms = _timeout(timeout, "timeout")
        if not isinstance(text, str):
            raise InvalidRequestError("text must be a string.")
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 10_000:
            raise InvalidRequestError("delay must be between 0 and 10000 milliseconds.")

        async def run(session: _Session, page: Page) -> BrowserActionResult:
            started = time.perf_counter()
            await page.locator(selector).first.press_sequentially(text, delay=float(delay), timeout=ms)
            return _result("type", session, {"url": page.url, "selector": selector}, started)

        typing = len(text) * float(delay) / 1000
        return await self._act(session_id, "type", run, selector=selector, timeout=ms, extra_seconds=typing)

    async def fill(
        self, session_id: str, selector: str, value: str, timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Replace the value of an input, textarea, select-like or contenteditable element."""
        selector = _selector(selector)
        ms = _timeout(timeout, "timeout")
        if not isinstance(value, str):
            raise InvalidRequestError("value must be a string.")

        async def run(session: _Session, page: Page) -> BrowserActionResult:
            started = time.perf_counter()
            await page.locator(selector).first.fill(value, timeout=ms)
            return _result("fill", session, {"url": page.url, "selector": selector}, started)

        return await self._act(session_id, "fill", run, selector=selector, timeout=ms)

    async def scroll(
        self,
        session_id: str,
        selector: str | None = None,
        x: float | None = None,
        y: float | None = None,
        timeout: float = DEFAULT_TIMEOUT_MS,
    ) -> BrowserActionResult:
        """Scroll an element into view (``selector``), or the page to absolute ``x``/``y`` (the other axis stays)."""
        if selector is None and x is None and y is None:
            raise InvalidRequestError("scroll needs a selector, or x and/or y coordinates.")
        sel = _selector(selector) if selector is not None else None
        for name, value in (("x", x), ("y", y)):
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise InvalidRequestError(f"{name} must be a number of CSS pixels.")
        ms = _timeout(timeout, "timeout")

        async def run(session: _Session, page: Page) -> BrowserActionResult:
            started = time.perf_counter()
            if sel is not None:
                await page.locator(sel).first.scroll_into_view_if_needed(timeout=ms)
                pos = await page.evaluate(_scripts.SCROLL_POSITION)
            else:
                pos = await page.evaluate(_scripts.SCROLL_TO, [x, y])
            data = {"url": page.url, "x": pos[0], "y": pos[1]}
            if sel is not None:
                data["selector"] = sel
            return _result("scroll", session, data, started)

        return await self._act(session_id, "scroll", run, selector=sel, timeout=ms)

    async def wait_for(
        self,
        session_id: str,
        condition: str,
        selector: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_MS,
    ) -> BrowserActionResult:
        """Wait until an element is visible/hidden (needs ``selector``) or the page reached load/networkidle.

        Raises:
            BrowserTimeoutError: The condition did not hold within ``timeout`` ms.
        """
        if condition not in WAIT_CONDITIONS:
            raise InvalidRequestError(f"condition must be one of {', '.join(WAIT_CONDITIONS)}; got {condition!r}.")
        ms = _timeout(timeout, "timeout")
        element_state = condition in ("visible", "hidden", "attached", "detached")
        if element_state and selector is None:
            raise InvalidRequestError(f"wait_for({condition!r}) needs a selector.")
        sel = _selector(selector) if element_state and selector is not None else None

        async def run(session: _Session, page: Page) -> BrowserActionResult:
            started = time.perf_counter()
            if sel is not None:
                await page.locator(sel).first.wait_for(state=condition, timeout=ms)  # type: ignore[arg-type]
            else:
                await page.wait_for_load_state(condition, timeout=ms)  # type: ignore[arg-type]
            data: dict[str, Any] = {"url": page.url, "condition": condition}
            if sel is not None:
                data["selector"] = sel
            return _result("wait_for", session, data, started)

        return await self._act(session_id, "wait_for", run, selector=sel, timeout=ms)

    async def screenshot(
        self,
        session_id: str,
        full_page: bool = True,
        format: str = "png",
        clip: Mapping[str, float] | None = None,
        quality: int | None = None,
    ) -> str:
        """Capture the page (``full_page``: all of it, cut at 16,384 CSS pixels) or a ``clip`` region.

        Args:
            session_id: The browser session.
            full_page: Capture the whole page rather than the viewport.
            format: 'png' or 'jpeg'.
            clip: ``{"x", "y", "width", "height"}`` in CSS pixels.
            quality: JPEG quality 0-100 (jpeg only).

        Returns:
            The image, base64-encoded.
        """
        fmt = str(format).lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in ("png", "jpeg"):
            raise InvalidRequestError(f"format must be 'png' or 'jpeg'; got {format!r}.")
        if quality is not None:
            if fmt != "jpeg":
                raise InvalidRequestError("quality applies to jpeg screenshots only.")
            if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
                raise InvalidRequestError("quality must be an integer from 0 to 100.")
        region = _clip(clip) if clip is not None else None

        async def run(session: _Session, page: Page) -> str:
            area = region
            if full_page and area is None:
                width, height = await page.evaluate(
                    "() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
                )
                if height > _MAX_SHOT_HEIGHT:
                    area = {"x": 0, "y": 0, "width": float(min(width, 16_384)), "height": float(_MAX_SHOT_HEIGHT)}
            shot = await page.screenshot(
                type=fmt,  # type: ignore[arg-type]
                full_page=bool(full_page),
                clip=area,  # type: ignore[arg-type]
                quality=quality,
                timeout=DEFAULT_TIMEOUT_MS,
            )
            return base64.b64encode(shot).decode("ascii")

        return await self._act(session_id, "screenshot", run, timeout=DEFAULT_TIMEOUT_MS)

    async def extract_elements(
        self,
        session_id: str,
        selector: str | None = None,
        attributes: Sequence[str] | None = None,
        *,
        max_elements: int = _MAX_ELEMENTS,
    ) -> list[ExtractedElement]:
        """Read the elements matching ``selector`` (default: headings, text, links, fields, images).

        Args:
            session_id: The browser session.
            selector: A CSS (or Playwright) selector.
            attributes: Attribute names to read ('text' and 'value' included); default: all of them.
            max_elements: Cap on the number of elements returned (the first ones in document order).

        Returns:
            Each element's tag, visible text and attributes; an empty list when nothing matches.
        """
        sel = _selector(selector) if selector is not None else DEFAULT_EXTRACT_SELECTOR
        names: list[str] | None = None
        if attributes is not None:
            if isinstance(attributes, str) or not all(isinstance(a, str) and a for a in attributes):
                raise InvalidRequestError("attributes must be a list of attribute names.")
            names = list(attributes)
        if not isinstance(max_elements, int) or max_elements < 1:
            raise InvalidRequestError("max_elements must be a positive integer.")

        async def run(session: _Session, page: Page) -> list[ExtractedElement]:
            raw = await page.locator(sel).evaluate_all(
                f"(els, args) => ({_scripts.EXTRACT_ELEMENTS})(els.slice(0, {max_elements}), args)",
                [names, _MAX_ELEMENT_TEXT],
            )
            return [ExtractedElement.model_validate(item) for item in raw]

        return await self._act(session_id, "extract_elements", run, selector=sel)

    async def extract_content(
        self,
        session_id: str,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """An LLM-friendly view of the current page: readable text, interactive elements, text anchors."""
        if not isinstance(max_anchors, int) or isinstance(max_anchors, bool) or not 0 <= max_anchors <= 1000:
            raise InvalidRequestError("max_anchors must be an integer from 0 to 1000.")

        async def run(session: _Session, page: Page) -> PageContent:
            raw = await page.evaluate(
                _scripts.EXTRACT_CONTENT,
                [bool(include_interactive), bool(include_anchors), max_anchors, _MAX_CONTENT_CHARS, _MAX_INTERACTIVE],
            )
            return PageContent.model_validate(raw)

        return await self._act(session_id, "extract_content", run)


# -- navigations -------------------------------------------------------------------------------------


class _NavigationWatch:
    """What one ``page.goto()`` set in motion: the requests the page made and the main frame's commits.

    Proxy events are matched to these requests rather than to a time window, so an event of another
    navigation (or of the page being left) is never reported as this navigation's outcome.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[Request] = []
        self.committed = asyncio.Event()
        page.on("request", self._on_request)
        page.on("framenavigated", self._on_frame)

    def _on_request(self, request: Request) -> None:
        self.requests.append(request)

    def _on_frame(self, frame: Frame) -> None:
        if frame == self.page.main_frame:
            self.committed.set()

    def stop(self) -> None:
        """Stop listening (the page lives on for the session's next actions)."""
        self.page.remove_listener("request", self._on_request)
        self.page.remove_listener("framenavigated", self._on_frame)

    async def settled(self, seconds: float) -> None:
        """Wait (at most ``seconds``) until the main frame committed a document since the navigation began."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.committed.wait(), seconds)

    def own_events(self, events: Sequence[ProxyEvent], *, navigation: bool) -> list[ProxyEvent]:
        """The ``events`` about this navigation's requests: its main-frame hops only, or every request it made."""
        urls = [r.url for r in self.requests if not navigation or self._is_navigation(r)]
        return [e for e in events if any(_event_is_for(e, u) for u in urls)]

    def _is_navigation(self, request: Request) -> bool:
        api = _playwright_api()
        try:
            return request.is_navigation_request() and request.frame == self.page.main_frame
        except api.Error:  # a service worker's request has no frame
            return False


def _event_is_for(event: ProxyEvent, url: str) -> bool:
    """Whether a proxy event is about a request for ``url``: its plain-HTTP URL, or the CONNECT tunnel to its host."""
    parts = urlsplit(url)
    if parts.scheme == "http":
        return _same_url(event.target, url)
    if parts.scheme not in ("https", "ws", "wss") or not parts.hostname:
        return False
    try:
        port = parts.port or (80 if parts.scheme == "ws" else 443)
    except ValueError:
        return False
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return event.target.lower() == f"{host}:{port}"


# -- helpers -----------------------------------------------------------------------------------------


def _result(action: str, session: _Session, data: dict[str, Any], started: float) -> BrowserActionResult:
    return BrowserActionResult(
        action=action,
        session_id=session.session_id,
        data=data,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
    )


async def _quietly(coro: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):  # best effort on a page that may already be gone
        await coro


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    # Drop Playwright's "Locator.click: " / "Page.goto: " and JS "Error: " prefixes: the action is named already.
    head, sep, rest = line.partition(": ")
    if sep and "." in head and " " not in head:
        line = rest
    if line.startswith("Error: "):
        line = line[len("Error: ") :]
    return line.rstrip(".")


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _call_log_reason(exc: BaseException) -> str:
    """The most telling line of Playwright's call log ('element is not visible', '... intercepts pointer events')."""
    text = str(getattr(exc, "message", None) or exc)
    lines = [ln.strip().lstrip("-").strip() for ln in text.split("Call log:", 1)[-1].splitlines()]
    for line in reversed(lines):
        if "element is not" in line or "intercepts pointer events" in line or "not an <input>" in line.lower():
            return re.sub(r"^\d+ \u00d7 ", "", line).strip()  # drop a repeat count such as "2 x "
    return "the element exists but did not become actionable (visible, enabled, stable and not covered)"


def _is_selector_error(message: str) -> bool:
    lowered = message.lower()
    return (
        "while parsing" in lowered
        or "is not a valid selector" in lowered
        or "is not a valid xpath" in lowered
        or "unknown engine" in lowered
        or "syntaxerror" in lowered
    )


def _same_url(a: str, b: str) -> bool:
    return a.split("#", 1)[0].rstrip("/") == b.split("#", 1)[0].rstrip("/")


def _selector(selector: object) -> str:
    if not isinstance(selector, str) or not selector.strip():
        raise InvalidSelectorError("The selector must be a non-empty string, e.g. '#submit' or 'a.next'.")
    return selector


def _timeout(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a number of milliseconds.")
    if not 0 < value <= MAX_TIMEOUT_MS:
        raise InvalidRequestError(f"{name} must be between 1 and {MAX_TIMEOUT_MS} milliseconds; got {value:g}.")
    return float(value)


def _dimension(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise InvalidRequestError(f"{name} must be an integer from 1 to 10000.")
    return value


def _clip(clip: Mapping[str, float]) -> dict[str, float]:
    try:
        region = {k: float(clip[k]) for k in ("x", "y", "width", "height")}
    except (KeyError, TypeError, ValueError):
        raise InvalidRequestError(
            "clip must be {'x': ..., 'y': ..., 'width': ..., 'height': ...} in CSS pixels."
        ) from None
    if region["width"] <= 0 or region["height"] <= 0:
        raise InvalidRequestError("clip width and height must be positive.")
    return region
