"""Browser exceptions: each subclasses the core tree, so ``except NotFoundError`` still catches a missing element.

::

    BrowserError                     code="browser"               an action failed for another reason (500)
    ├── BrowserSessionLostError      code="browser_session_lost"  the browser crashed; the session is gone (410)
    │                                (also a SessionNotFoundError)
    ├── ElementNotFoundError         code="element_not_found"     nothing matches the selector (404)
    │                                (also a NotFoundError)
    ├── InvalidSelectorError         code="invalid_selector"      the selector does not parse (400)
    │                                (also an InvalidRequestError)
    ├── ElementNotInteractableError  code="element_not_interactable"  the element cannot do that, e.g.
    │                                fill a button (400; also an InvalidRequestError)
    ├── BrowserTimeoutError          code="browser_timeout"       the element exists / the page loads, too slowly (408)
    └── NavigationError              code="navigation_failed"     the page could not be loaded (502)
        └── DestinationBlockedError  code="destination_blocked"   the egress policy refused it (403)

An unknown or closed browser session id is the core :class:`~coderunner.errors.SessionNotFoundError`.
A missing Chromium is :class:`~coderunner.errors.BackendUnavailableError`; a missing ``playwright``
package is :class:`~coderunner.errors.MissingDependencyError`.
"""

from __future__ import annotations

from coderunner import errors as _errors
from coderunner.errors import CodeRunnerError, InvalidRequestError, NotFoundError, SessionNotFoundError

__all__ = [
    "HTTP_STATUS",
    "BrowserError",
    "BrowserSessionLostError",
    "BrowserTimeoutError",
    "DestinationBlockedError",
    "ElementNotFoundError",
    "ElementNotInteractableError",
    "InvalidSelectorError",
    "NavigationError",
]


class BrowserError(CodeRunnerError):
    """A browser action failed; the subclasses say why."""

    code = "browser"


class BrowserSessionLostError(BrowserError, SessionNotFoundError):
    """The session's browser process or page crashed: its pages, cookies and storage are gone."""

    code = "browser_session_lost"


class ElementNotFoundError(BrowserError, NotFoundError):
    """No element matched the selector, even after waiting for the timeout."""

    code = "element_not_found"


class InvalidSelectorError(BrowserError, InvalidRequestError):
    """The selector is not valid CSS (or Playwright selector) syntax."""

    code = "invalid_selector"


class ElementNotInteractableError(BrowserError, InvalidRequestError):
    """The element exists but cannot take this action (e.g. fill on a button)."""

    code = "element_not_interactable"


class BrowserTimeoutError(BrowserError):
    """The element exists but never became actionable, or a page/condition took longer than the timeout."""

    code = "browser_timeout"
    retryable = True


class NavigationError(BrowserError):
    """The page could not be loaded (connection refused, DNS failure, TLS error, ...)."""

    code = "navigation_failed"


class DestinationBlockedError(NavigationError):
    """The browser egress policy refused the destination (metadata, link-local, private, or a deny rule)."""

    code = "destination_blocked"


HTTP_STATUS: dict[str, int] = {
    "browser": 500,
    "browser_session_lost": 410,
    "element_not_found": 404,
    "invalid_selector": 400,
    "element_not_interactable": 400,
    "browser_timeout": 408,
    "navigation_failed": 502,
    "destination_blocked": 403,
}
"""The HTTP status for each browser ``code`` (for the REST server's code -> status table)."""

# error_for_code() rebuilds exceptions from a code (remote clients); the core index was built before
# these classes existed, so add them to it.
_errors._index(BrowserError)
