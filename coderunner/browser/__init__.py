"""Browser automation: persistent, isolated Chromium sessions an agent can drive (extra: ``coderunner[browser]``).

Importing this package does not import Playwright; the engine imports it when the first browser
session starts, and raises :class:`~coderunner.errors.MissingDependencyError` if it is missing.
"""

from coderunner.browser.client import (
    AsyncBrowserManager,
    AsyncBrowserSession,
    BrowserManager,
    BrowserSession,
    async_browser_manager_for,
    browser_manager_for,
)
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
    ContentAnchor,
    ExtractedElement,
    InteractiveElement,
    PageContent,
    ReadableContent,
    Viewport,
)
from coderunner.browser.policy import EgressDecision, EgressPolicy
from coderunner.browser.protocol import AsyncBrowserBackend, BrowserBackend

__all__ = [
    "AsyncBrowserBackend",
    "AsyncBrowserManager",
    "AsyncBrowserSession",
    "BrowserActionResult",
    "BrowserBackend",
    "BrowserError",
    "BrowserManager",
    "BrowserSession",
    "BrowserSessionInfo",
    "BrowserSessionLostError",
    "BrowserSettings",
    "BrowserTimeoutError",
    "ContentAnchor",
    "DestinationBlockedError",
    "EgressDecision",
    "EgressPolicy",
    "ElementNotFoundError",
    "ElementNotInteractableError",
    "ExtractedElement",
    "InteractiveElement",
    "InvalidSelectorError",
    "NavigationError",
    "PageContent",
    "ReadableContent",
    "Viewport",
    "async_browser_manager_for",
    "browser_manager_for",
]
