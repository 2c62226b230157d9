"""What the browser engine keeps per session, and the one seam its action handlers run through.

The handlers (:mod:`coderunner.engine.browser.actions`) see the engine only as a :class:`PageRunner`,
so they need not import it, and the engine imports them to dispatch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol, TypeVar

from coderunner.browser.models import Viewport
from coderunner.browser.policy import EgressPolicy
from coderunner.browser.proxy import EgressProxy

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

__all__ = ["PageRunner", "Session", "Slot"]

T = TypeVar("T")


@dataclass(eq=False)
class Slot:
    """A browser context with a blank page and its proxy: a session, or a pooled one waiting to be."""

    context: BrowserContext
    page: Page
    proxy: EgressProxy
    generation: int


@dataclass(eq=False)
class Session:
    """One browser session: its context (slot), its pages (the newest is the one actions use) and its state."""

    session_id: str
    slot: Slot
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
        """Note activity now."""
        self.last_activity = time.monotonic()
        self.last_activity_at = datetime.now(timezone.utc)

    def expiry_reason(self, now: float) -> str | None:
        """Why the session has expired at monotonic time ``now`` (None: it has not)."""
        if self.busy or not self.idle_timeout:
            return None
        if now - self.last_activity > self.idle_timeout:
            return f"it was idle for more than {self.idle_timeout:g} s"
        return None


class PageRunner(Protocol):
    """What an action handler needs of the engine: its egress policy, and a way onto a session's page."""

    policy: EgressPolicy

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
        """Run ``fn`` on the session's current page, one action at a time, with Playwright's errors translated.

        Args:
            session_id: The browser session.
            action: The action's name, for errors.
            fn: What to do with the session and its page.
            selector: The selector the action targets (a timeout on it may be "not found").
            timeout: The action's own timeout in ms (default: 30 s); the engine waits a grace period more.
            extra_seconds: Seconds the action may take beyond ``timeout`` (typing delays).
        """
        ...
