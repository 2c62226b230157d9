"""The browser capability: optional protocols a backend implements when it can drive a browser.

Detected with ``isinstance(backend, BrowserBackend)``, never by calling and catching. A backend
implements the four session methods and one :meth:`~BrowserBackend.browser_act`, which runs any
:mod:`~coderunner.browser.actions` action; the InstaVM-shaped ``browser_navigate`` ...
``browser_extract_content`` come from :mod:`coderunner.browser.sugar`. Every method takes the
*browser* session id returned by ``browser_create_session`` (browser sessions are separate from code
sessions). Timeouts and delays are in milliseconds, as in the InstaVM API.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from coderunner.browser.actions import BrowserAction
from coderunner.browser.models import BrowserSessionInfo

__all__ = ["AsyncBrowserBackend", "BrowserBackend"]

R = TypeVar("R")


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

    def browser_act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one action (navigate, click, ..., extract_content) in a browser session and return its result."""
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

    async def browser_act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one action in a browser session and return its result."""
        ...
