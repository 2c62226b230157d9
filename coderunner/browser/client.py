"""The user-facing browser API: ``BrowserManager`` / ``BrowserSession`` and their async twins.

Shapes and argument order follow the InstaVM SDK's ``BrowserManager`` and ``BrowserSession``, so a
script written for ``InstaVM().browser`` runs unchanged on ``CodeRunner().browser``. Each method builds
one :mod:`~coderunner.browser.actions` action and runs it with ``act`` (the managers' ``act`` picks the
default session). The managers work over any backend with the browser capability
(:mod:`coderunner.browser.protocol`); a backend without it raises
:class:`~coderunner.errors.UnsupportedOperationError` on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

from coderunner.browser.actions import (
    DEFAULT_TIMEOUT_MS,
    BrowserAction,
    Click,
    ExtractContent,
    ExtractElements,
    Fill,
    Navigate,
    Screenshot,
    Scroll,
    TypeText,
    WaitFor,
)
from coderunner.browser.models import BrowserActionResult, BrowserSessionInfo, ExtractedElement, PageContent
from coderunner.browser.protocol import AsyncBrowserBackend, BrowserBackend
from coderunner.errors import SessionNotFoundError, UnsupportedOperationError

__all__ = [
    "AsyncBrowserManager",
    "AsyncBrowserSession",
    "BrowserManager",
    "BrowserSession",
    "async_browser_manager_for",
    "browser_manager_for",
]

_TIMEOUT = DEFAULT_TIMEOUT_MS
R = TypeVar("R")
# Module-level alias: inside the classes, ``type`` is the browser action of that name.
_ExcType = type[BaseException] | None


def _unsupported(backend: object) -> UnsupportedOperationError:
    name = getattr(backend, "name", type(backend).__name__)
    return UnsupportedOperationError(
        f"The {name!r} backend cannot drive a browser. The built-in inprocess, docker and instavm backends can "
        "(inprocess needs the extra: pip install 'coderunner-sandbox[browser]')."
    )


def _replaced_warning(old: str, reason: str) -> str:
    return (
        f"The previous default browser session ({old}) was gone ({reason}); this page was opened in a new "
        "session, so earlier cookies and pages are gone."
    )


class BrowserSession:
    """One browser session: an isolated context with its own cookies, storage and pages. Close it when done."""

    def __init__(self, backend: BrowserBackend, info: BrowserSessionInfo) -> None:
        self.backend = backend
        self.session_id = info.session_id
        self.info = info
        self._active = True

    def act(self, action: BrowserAction[R]) -> R:
        """Run one :mod:`~coderunner.browser.actions` action in this session (what every method below does)."""
        return self.backend.browser_act(self.session_id, action)

    def navigate(self, url: str, wait_timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Open ``url`` and wait up to ``wait_timeout`` ms for it to load; ``result["data"]`` has url and title."""
        return self.act(Navigate(url, wait_timeout))

    def click(self, selector: str, force: bool = False, timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Click the first element matching the CSS selector (``force`` skips the actionability checks)."""
        return self.act(Click(selector, force, timeout=timeout))

    def type(self, selector: str, text: str, delay: int = 100, timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Type ``text`` into the element key by key, ``delay`` ms apart."""
        return self.act(TypeText(selector, text, delay, timeout=timeout))

    def fill(self, selector: str, value: str, timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Set a form field's value (replacing what it held)."""
        return self.act(Fill(selector, value, timeout=timeout))

    def scroll(self, selector: str | None = None, x: int | None = None, y: int | None = None) -> BrowserActionResult:
        """Scroll ``selector`` into view, or the page to absolute ``x``/``y``."""
        return self.act(Scroll(selector, x, y))

    def wait_for(self, condition: str, selector: str | None = None, timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Wait for 'visible' / 'hidden' (with ``selector``), or 'load' / 'networkidle'."""
        return self.act(WaitFor(condition, selector, timeout))

    def screenshot(
        self,
        full_page: bool = True,
        clip: Mapping[str, float] | None = None,
        format: str = "png",
        quality: int | None = None,
    ) -> str:
        """Capture the page as base64 PNG or JPEG (``quality`` 0-100 for JPEG)."""
        return self.act(Screenshot(full_page, format, clip, quality))

    def extract_elements(
        self, selector: str | None = None, attributes: Sequence[str] | None = None
    ) -> list[ExtractedElement]:
        """Elements matching ``selector`` as ``{tag, text, attributes}``; ``attributes`` names what to read."""
        return self.act(ExtractElements(selector, attributes))

    def extract_content(
        self,
        url: str | None = None,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """Readable text, interactive elements (with selectors) and content anchors; navigates first if ``url``."""
        action = ExtractContent(include_interactive, include_anchors, max_anchors)
        if url is not None:
            self.navigate(url)
        return self.act(action)

    def get_info(self) -> BrowserSessionInfo:
        """Describe the session now (current URL, last activity)."""
        self.info = self.backend.browser_get_session(self.session_id)
        return self.info

    def is_active(self) -> bool:
        """True while the session exists on the backend."""
        try:
            self.backend.browser_get_session(self.session_id)
        except SessionNotFoundError:
            return False
        return True

    def close(self) -> bool:
        """Close the session (idempotent). Returns True."""
        if self._active:
            self._active = False
            self.backend.browser_close_session(self.session_id)
        return True

    def __enter__(self) -> BrowserSession:
        return self

    def __exit__(self, exc_type: _ExcType, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BrowserSession({self.session_id!r})"


class BrowserManager:
    """Browser sessions on a backend, plus InstaVM-style shortcuts on a lazily created default session.

    Args:
        backend: A backend with the browser capability (e.g. ``CodeRunner().backend`` for 'inprocess').

    Example:
        >>> with CodeRunner() as runner:                                     # doctest: +SKIP
        ...     page = runner.browser.create_session(viewport_width=1280, viewport_height=800)
        ...     page.navigate("http://127.0.0.1:8000/")["data"]["title"]
    """

    def __init__(self, backend: object) -> None:
        self._raw = backend
        self._default: BrowserSession | None = None
        self._owned: dict[str, BrowserSession] = {}
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """True when the backend has the browser capability."""
        return isinstance(self._raw, BrowserBackend)

    @property
    def backend(self) -> BrowserBackend:
        """The backend, checked for the browser capability."""
        if not isinstance(self._raw, BrowserBackend):
            raise _unsupported(self._raw)
        return self._raw

    @property
    def default_session_id(self) -> str | None:
        """The default session's id, once a shortcut created it."""
        return self._default.session_id if self._default is not None else None

    def create_session(
        self, viewport_width: int = 1920, viewport_height: int = 1080, user_agent: str | None = None
    ) -> BrowserSession:
        """Open a new isolated session (use it as a context manager to close it)."""
        backend = self.backend
        info = backend.browser_create_session(viewport_width, viewport_height, user_agent)
        session = BrowserSession(backend, info)
        self._owned[session.session_id] = session
        return session

    def session(self, session_id: str) -> BrowserSession:
        """A handle on an existing session (e.g. one listed by :meth:`list_sessions`)."""
        backend = self.backend
        return BrowserSession(backend, backend.browser_get_session(session_id))

    def get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a session."""
        return self.backend.browser_get_session(session_id)

    def list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session of the backend."""
        return self.backend.browser_list_sessions()

    def _session_id(self, session_id: str | None) -> str:
        if session_id:
            return session_id
        with self._lock:
            if self._default is None:
                self._default = self.create_session()
            return self._default.session_id

    def _drop_default(self, session_id: str) -> None:
        with self._lock:
            if self._default is not None and self._default.session_id == session_id:
                self._owned.pop(session_id, None)
                self._default = None

    def act(self, action: BrowserAction[R], session_id: str | None = None) -> R:
        """Run one action in ``session_id``, or in the default session (created on first use).

        When the default session is found gone, it is forgotten: the next call starts a fresh one.
        """
        sid = self._session_id(session_id)
        try:
            return self.backend.browser_act(sid, action)
        except SessionNotFoundError:
            if session_id is None:
                self._drop_default(sid)  # the next call starts a fresh default session
            raise

    def navigate(self, url: str, session_id: str | None = None, wait_timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Open ``url`` (in the default session unless ``session_id``).

        If the default session had expired or was lost, a new one is started and the result's
        ``warnings`` say so: navigating needs no earlier state.
        """
        action = Navigate(url, wait_timeout)
        sid = self._session_id(session_id)
        try:
            return self.backend.browser_act(sid, action)
        except SessionNotFoundError as exc:
            if session_id is not None:
                raise
            self._drop_default(sid)
            result = self.backend.browser_act(self._session_id(None), action)
            return result.model_copy(update={"warnings": [*result.warnings, _replaced_warning(sid, exc.message)]})

    def click(
        self, selector: str, session_id: str | None = None, force: bool = False, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Click an element."""
        return self.act(Click(selector, force, timeout=timeout), session_id)

    def type(
        self, selector: str, text: str, session_id: str | None = None, delay: int = 100, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Type text into an element."""
        return self.act(TypeText(selector, text, delay, timeout=timeout), session_id)

    def fill(
        self, selector: str, value: str, session_id: str | None = None, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Set a form field's value."""
        return self.act(Fill(selector, value, timeout=timeout), session_id)

    def scroll(
        self, selector: str | None = None, x: int | None = None, y: int | None = None, session_id: str | None = None
    ) -> BrowserActionResult:
        """Scroll an element into view, or the page to coordinates."""
        return self.act(Scroll(selector, x, y), session_id)

    def wait_for(
        self, condition: str, selector: str | None = None, session_id: str | None = None, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Wait for a condition."""
        return self.act(WaitFor(condition, selector, timeout), session_id)

    def screenshot(
        self,
        session_id: str | None = None,
        full_page: bool = True,
        clip: Mapping[str, float] | None = None,
        format: str = "png",
        quality: int | None = None,
    ) -> str:
        """Capture the page as base64."""
        return self.act(Screenshot(full_page, format, clip, quality), session_id)

    def extract_elements(
        self, selector: str | None = None, session_id: str | None = None, attributes: Sequence[str] | None = None
    ) -> list[ExtractedElement]:
        """Read elements matching a selector."""
        return self.act(ExtractElements(selector, attributes), session_id)

    def extract_content(
        self,
        session_id: str | None = None,
        url: str | None = None,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """Readable text, interactive elements and anchors of the page (navigating to ``url`` first if given)."""
        action = ExtractContent(include_interactive, include_anchors, max_anchors)
        if url is not None:
            # In the session the navigation ran in: a replaced default session is the one to read.
            return self.backend.browser_act(self.navigate(url, session_id).session_id, action)
        return self.act(action, session_id)

    def close(self) -> None:
        """Close the default session, if one was created."""
        with self._lock:
            default, self._default = self._default, None
        if default is not None:
            self._owned.pop(default.session_id, None)
            with contextlib.suppress(SessionNotFoundError):
                default.close()

    def close_all(self) -> None:
        """Close every session this manager created (the default one included)."""
        self.close()
        for sid in list(self._owned):
            session = self._owned.pop(sid)
            with contextlib.suppress(SessionNotFoundError):
                session.close()

    def __enter__(self) -> BrowserManager:
        return self

    def __exit__(self, exc_type: _ExcType, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close_all()


class AsyncBrowserSession:
    """The async twin of :class:`BrowserSession`."""

    def __init__(self, backend: AsyncBrowserBackend, info: BrowserSessionInfo) -> None:
        self.backend = backend
        self.session_id = info.session_id
        self.info = info
        self._active = True

    async def act(self, action: BrowserAction[R]) -> R:
        """Run one :mod:`~coderunner.browser.actions` action in this session."""
        return await self.backend.browser_act(self.session_id, action)

    async def navigate(self, url: str, wait_timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Open ``url`` and wait for it to load."""
        return await self.act(Navigate(url, wait_timeout))

    async def click(self, selector: str, force: bool = False, timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Click the first element matching the selector."""
        return await self.act(Click(selector, force, timeout=timeout))

    async def type(self, selector: str, text: str, delay: int = 100, timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Type text into the element key by key."""
        return await self.act(TypeText(selector, text, delay, timeout=timeout))

    async def fill(self, selector: str, value: str, timeout: int = _TIMEOUT) -> BrowserActionResult:
        """Set a form field's value."""
        return await self.act(Fill(selector, value, timeout=timeout))

    async def scroll(
        self, selector: str | None = None, x: int | None = None, y: int | None = None
    ) -> BrowserActionResult:
        """Scroll an element into view, or the page to coordinates."""
        return await self.act(Scroll(selector, x, y))

    async def wait_for(
        self, condition: str, selector: str | None = None, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Wait for a condition."""
        return await self.act(WaitFor(condition, selector, timeout))

    async def screenshot(
        self,
        full_page: bool = True,
        clip: Mapping[str, float] | None = None,
        format: str = "png",
        quality: int | None = None,
    ) -> str:
        """Capture the page as base64."""
        return await self.act(Screenshot(full_page, format, clip, quality))

    async def extract_elements(
        self, selector: str | None = None, attributes: Sequence[str] | None = None
    ) -> list[ExtractedElement]:
        """Read elements matching a selector."""
        return await self.act(ExtractElements(selector, attributes))

    async def extract_content(
        self,
        url: str | None = None,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """Readable text, interactive elements and anchors (navigating to ``url`` first if given)."""
        action = ExtractContent(include_interactive, include_anchors, max_anchors)
        if url is not None:
            await self.navigate(url)
        return await self.act(action)

    async def get_info(self) -> BrowserSessionInfo:
        """Describe the session now."""
        self.info = await self.backend.browser_get_session(self.session_id)
        return self.info

    async def is_active(self) -> bool:
        """True while the session exists on the backend."""
        try:
            await self.backend.browser_get_session(self.session_id)
        except SessionNotFoundError:
            return False
        return True

    async def close(self) -> bool:
        """Close the session (idempotent). Returns True."""
        if self._active:
            self._active = False
            await self.backend.browser_close_session(self.session_id)
        return True

    async def __aenter__(self) -> AsyncBrowserSession:
        return self

    async def __aexit__(self, exc_type: _ExcType, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncBrowserSession({self.session_id!r})"


BackendProvider = Callable[[], Awaitable[object]]
"""An async function returning the backend (``AsyncCodeRunner`` creates its backend on first use)."""


class AsyncBrowserManager:
    """The async twin of :class:`BrowserManager`.

    Args:
        backend: An async backend with the browser capability, or an async function returning one
            (so ``AsyncCodeRunner`` can hand over its lazily created backend).
    """

    def __init__(self, backend: object | BackendProvider) -> None:
        self._raw: object | None = None
        self._provider: BackendProvider | None = None
        if inspect.iscoroutinefunction(backend):
            self._provider = backend
        else:
            self._raw = backend
        self._default: AsyncBrowserSession | None = None
        self._owned: dict[str, AsyncBrowserSession] = {}
        self._lock: asyncio.Lock | None = None

    async def get_backend(self) -> AsyncBrowserBackend:
        """The backend, created if needed and checked for the browser capability."""
        if self._raw is None and self._provider is not None:
            self._raw = await self._provider()
        if not isinstance(self._raw, AsyncBrowserBackend):
            raise _unsupported(self._raw)
        return self._raw

    @property
    def default_session_id(self) -> str | None:
        """The default session's id, once a shortcut created it."""
        return self._default.session_id if self._default is not None else None

    async def create_session(
        self, viewport_width: int = 1920, viewport_height: int = 1080, user_agent: str | None = None
    ) -> AsyncBrowserSession:
        """Open a new isolated session (use ``async with`` to close it)."""
        backend = await self.get_backend()
        info = await backend.browser_create_session(viewport_width, viewport_height, user_agent)
        session = AsyncBrowserSession(backend, info)
        self._owned[session.session_id] = session
        return session

    async def session(self, session_id: str) -> AsyncBrowserSession:
        """A handle on an existing session."""
        backend = await self.get_backend()
        return AsyncBrowserSession(backend, await backend.browser_get_session(session_id))

    async def get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a session."""
        return await (await self.get_backend()).browser_get_session(session_id)

    async def list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session of the backend."""
        return await (await self.get_backend()).browser_list_sessions()

    async def _session_id(self, session_id: str | None) -> str:
        if session_id:
            return session_id
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._default is None:
                self._default = await self.create_session()
            return self._default.session_id

    def _drop_default(self, session_id: str) -> None:
        if self._default is not None and self._default.session_id == session_id:
            self._owned.pop(session_id, None)
            self._default = None

    async def act(self, action: BrowserAction[R], session_id: str | None = None) -> R:
        """Run one action in ``session_id``, or in the default session (created on first use, forgotten when gone)."""
        backend = await self.get_backend()
        sid = await self._session_id(session_id)
        try:
            return await backend.browser_act(sid, action)
        except SessionNotFoundError:
            if session_id is None:
                self._drop_default(sid)
            raise

    async def navigate(
        self, url: str, session_id: str | None = None, wait_timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Open ``url`` (default session unless ``session_id``; a lost default session is replaced, with a warning)."""
        action = Navigate(url, wait_timeout)
        backend = await self.get_backend()
        sid = await self._session_id(session_id)
        try:
            return await backend.browser_act(sid, action)
        except SessionNotFoundError as exc:
            if session_id is not None:
                raise
            self._drop_default(sid)
            result = await backend.browser_act(await self._session_id(None), action)
            return result.model_copy(update={"warnings": [*result.warnings, _replaced_warning(sid, exc.message)]})

    async def click(
        self, selector: str, session_id: str | None = None, force: bool = False, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Click an element."""
        return await self.act(Click(selector, force, timeout=timeout), session_id)

    async def type(
        self, selector: str, text: str, session_id: str | None = None, delay: int = 100, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Type text into an element."""
        return await self.act(TypeText(selector, text, delay, timeout=timeout), session_id)

    async def fill(
        self, selector: str, value: str, session_id: str | None = None, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Set a form field's value."""
        return await self.act(Fill(selector, value, timeout=timeout), session_id)

    async def scroll(
        self, selector: str | None = None, x: int | None = None, y: int | None = None, session_id: str | None = None
    ) -> BrowserActionResult:
        """Scroll an element into view, or the page to coordinates."""
        return await self.act(Scroll(selector, x, y), session_id)

    async def wait_for(
        self, condition: str, selector: str | None = None, session_id: str | None = None, timeout: int = _TIMEOUT
    ) -> BrowserActionResult:
        """Wait for a condition."""
        return await self.act(WaitFor(condition, selector, timeout), session_id)

    async def screenshot(
        self,
        session_id: str | None = None,
        full_page: bool = True,
        clip: Mapping[str, float] | None = None,
        format: str = "png",
        quality: int | None = None,
    ) -> str:
        """Capture the page as base64."""
        return await self.act(Screenshot(full_page, format, clip, quality), session_id)

    async def extract_elements(
        self, selector: str | None = None, session_id: str | None = None, attributes: Sequence[str] | None = None
    ) -> list[ExtractedElement]:
        """Read elements matching a selector."""
        return await self.act(ExtractElements(selector, attributes), session_id)

    async def extract_content(
        self,
        session_id: str | None = None,
        url: str | None = None,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """Readable text, interactive elements and anchors (navigating to ``url`` first if given)."""
        action = ExtractContent(include_interactive, include_anchors, max_anchors)
        if url is not None:
            sid = (await self.navigate(url, session_id)).session_id
            return await (await self.get_backend()).browser_act(sid, action)
        return await self.act(action, session_id)

    async def close(self) -> None:
        """Close the default session, if one was created."""
        default, self._default = self._default, None
        if default is not None:
            self._owned.pop(default.session_id, None)
            with contextlib.suppress(SessionNotFoundError):
                await default.close()

    async def close_all(self) -> None:
        """Close every session this manager created (the default one included)."""
        await self.close()
        for sid in list(self._owned):
            session = self._owned.pop(sid)
            with contextlib.suppress(SessionNotFoundError):
                await session.close()

    async def __aenter__(self) -> AsyncBrowserManager:
        return self

    async def __aexit__(self, exc_type: _ExcType, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close_all()


def browser_manager_for(backend: object) -> BrowserManager:
    """The :class:`BrowserManager` for a runner's sync backend (what ``CodeRunner.browser`` returns).

    The capability is checked on first use, so a backend without a browser fails with a clear
    :class:`~coderunner.errors.UnsupportedOperationError` only when the browser is actually used.
    """
    return BrowserManager(backend)


def async_browser_manager_for(backend: object | BackendProvider) -> AsyncBrowserManager:
    """The :class:`AsyncBrowserManager` for an async backend, or for an async function returning it.

    ``AsyncCodeRunner`` passes its ``_get_backend`` so the backend is still created on first use.
    """
    return AsyncBrowserManager(backend)
