"""One handler per browser action, dispatched by the action's type from :data:`HANDLERS`.

An action arrives validated (:mod:`coderunner.browser.actions`); a handler adds what depends on the
engine (the egress policy, the default extract selector, the caps) and drives the page through
:meth:`~coderunner.engine.browser.session.PageRunner.on_page`, which serialises the session's actions
and translates Playwright's errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

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
from coderunner.browser.errors import DestinationBlockedError
from coderunner.browser.models import BrowserActionResult, ExtractedElement, PageContent
from coderunner.browser.policy import EgressPolicy
from coderunner.engine.browser import _scripts
from coderunner.engine.browser.navigation import open_page
from coderunner.engine.browser.session import PageRunner, Session

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["DEFAULT_EXTRACT_SELECTOR", "HANDLERS", "Handler"]

DEFAULT_EXTRACT_SELECTOR = "h1, h2, h3, h4, h5, h6, p, a, button, input, select, textarea, li, img"
"""What extract_elements reads when no selector is given."""

_SCHEMES = ("http", "https", "about", "data")
_MAX_ELEMENTS = 500
_MAX_ELEMENT_TEXT = 2_000
_MAX_CONTENT_CHARS = 100_000
_MAX_INTERACTIVE = 300
_MAX_SHOT_HEIGHT = 16_384  # Chromium cannot capture taller than its maximum texture size
_POPUP_WAIT = 5.0

Handler = Callable[[PageRunner, str, Any], Awaitable[Any]]
"""``handler(engine, session_id, action)``: runs one action type."""


def _result(action: str, session: Session, data: dict[str, Any], started: float) -> BrowserActionResult:
    return BrowserActionResult(
        action=action,
        session_id=session.session_id,
        data=data,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def check_scheme(action: Navigate, policy: EgressPolicy) -> None:
    """Refuse a scheme the policy does not allow (file: only while the server is bound to loopback).

    Raises:
        DestinationBlockedError: Chromium must not open such a URL here.
    """
    scheme = action.scheme
    if scheme in _SCHEMES or (scheme == "file" and not policy.public_bind):
        return
    raise DestinationBlockedError(
        f"Navigation to {action.url} was refused: the {scheme!r} scheme is not allowed "
        f"(allowed: http, https, about, data{'' if policy.public_bind else ', file'})."
    )


async def navigate(engine: PageRunner, session_id: str, action: Navigate) -> BrowserActionResult:
    """Open the URL, refused up front when the policy refuses its scheme or destination."""
    check_scheme(action, engine.policy)
    decision = await engine.policy.check_url(action.url)
    if not decision.allowed:
        raise DestinationBlockedError(f"Navigation to {action.url} was refused: {decision.reason}.")

    async def run(session: Session, page: Page) -> BrowserActionResult:
        started = time.perf_counter()
        data = await open_page(session, page, action.url, action.wait_timeout)
        return _result(action.name, session, data, started)

    return await engine.on_page(session_id, action.name, run, timeout=action.wait_timeout)


async def click(engine: PageRunner, session_id: str, action: Click) -> BrowserActionResult:
    """Click the first match, waiting for it to be visible, enabled and still (and for a popup it opens)."""
    selector, ms = action.selector, action.timeout

    async def run(session: Session, page: Page) -> BrowserActionResult:
        started = time.perf_counter()
        target = page.locator(selector).first
        # A link with target=_blank opens its page only after click() returns: wait for it, so the
        # next action already runs on the new page (the one the user sees).
        opens_page = await target.evaluate(_scripts.OPENS_NEW_PAGE, timeout=ms)
        session.page_opened.clear()
        await target.click(force=action.force, timeout=ms)
        if opens_page:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(session.page_opened.wait(), _POPUP_WAIT)
        current = session.pages[-1] if session.pages else page
        return _result(action.name, session, {"url": current.url, "selector": selector}, started)

    return await engine.on_page(session_id, action.name, run, selector=selector, timeout=ms)


async def type_text(engine: PageRunner, session_id: str, action: TypeText) -> BrowserActionResult:
    """Press the keys one by one (the engine's limit also covers the delays between them)."""

    async def run(session: Session, page: Page) -> BrowserActionResult:
        started = time.perf_counter()
        target = page.locator(action.selector).first
        await target.press_sequentially(action.text, delay=float(action.delay), timeout=action.timeout)
        return _result(action.name, session, {"url": page.url, "selector": action.selector}, started)

    typing = len(action.text) * float(action.delay) / 1000
    return await engine.on_page(
        session_id, action.name, run, selector=action.selector, timeout=action.timeout, extra_seconds=typing
    )


async def fill(engine: PageRunner, session_id: str, action: Fill) -> BrowserActionResult:
    """Replace the field's value."""

    async def run(session: Session, page: Page) -> BrowserActionResult:
        started = time.perf_counter()
        await page.locator(action.selector).first.fill(action.value, timeout=action.timeout)
        return _result(action.name, session, {"url": page.url, "selector": action.selector}, started)

    return await engine.on_page(session_id, action.name, run, selector=action.selector, timeout=action.timeout)


async def scroll(engine: PageRunner, session_id: str, action: Scroll) -> BrowserActionResult:
    """Scroll the element into view, or the page to x/y; the result has the page's scroll position."""
    sel = action.selector

    async def run(session: Session, page: Page) -> BrowserActionResult:
        started = time.perf_counter()
        if sel is not None:
            await page.locator(sel).first.scroll_into_view_if_needed(timeout=DEFAULT_TIMEOUT_MS)
            pos = await page.evaluate(_scripts.SCROLL_POSITION)
        else:
            pos = await page.evaluate(_scripts.SCROLL_TO, [action.x, action.y])
        data = {"url": page.url, "x": pos[0], "y": pos[1]}
        if sel is not None:
            data["selector"] = sel
        return _result(action.name, session, data, started)

    return await engine.on_page(session_id, action.name, run, selector=sel, timeout=DEFAULT_TIMEOUT_MS)


async def wait_for(engine: PageRunner, session_id: str, action: WaitFor) -> BrowserActionResult:
    """Wait for the element state, or the page's load state."""
    sel, condition = action.element_selector, action.condition

    async def run(session: Session, page: Page) -> BrowserActionResult:
        started = time.perf_counter()
        if sel is not None:
            await page.locator(sel).first.wait_for(state=condition, timeout=action.timeout)  # type: ignore[arg-type]
        else:
            await page.wait_for_load_state(condition, timeout=action.timeout)  # type: ignore[arg-type]
        data: dict[str, Any] = {"url": page.url, "condition": condition}
        if sel is not None:
            data["selector"] = sel
        return _result(action.name, session, data, started)

    return await engine.on_page(session_id, action.name, run, selector=sel, timeout=action.timeout)


async def screenshot(engine: PageRunner, session_id: str, action: Screenshot) -> str:
    """Capture the page, a full page cut at 16,384 CSS pixels; base64."""
    region = dict(action.clip) if action.clip is not None else None

    async def run(session: Session, page: Page) -> str:
        area = region
        if action.full_page and area is None:
            width, height = await page.evaluate(
                "() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            if height > _MAX_SHOT_HEIGHT:
                area = {"x": 0, "y": 0, "width": float(min(width, 16_384)), "height": float(_MAX_SHOT_HEIGHT)}
        shot = await page.screenshot(
            type=action.format,  # type: ignore[arg-type]
            full_page=action.full_page,
            clip=area,  # type: ignore[arg-type]
            quality=action.quality,
            timeout=DEFAULT_TIMEOUT_MS,
        )
        return base64.b64encode(shot).decode("ascii")

    return await engine.on_page(session_id, action.name, run, timeout=DEFAULT_TIMEOUT_MS)


async def extract_elements(engine: PageRunner, session_id: str, action: ExtractElements) -> list[ExtractedElement]:
    """Read the first 500 matches in document order (an empty list when nothing matches)."""
    sel = action.selector if action.selector is not None else DEFAULT_EXTRACT_SELECTOR
    names = list(action.attributes) if action.attributes is not None else None

    async def run(session: Session, page: Page) -> list[ExtractedElement]:
        raw = await page.locator(sel).evaluate_all(
            f"(els, args) => ({_scripts.EXTRACT_ELEMENTS})(els.slice(0, {_MAX_ELEMENTS}), args)",
            [names, _MAX_ELEMENT_TEXT],
        )
        return [ExtractedElement.model_validate(item) for item in raw]

    return await engine.on_page(session_id, action.name, run, selector=sel)


async def extract_content(engine: PageRunner, session_id: str, action: ExtractContent) -> PageContent:
    """Readable text, interactive elements and anchors, each capped."""

    async def run(session: Session, page: Page) -> PageContent:
        raw = await page.evaluate(
            _scripts.EXTRACT_CONTENT,
            [
                action.include_interactive,
                action.include_anchors,
                action.max_anchors,
                _MAX_CONTENT_CHARS,
                _MAX_INTERACTIVE,
            ],
        )
        return PageContent.model_validate(raw)

    return await engine.on_page(session_id, action.name, run)


HANDLERS: dict[type[BrowserAction[Any]], Handler] = {
    Navigate: navigate,
    Click: click,
    TypeText: type_text,
    Fill: fill,
    Scroll: scroll,
    WaitFor: wait_for,
    Screenshot: screenshot,
    ExtractElements: extract_elements,
    ExtractContent: extract_content,
}
"""The handler of each action type."""
