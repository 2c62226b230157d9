"""Playwright at the edge: its lazy import, and its errors translated into :mod:`coderunner.browser.errors`.

Callers of the browser engine only ever see the browser errors and the core tree; the session-loss
bookkeeping that goes with some failures stays in :mod:`coderunner.engine.browser.engine`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from coderunner.browser.errors import (
    BrowserError,
    BrowserTimeoutError,
    ElementNotFoundError,
    ElementNotInteractableError,
    InvalidSelectorError,
)
from coderunner.errors import InvalidRequestError, MissingDependencyError

if TYPE_CHECKING:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import Page

__all__ = ["action_error", "first_line", "playwright_api", "timeout_error"]


def playwright_api() -> Any:
    """``playwright.async_api``, imported on first use (MissingDependencyError naming the extra without it)."""
    try:
        from playwright import async_api
    except ImportError:
        raise MissingDependencyError("playwright", "browser", "Browser automation") from None
    return async_api


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, without Playwright's 'Locator.click: ' or JS 'Error: ' prefix."""
    text = getattr(exc, "message", None) or str(exc)
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    # The action is named already by whoever reports it.
    head, sep, rest = line.partition(": ")
    if sep and "." in head and " " not in head:
        line = rest
    if line.startswith("Error: "):
        line = line[len("Error: ") :]
    return line.rstrip(".")


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


_NOT_ACTIONABLE = "the element exists but did not become actionable (visible, enabled, stable and not covered)"


def _call_log_reason(exc: BaseException) -> str | None:
    """The most telling line of Playwright's call log ('element is not visible', '... intercepts pointer events')."""
    text = str(getattr(exc, "message", None) or exc)
    lines = [ln.strip().lstrip("-").strip() for ln in text.split("Call log:", 1)[-1].splitlines()]
    for line in reversed(lines):
        if "element is not" in line or "intercepts pointer events" in line or "not an <input>" in line.lower():
            return re.sub(r"^\d+ \u00d7 ", "", line).strip()  # drop a repeat count such as "2 x "
    return None


async def _state_reason(page: Page, selector: str) -> str | None:
    """Why the first match is not actionable, asked of the page itself (no waiting).

    Playwright's call log says it too, but only once its own check has run: on a loaded machine a short
    timeout can end before that, and the log then names nothing.
    """
    api = playwright_api()
    element = page.locator(selector).first
    try:
        if not await element.is_visible():
            return "element is not visible"
        if not await element.is_enabled():
            return "element is not enabled"
    except api.Error:
        return None
    return None


def _is_selector_error(message: str) -> bool:
    lowered = message.lower()
    return (
        "while parsing" in lowered
        or "is not a valid selector" in lowered
        or "is not a valid xpath" in lowered
        or "unknown engine" in lowered
        or "syntaxerror" in lowered
    )


def action_error(action: str, selector: str | None, message: str) -> Exception:
    """The error for a Playwright failure of ``action`` that did not lose the session.

    Args:
        action: The action's name, e.g. 'click'.
        selector: The selector it acted on, if any (a failure to parse it is the caller's fault).
        message: The failure's :func:`first_line`.
    """
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


async def timeout_error(
    action: str,
    page: Page | None,
    selector: str | None,
    timeout: float | None,
    exc: PlaywrightError,
) -> Exception:
    """The error for Playwright's own timeout: no element at all (not found), or one that never became ready."""
    api = playwright_api()
    waited = f"{timeout:g} ms" if timeout is not None else "the timeout"
    if selector is None or page is None:
        return BrowserTimeoutError(f"{action} did not finish within {waited}: {first_line(exc)}.")
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
        return BrowserTimeoutError(f"wait_for timed out after {waited}: no element matches {selector!r} on {page.url}.")
    reason = _call_log_reason(exc) or await _state_reason(page, selector) or _NOT_ACTIONABLE
    return BrowserTimeoutError(f"{action} on {selector!r} timed out after {waited}: {reason}.")
