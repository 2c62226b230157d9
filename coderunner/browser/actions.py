"""Browser actions as data: one frozen model per action, validated once, the currency of every layer.

A backend runs any action through one method, ``browser_act(session_id, action)``
(:mod:`coderunner.browser.protocol`). The engine (:mod:`coderunner.engine.browser`) dispatches on the
action's type; the InstaVM client sends it with :meth:`BrowserAction.wire_body` to its
:attr:`~BrowserAction.route` and reads the answer with :meth:`BrowserAction.parse_answer`; the REST
server builds it from a request body with :meth:`BrowserAction.from_wire`. The ``browser_*`` methods
of the backends (:mod:`coderunner.browser.sugar`) and the managers (:mod:`coderunner.browser.client`)
only build actions.

Each action checks its own values in its constructor, with the same errors on every backend: a blank
selector is :class:`~coderunner.browser.errors.InvalidSelectorError`, any other bad value
:class:`~coderunner.errors.InvalidRequestError`. What depends on the page or the egress policy (a
selector Playwright cannot parse, a scheme the policy refuses) is checked where the page is.

A new action is: its model here, its handler in :mod:`coderunner.engine.browser.actions`, its request
model and route in :mod:`coderunner.server`, and its one-line sugar methods.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import ValidationError

from coderunner.browser.errors import InvalidSelectorError
from coderunner.browser.models import BrowserActionResult, ExtractedElement, PageContent
from coderunner.errors import BackendError, InvalidRequestError

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "ELEMENT_CONDITIONS",
    "MAX_TIMEOUT_MS",
    "WAIT_CONDITIONS",
    "BrowserAction",
    "Click",
    "ExtractContent",
    "ExtractElements",
    "Fill",
    "Navigate",
    "Screenshot",
    "Scroll",
    "TypeText",
    "WaitFor",
]

R_co = TypeVar("R_co", covariant=True)
A = TypeVar("A", bound="BrowserAction[Any]")

DEFAULT_TIMEOUT_MS = 30_000
"""Default action and navigation timeout, in milliseconds (as in the InstaVM API)."""
MAX_TIMEOUT_MS = 600_000
"""Longest timeout an action accepts: ten minutes."""
ELEMENT_CONDITIONS = ("visible", "hidden", "attached", "detached")
"""The wait_for conditions about an element: they need a selector."""
WAIT_CONDITIONS = (*ELEMENT_CONDITIONS, "load", "domcontentloaded", "networkidle")
"""Conditions wait_for accepts; visible, hidden, load and networkidle are InstaVM's, the others Playwright's."""

_set = object.__setattr__  # a frozen dataclass's own __post_init__ may still normalise its fields


@dataclass(frozen=True)
class BrowserAction(Generic[R_co]):
    """One thing to do in a browser session; ``R_co`` is what doing it returns.

    The class-level data says what every layer needs to know about the action: its :attr:`name` in
    results and errors, its InstaVM :attr:`route`, how long its call may take (:attr:`wait_ms`) and
    what a 404 answer means (:attr:`finds_element`).
    """

    name: ClassVar[str]
    """The action's name in results and error messages, e.g. 'wait_for'."""
    route: ClassVar[str]
    """Its InstaVM route below ``/v1/browser/interactions/``, e.g. 'wait'."""

    @property
    def wait_ms(self) -> float:
        """Milliseconds the action may take by its own values (a remote call waits that long, plus a margin)."""
        return 0.0

    @property
    def finds_element(self) -> bool:
        """True when an answer 404 means that no element matched (otherwise: no such session)."""
        return False

    def wire_body(self, session_id: str) -> dict[str, Any]:
        """The InstaVM request body: the session id and every field that is set (None is left out)."""
        body: dict[str, Any] = {"session_id": session_id}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            if value is not None:
                body[spec.name] = value
        return body

    @classmethod
    def from_wire(cls: type[A], body: Mapping[str, Any]) -> A:
        """The action a request body asks for (keys that are not its fields, such as session_id, are ignored)."""
        names = {spec.name for spec in dataclasses.fields(cls)}
        return cast(Callable[..., A], cls)(**{k: v for k, v in body.items() if k in names})

    def parse_answer(self, payload: Any, session_id: str) -> R_co:
        """The result in a server's answer to this action."""
        raise NotImplementedError


@dataclass(frozen=True)
class _PageAction(BrowserAction[BrowserActionResult]):
    """An action whose result is a :class:`BrowserActionResult` (what it did)."""

    def parse_answer(self, payload: Any, session_id: str) -> BrowserActionResult:
        """Coderunner's shape, or the ``success``/``data`` of other servers."""
        if not isinstance(payload, dict):
            raise BackendError(f"The server's answer to browser {self.name} is not a JSON object.")
        known = {k: v for k, v in payload.items() if k in BrowserActionResult.model_fields}
        try:
            return BrowserActionResult.model_validate({"action": self.name, "session_id": session_id, **known})
        except ValidationError:
            data = payload.get("data")
            return BrowserActionResult(
                action=self.name, session_id=session_id, data=data if isinstance(data, dict) else {}
            )


@dataclass(frozen=True)
class Navigate(_PageAction):
    """Open ``url`` and wait up to ``wait_timeout`` ms for its load event."""

    url: str
    wait_timeout: float = DEFAULT_TIMEOUT_MS

    name: ClassVar[str] = "navigate"
    route: ClassVar[str] = "navigate"

    def __post_init__(self) -> None:
        _set(self, "url", _url(self.url))
        _timeout(self.wait_timeout, "wait_timeout")

    @property
    def scheme(self) -> str:
        """The URL's scheme, lower-case."""
        return urlsplit(self.url).scheme.lower()

    @property
    def wait_ms(self) -> float:
        """The load timeout."""
        return self.wait_timeout


@dataclass(frozen=True)
class _ElementAction(_PageAction):
    """An action on the first element matching ``selector``, waiting up to ``timeout`` ms for it."""

    selector: str
    # Keyword-only, so each action's own fields may follow the selector without defaults.
    timeout: float = field(default=DEFAULT_TIMEOUT_MS, kw_only=True)

    def __post_init__(self) -> None:
        _selector(self.selector)
        _timeout(self.timeout, "timeout")

    @property
    def wait_ms(self) -> float:
        """The element timeout."""
        return self.timeout

    @property
    def finds_element(self) -> bool:
        """A 404 is the element."""
        return True


@dataclass(frozen=True)
class Click(_ElementAction):
    """Click the first element matching ``selector`` (``force``: skip the actionability checks)."""

    force: bool = False

    name: ClassVar[str] = "click"
    route: ClassVar[str] = "click"

    def __post_init__(self) -> None:
        super().__post_init__()
        _set(self, "force", bool(self.force))


@dataclass(frozen=True)
class TypeText(_ElementAction):
    """Type ``text`` key by key into the element, ``delay`` ms between keys, after what it holds."""

    text: str
    delay: float = 100

    name: ClassVar[str] = "type"
    route: ClassVar[str] = "type"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.text, str):
            raise InvalidRequestError("text must be a string.")
        delay = self.delay
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 10_000:
            raise InvalidRequestError("delay must be between 0 and 10000 milliseconds.")

    @property
    def wait_ms(self) -> float:
        """The element timeout plus the key delays."""
        return self.timeout + self.delay * len(self.text)


@dataclass(frozen=True)
class Fill(_ElementAction):
    """Replace the value of an input, textarea, select-like or contenteditable element."""

    value: str

    name: ClassVar[str] = "fill"
    route: ClassVar[str] = "fill"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.value, str):
            raise InvalidRequestError("value must be a string.")


@dataclass(frozen=True)
class Scroll(_PageAction):
    """Scroll an element into view (``selector``), or the page to absolute ``x``/``y`` (the other axis stays)."""

    selector: str | None = None
    x: float | None = None
    y: float | None = None

    name: ClassVar[str] = "scroll"
    route: ClassVar[str] = "scroll"

    def __post_init__(self) -> None:
        if self.selector is None and self.x is None and self.y is None:
            raise InvalidRequestError("scroll needs a selector, or x and/or y coordinates.")
        if self.selector is not None:
            _selector(self.selector)
        for axis, value in (("x", self.x), ("y", self.y)):
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise InvalidRequestError(f"{axis} must be a number of CSS pixels.")

    @property
    def finds_element(self) -> bool:
        """A 404 is the element, when there is one."""
        return self.selector is not None


@dataclass(frozen=True)
class WaitFor(_PageAction):
    """Wait until an element is visible/hidden/attached/detached, or the page reached load/networkidle."""

    condition: str
    selector: str | None = None
    timeout: float = DEFAULT_TIMEOUT_MS

    name: ClassVar[str] = "wait_for"
    route: ClassVar[str] = "wait"

    def __post_init__(self) -> None:
        if self.condition not in WAIT_CONDITIONS:
            raise InvalidRequestError(f"condition must be one of {', '.join(WAIT_CONDITIONS)}; got {self.condition!r}.")
        _timeout(self.timeout, "timeout")
        if self.condition in ELEMENT_CONDITIONS:
            if self.selector is None:
                raise InvalidRequestError(f"wait_for({self.condition!r}) needs a selector.")
            _selector(self.selector)

    @property
    def element_selector(self) -> str | None:
        """The selector an element condition waits on (a page condition ignores any selector)."""
        return self.selector if self.condition in ELEMENT_CONDITIONS else None

    @property
    def wait_ms(self) -> float:
        """The timeout."""
        return self.timeout


@dataclass(frozen=True)
class Screenshot(BrowserAction[str]):
    """Capture the page (``full_page``: all of it) or a ``clip`` region; the result is the image in base64.

    ``format`` is 'png' or 'jpeg' ('jpg' is taken for 'jpeg'); ``quality`` (0-100) is for jpeg only;
    ``clip`` is ``{"x", "y", "width", "height"}`` in CSS pixels.
    """

    full_page: bool = True
    format: str = "png"
    clip: Mapping[str, float] | None = None
    quality: int | None = None

    name: ClassVar[str] = "screenshot"
    route: ClassVar[str] = "screenshot"

    def __post_init__(self) -> None:
        fmt = str(self.format).lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in ("png", "jpeg"):
            raise InvalidRequestError(f"format must be 'png' or 'jpeg'; got {self.format!r}.")
        quality = self.quality
        if quality is not None:
            if fmt != "jpeg":
                raise InvalidRequestError("quality applies to jpeg screenshots only.")
            if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
                raise InvalidRequestError("quality must be an integer from 0 to 100.")
        _set(self, "format", fmt)
        _set(self, "full_page", bool(self.full_page))
        if self.clip is not None:
            _set(self, "clip", _clip(self.clip))

    def parse_answer(self, payload: Any, session_id: str) -> str:
        """The base64 image of the answer."""
        if not isinstance(payload, dict) or not isinstance(payload.get("screenshot"), str):
            raise BackendError("The server's screenshot answer has no base64 'screenshot'.")
        return str(payload["screenshot"])


@dataclass(frozen=True)
class ExtractElements(BrowserAction[list[ExtractedElement]]):
    """Read the elements matching ``selector`` (default: headings, text, links, fields, images).

    ``attributes`` names the attributes to read ('text' and 'value' included); default: all of them.
    """

    selector: str | None = None
    attributes: Sequence[str] | None = None

    name: ClassVar[str] = "extract_elements"
    route: ClassVar[str] = "extract"

    def __post_init__(self) -> None:
        if self.selector is not None:
            _selector(self.selector)
        names = self.attributes
        if names is not None:
            if isinstance(names, str) or not all(isinstance(a, str) and a for a in names):
                raise InvalidRequestError("attributes must be a list of attribute names.")
            _set(self, "attributes", tuple(names))

    def parse_answer(self, payload: Any, session_id: str) -> list[ExtractedElement]:
        """The elements of the answer."""
        if not isinstance(payload, dict) or not isinstance(payload.get("elements"), list):
            raise BackendError("The server's extract answer has no 'elements' list.")
        try:
            return [ExtractedElement.model_validate(item) for item in payload["elements"]]
        except ValidationError as exc:
            raise BackendError(f"The server's extracted elements were not understood: {exc}") from None


@dataclass(frozen=True)
class ExtractContent(BrowserAction[PageContent]):
    """An LLM-friendly view of the current page: readable text, interactive elements, text anchors."""

    include_interactive: bool = True
    include_anchors: bool = True
    max_anchors: int = 50

    name: ClassVar[str] = "extract_content"
    route: ClassVar[str] = "content"

    def __post_init__(self) -> None:
        anchors = self.max_anchors
        if not isinstance(anchors, int) or isinstance(anchors, bool) or not 0 <= anchors <= 1000:
            raise InvalidRequestError("max_anchors must be an integer from 0 to 1000.")
        _set(self, "include_interactive", bool(self.include_interactive))
        _set(self, "include_anchors", bool(self.include_anchors))

    def parse_answer(self, payload: Any, session_id: str) -> PageContent:
        """The page content of the answer."""
        if not isinstance(payload, dict):
            raise BackendError("The server's content answer is not a JSON object.")
        known = {k: v for k, v in payload.items() if k in PageContent.model_fields}
        try:
            return PageContent.model_validate(known)
        except ValidationError as exc:
            raise BackendError(f"The server's page content was not understood: {exc}") from None


# -- value checks --------------------------------------------------------------------------------------


def _selector(selector: object) -> None:
    if not isinstance(selector, str) or not selector.strip():
        raise InvalidSelectorError("The selector must be a non-empty string, e.g. '#submit' or 'a.next'.")


def _timeout(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a number of milliseconds.")
    if not 0 < value <= MAX_TIMEOUT_MS:
        raise InvalidRequestError(f"{name} must be between 1 and {MAX_TIMEOUT_MS} milliseconds; got {value:g}.")


def _url(url: object) -> str:
    """The URL without surrounding blanks, when it has a scheme (whether the policy allows it is the engine's call)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequestError("url must be a non-empty string.")
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:  # an unclosed IPv6 bracket, say
        raise InvalidRequestError(f"{url!r} is not a valid URL ({exc}); check its syntax.") from None
    if not scheme or ("://" not in url and scheme not in ("about", "data")):
        raise InvalidRequestError(f"{url!r} has no scheme; use a full URL such as 'https://example.com/'.")
    return url


def _clip(clip: Mapping[str, float]) -> dict[str, float]:
    try:
        region = {k: float(clip[k]) for k in ("x", "y", "width", "height")}
    except (KeyError, TypeError, ValueError):
        raise InvalidRequestError(
            "clip must be {'x': ..., 'y': ..., 'width': ..., 'height': ...} in CSS pixels."
        ) from None
    if region["width"] <= 0 or region["height"] <= 0:
        raise InvalidRequestError("clip width and height must be positive.")
    return region
