"""Navigations: open a URL in a page and tell what happened to it, from the page's and the egress proxy's view.

A navigation's outcome is read from the proxy events of its *own* requests (:class:`NavigationWatch`),
never from a time window, so a refusal meant for another navigation (or for the page being left) is
never reported as this one's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from coderunner.browser.errors import BrowserTimeoutError, DestinationBlockedError, NavigationError
from coderunner.browser.proxy import ProxyEvent
from coderunner.engine.browser.errors import first_line, playwright_api
from coderunner.engine.browser.session import Session
from coderunner.errors import InvalidRequestError

if TYPE_CHECKING:
    from playwright.async_api import Frame, Page, Request

__all__ = ["NavigationWatch", "open_page", "same_url"]

_ERROR_PAGE_WAIT = 5.0  # Chromium commits a failed navigation's error page within ~0.2 s


async def open_page(session: Session, page: Page, url: str, timeout: float) -> dict[str, Any]:
    """Open ``url`` in ``page`` and wait for its load event; the result's data (url, title, status, ...).

    Raises:
        DestinationBlockedError: The egress proxy refused the page (or a redirect it led to).
        NavigationError: The page could not be loaded (connection refused, DNS, TLS, ...).
        BrowserTimeoutError: It did not finish loading within ``timeout`` ms (it may be partly shown).
        InvalidRequestError: Chromium cannot open such a URL at all (a malformed data: URL, say).
    """
    api = playwright_api()
    proxy = session.slot.proxy
    mark = proxy.mark()
    watch = NavigationWatch(page)
    try:
        try:
            response = await page.goto(url, timeout=timeout, wait_until="load")
        except api.TimeoutError:
            raise BrowserTimeoutError(
                f"{url} did not finish loading within {timeout:g} ms; the page may be partly loaded (now "
                f"at {page.url}). Retry with a larger wait_timeout, or wait_for('visible', selector) instead."
            ) from None
        except api.Error as exc:
            message = first_line(exc)
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
        if same_url(event.target, final):
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
    return data


class NavigationWatch:
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
        api = playwright_api()
        try:
            return request.is_navigation_request() and request.frame == self.page.main_frame
        except api.Error:  # a service worker's request has no frame
            return False


def _event_is_for(event: ProxyEvent, url: str) -> bool:
    """Whether a proxy event is about a request for ``url``: its plain-HTTP URL, or the CONNECT tunnel to its host."""
    parts = urlsplit(url)
    if parts.scheme == "http":
        return same_url(event.target, url)
    if parts.scheme not in ("https", "ws", "wss") or not parts.hostname:
        return False
    try:
        port = parts.port or (80 if parts.scheme == "ws" else 443)
    except ValueError:
        return False
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return event.target.lower() == f"{host}:{port}"


def same_url(a: str, b: str) -> bool:
    """Whether two URLs name the same document (fragment and trailing slash aside)."""
    return a.split("#", 1)[0].rstrip("/") == b.split("#", 1)[0].rstrip("/")
