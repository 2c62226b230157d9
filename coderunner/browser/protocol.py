"""The browser capability: optional protocols a backend implements when it can drive a browser.

Detected with ``isinstance(backend, BrowserBackend)``, never by calling and catching. Every method
takes the *browser* session id returned by ``browser_create_session`` (browser sessions are separate
from code sessions). Timeouts and delays are in milliseconds, as in the InstaVM API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from coderunner.browser.models import BrowserActionResult, BrowserSessionInfo, ExtractedElement, PageContent

__all__ = ["AsyncBrowserBackend", "BrowserBackend"]


@runtime_checkable
class BrowserBackend(Protocol):
    """A backend whose sessions can drive a real browser, synchronously."""

    def browser_create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Open an isolated browser session (own cookies, storage and pages)."""
        ...

    def browser_get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a browser session (SessionNotFoundError / BrowserSessionLostError when gone)."""
        ...

    def browser_list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session of this backend."""
        ...

    def browser_close_session(self, session_id: str) -> None:
        """Close a browser session (a no-op when already closed)."""
        ...

    def browser_navigate(self, session_id: str, url: str, wait_timeout: float = 30_000) -> BrowserActionResult:
        """Open a URL and wait for its load event."""
        ...

    def browser_click(
        self, session_id: str, selector: str, force: bool = False, timeout: float = 30_000
    ) -> BrowserActionResult:
        """Click the first element matching a selector."""
        ...

    def browser_type(
        self, session_id: str, selector: str, text: str, delay: float = 100, timeout: float = 30_000
    ) -> BrowserActionResult:
        """Type text key by key into an element."""
        ...

    def browser_fill(self, session_id: str, selector: str, value: str, timeout: float = 30_000) -> BrowserActionResult:
        """Replace the value of a form field."""
        ...

    def browser_scroll(
        self, session_id: str, selector: str | None = None, x: float | None = None, y: float | None = None
    ) -> BrowserActionResult:
        """Scroll an element into view, or the page to coordinates."""
        ...

    def browser_wait_for(
        self, session_id: str, condition: str, selector: str | None = None, timeout: float = 30_000
    ) -> BrowserActionResult:
        """Wait for visible/hidden (with a selector) or load/networkidle."""
        ...

    def browser_screenshot(
        self,
        session_id: str,
        full_page: bool = True,
        format: str = "png",
        clip: Mapping[str, float] | None = None,
        quality: int | None = None,
    ) -> str:
        """Capture the page; returns base64."""
        ...

    def browser_extract_elements(
        self, session_id: str, selector: str | None = None, attributes: Sequence[str] | None = None
    ) -> list[ExtractedElement]:
        """Read the elements matching a selector."""
        ...

    def browser_extract_content(
        self,
        session_id: str,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """Readable text, interactive elements and content anchors of the current page."""
        ...


@runtime_checkable
class AsyncBrowserBackend(Protocol):
    """The same capability as :class:`BrowserBackend`, awaited."""

    async def browser_create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Open an isolated browser session."""
        ...

    async def browser_get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a browser session."""
        ...

    async def browser_list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session."""
        ...

    async def browser_close_session(self, session_id: str) -> None:
        """Close a browser session."""
        ...

    async def browser_navigate(self, session_id: str, url: str, wait_timeout: float = 30_000) -> BrowserActionResult:
        """Open a URL and wait for its load event."""
        ...

    async def browser_click(
        self, session_id: str, selector: str, force: bool = False, timeout: float = 30_000
    ) -> BrowserActionResult:
        """Click the first element matching a selector."""
        ...

    async def browser_type(
        self, session_id: str, selector: str, text: str, delay: float = 100, timeout: float = 30_000
    ) -> BrowserActionResult:
        """Type text key by key into an element."""
        ...

    async def browser_fill(
        self, session_id: str, selector: str, value: str, timeout: float = 30_000
    ) -> BrowserActionResult:
        """Replace the value of a form field."""
        ...

    async def browser_scroll(
        self, session_id: str, selector: str | None = None, x: float | None = None, y: float | None = None
    ) -> BrowserActionResult:
        """Scroll an element into view, or the page to coordinates."""
        ...

    async def browser_wait_for(
        self, session_id: str, condition: str, selector: str | None = None, timeout: float = 30_000
    ) -> BrowserActionResult:
        """Wait for visible/hidden (with a selector) or load/networkidle."""
        ...

    async def browser_screenshot(
        self,
        session_id: str,
        full_page: bool = True,
        format: str = "png",
        clip: Mapping[str, float] | None = None,
        quality: int | None = None,
    ) -> str:
        """Capture the page; returns base64."""
        ...

    async def browser_extract_elements(
        self, session_id: str, selector: str | None = None, attributes: Sequence[str] | None = None
    ) -> list[ExtractedElement]:
        """Read the elements matching a selector."""
        ...

    async def browser_extract_content(
        self,
        session_id: str,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """Readable text, interactive elements and content anchors of the current page."""
        ...
