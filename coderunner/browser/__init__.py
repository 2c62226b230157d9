"""Browser automation: persistent, isolated Chromium sessions an agent can drive (extra: ``coderunner[browser]``).

This package is the public face: the actions as data (:mod:`~coderunner.browser.actions`), their
result models and errors, the capability protocols and the managers. Chromium itself is driven by
:mod:`coderunner.engine.browser`. Importing this package does not import Playwright (nor the engine);
the engine imports it when the first browser session starts, and raises
:class:`~coderunner.errors.MissingDependencyError` if it is missing.
"""

from coderunner.browser.actions import (
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
    "BrowserAction",
    "BrowserActionResult",
    "BrowserBackend",
    "BrowserError",
    "BrowserManager",
    "BrowserSession",
    "BrowserSessionInfo",
    "BrowserSessionLostError",
    "BrowserSettings",
    "BrowserTimeoutError",
    "Click",
    "ContentAnchor",
    "DestinationBlockedError",
    "EgressDecision",
    "EgressPolicy",
    "ElementNotFoundError",
    "ElementNotInteractableError",
    "ExtractContent",
    "ExtractElements",
    "ExtractedElement",
    "Fill",
    "InteractiveElement",
    "InvalidSelectorError",
    "Navigate",
    "NavigationError",
    "PageContent",
    "ReadableContent",
    "Screenshot",
    "Scroll",
    "TypeText",
    "Viewport",
    "WaitFor",
    "async_browser_manager_for",
    "browser_manager_for",
]
