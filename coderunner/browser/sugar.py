"""The InstaVM-shaped ``browser_*`` action methods every browser backend has, written once per colour.

A backend implements :meth:`~coderunner.browser.protocol.BrowserBackend.browser_act` (and the session
methods) and inherits :class:`BrowserActionMethods` (sync) or :class:`AsyncBrowserActionMethods`
(async): each method here builds one :mod:`~coderunner.browser.actions` action and runs it. Argument
names, order and defaults are the InstaVM API's; timeouts and delays are in milliseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Protocol, TypeVar

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
from coderunner.browser.models import BrowserActionResult, ExtractedElement, PageContent

__all__ = ["AsyncBrowserActionMethods", "BrowserActionMethods"]

R = TypeVar("R")


class _Acts(Protocol):
    def browser_act(self, session_id: str, action: BrowserAction[R]) -> R: ...


class _AsyncActs(Protocol):
    def browser_act(self, session_id: str, action: BrowserAction[R]) -> Awaitable[R]: ...


class BrowserActionMethods:
    """``browser_navigate`` ... ``browser_extract_content`` of a sync backend, over its ``browser_act``."""

    def browser_navigate(
        self: _Acts, session_id: str, url: str, wait_timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Open a URL and wait for its load event."""
        return self.browser_act(session_id, Navigate(url, wait_timeout))

    def browser_click(
        self: _Acts, session_id: str, selector: str, force: bool = False, timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Click the first element matching a selector."""
        return self.browser_act(session_id, Click(selector, force, timeout=timeout))

    def browser_type(
        self: _Acts, session_id: str, selector: str, text: str, delay: float = 100, timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Type text key by key into an element."""
        return self.browser_act(session_id, TypeText(selector, text, delay, timeout=timeout))

    def browser_fill(
        self: _Acts, session_id: str, selector: str, value: str, timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Replace the value of a form field."""
        return self.browser_act(session_id, Fill(selector, value, timeout=timeout))

    def browser_scroll(
        self: _Acts, session_id: str, selector: str | None = None, x: float | None = None, y: float | None = None
    ) -> BrowserActionResult:
        """Scroll an element into view, or the page to coordinates."""
        return self.browser_act(session_id, Scroll(selector, x, y))

    def browser_wait_for(
        self: _Acts, session_id: str, condition: str, selector: str | None = None, timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Wait for visible/hidden (with a selector) or load/networkidle."""
        return self.browser_act(session_id, WaitFor(condition, selector, timeout))

    def browser_screenshot(
        self: _Acts,
        session_id: str,
        full_page: bool = True,
        format: str = "png",
        clip: Mapping[str, float] | None = None,
        quality: int | None = None,
    ) -> str:
        """Capture the page; returns base64."""
        return self.browser_act(session_id, Screenshot(full_page, format, clip, quality))

    def browser_extract_elements(
        self: _Acts, session_id: str, selector: str | None = None, attributes: Sequence[str] | None = None
    ) -> list[ExtractedElement]:
        """Read the elements matching a selector."""
        return self.browser_act(session_id, ExtractElements(selector, attributes))

    def browser_extract_content(
        self: _Acts,
        session_id: str,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """Readable text, interactive elements and content anchors of the current page."""
        return self.browser_act(session_id, ExtractContent(include_interactive, include_anchors, max_anchors))


class AsyncBrowserActionMethods:
    """The same methods for an async backend, over its awaited ``browser_act``."""

    async def browser_navigate(
        self: _AsyncActs, session_id: str, url: str, wait_timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Open a URL and wait for its load event."""
        return await self.browser_act(session_id, Navigate(url, wait_timeout))

    async def browser_click(
        self: _AsyncActs, session_id: str, selector: str, force: bool = False, timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Click the first element matching a selector."""
        return await self.browser_act(session_id, Click(selector, force, timeout=timeout))

    async def browser_type(
        self: _AsyncActs,
        session_id: str,
        selector: str,
        text: str,
        delay: float = 100,
        timeout: float = DEFAULT_TIMEOUT_MS,
    ) -> BrowserActionResult:
        """Type text key by key into an element."""
        return await self.browser_act(session_id, TypeText(selector, text, delay, timeout=timeout))

    async def browser_fill(
        self: _AsyncActs, session_id: str, selector: str, value: str, timeout: float = DEFAULT_TIMEOUT_MS
    ) -> BrowserActionResult:
        """Replace the value of a form field."""
        return await self.browser_act(session_id, Fill(selector, value, timeout=timeout))

    async def browser_scroll(
        self: _AsyncActs, session_id: str, selector: str | None = None, x: float | None = None, y: float | None = None
    ) -> BrowserActionResult:
        """Scroll an element into view, or the page to coordinates."""
        return await self.browser_act(session_id, Scroll(selector, x, y))

    async def browser_wait_for(
        self: _AsyncActs,
        session_id: str,
        condition: str,
        selector: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_MS,
    ) -> BrowserActionResult:
        """Wait for visible/hidden (with a selector) or load/networkidle."""
        return await self.browser_act(session_id, WaitFor(condition, selector, timeout))

    async def browser_screenshot(
        self: _AsyncActs,
        session_id: str,
        full_page: bool = True,
        format: str = "png",
        clip: Mapping[str, float] | None = None,
        quality: int | None = None,
    ) -> str:
        """Capture the page; returns base64."""
        return await self.browser_act(session_id, Screenshot(full_page, format, clip, quality))

    async def browser_extract_elements(
        self: _AsyncActs, session_id: str, selector: str | None = None, attributes: Sequence[str] | None = None
    ) -> list[ExtractedElement]:
        """Read the elements matching a selector."""
        return await self.browser_act(session_id, ExtractElements(selector, attributes))

    async def browser_extract_content(
        self: _AsyncActs,
        session_id: str,
        include_interactive: bool = True,
        include_anchors: bool = True,
        max_anchors: int = 50,
    ) -> PageContent:
        """Readable text, interactive elements and content anchors of the current page."""
        return await self.browser_act(session_id, ExtractContent(include_interactive, include_anchors, max_anchors))
