"""Frozen result models of the browser actions, with read-only dict access like the InstaVM SDK's dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coderunner.models import _DictAccess

__all__ = [
    "BrowserActionResult",
    "BrowserSessionInfo",
    "ContentAnchor",
    "ExtractedElement",
    "InteractiveElement",
    "PageContent",
    "ReadableContent",
    "Viewport",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Viewport(_Frozen, _DictAccess):
    """A page's size in CSS pixels."""

    width: int = Field(description="Width in CSS pixels.")
    height: int = Field(description="Height in CSS pixels.")


class BrowserSessionInfo(_Frozen, _DictAccess):
    """A browser session: one isolated browser context (own cookies, storage and pages)."""

    session_id: str = Field(description="Opaque id used in every browser call on the session.")
    status: Literal["active"] = Field(default="active", description="'active' while the session exists.")
    viewport: Viewport = Field(description="The page size the session was created with.")
    user_agent: str | None = Field(default=None, description="The User-Agent override, if one was given.")
    current_url: str = Field(default="about:blank", description="URL of the page the session shows now.")
    created_at: datetime = Field(description="When the session was created (UTC).")
    last_activity_at: datetime = Field(description="When the session last ran an action (UTC).")
    idle_timeout: float | None = Field(default=None, description="Seconds of inactivity after which it is closed.")
    backend: str = Field(default="", description="Name of the backend whose browser runs it.")


class BrowserActionResult(_Frozen, _DictAccess):
    """What an action (navigate, click, type, fill, scroll, wait_for) did."""

    success: bool = Field(default=True, description="Always True: a failed action raises instead.")
    action: str = Field(description="The action: 'navigate', 'click', 'type', 'fill', 'scroll' or 'wait_for'.")
    session_id: str = Field(description="The browser session it ran in.")
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="Action details. Always 'url' (the page's URL afterwards); navigate adds 'title' and "
        "'status' (HTTP status, None for non-HTTP pages) and 'blocked_requests' when the egress policy "
        "refused some of the page's resources; scroll gives 'x' and 'y'.",
    )
    warnings: list[str] = Field(default_factory=list, description="Things the caller should know.")
    elapsed_ms: float = Field(default=0.0, description="Milliseconds the action took.")


class ExtractedElement(_Frozen, _DictAccess):
    """One element matched by extract_elements."""

    tag: str = Field(description="Lower-case tag name, e.g. 'a'.")
    text: str = Field(default="", description="The element's visible text (whitespace collapsed, capped).")
    attributes: dict[str, str | None] = Field(
        default_factory=dict,
        description="Requested attributes (all of them when none were named). 'href' and 'src' are absolute "
        "URLs; 'text' is the visible text and 'value' the current form value; a missing attribute is None.",
    )


class ReadableContent(_Frozen, _DictAccess):
    """The page's main text, without scripts, styles or hidden elements."""

    title: str = Field(default="", description="The document title.")
    content: str = Field(default="", description="Visible text of the main content (or the whole body), capped.")
    url: str = Field(default="", description="The page's URL.")


class InteractiveElement(_Frozen, _DictAccess):
    """A visible element an agent can act on, with a CSS selector that finds exactly it."""

    tag: str = Field(description="Lower-case tag name: 'a', 'button', 'input', 'select', 'textarea', ...")
    selector: str = Field(description="A CSS selector matching this element only, usable with click/fill/type.")
    text: str = Field(default="", description="Its label: text, value, aria-label, placeholder or title.")
    type: str | None = Field(default=None, description="The input type or ARIA role, when it has one.")
    href: str | None = Field(default=None, description="Absolute link target, for links.")
    name: str | None = Field(default=None, description="The form field name, for form fields.")
    placeholder: str | None = Field(default=None, description="The placeholder text, for text fields.")
    disabled: bool = Field(default=False, description="True when the element is disabled.")


class ContentAnchor(_Frozen, _DictAccess):
    """A snippet of visible text mapped to the selector of the element that shows it."""

    text: str = Field(description="The snippet (capped).")
    selector: str = Field(description="A CSS selector matching the element that contains the snippet.")
    tag: str = Field(default="", description="Lower-case tag name of that element.")


class PageContent(_Frozen, _DictAccess):
    """An LLM-friendly view of the page: readable text, what can be clicked or typed into, and anchors."""

    readable_content: ReadableContent = Field(description="Title, main text and URL.")
    interactive_elements: list[InteractiveElement] = Field(
        default_factory=list, description="Visible links, buttons and form fields (when requested), capped."
    )
    content_anchors: list[ContentAnchor] = Field(
        default_factory=list, description="Text snippets with selectors (when requested), up to max_anchors."
    )
    truncated: bool = Field(default=False, description="True when the text or an element list was cut to its cap.")
