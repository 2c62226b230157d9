"""The InstaVM browser routes (``/v1/browser/...``), served by the backend's browser capability.

Each interaction's body becomes its :mod:`~coderunner.browser.actions` action (``body.action()``, see
:mod:`coderunner.server.wire`), run with the backend's one ``browser_act``.

The server's backend drives the browser when it implements
:class:`~coderunner.browser.protocol.AsyncBrowserBackend` (detected with ``isinstance``); otherwise
every browser route answers 501 with a JSON explanation. Errors go through the app's one
code -> status handler: element not found 404, timeout 408, refused destination 403, a crashed
browser 410, an unloadable page 502 (see :data:`coderunner.browser.errors.HTTP_STATUS`).

Choices of our own, where the contract is silent:

* ``navigate`` without ``session_id`` (InstaVM's local mode) uses the server's default browser
  session, created on first use and replaced after it was closed or expired.
* ``content`` with ``url`` opens that URL first (in ``session_id``, or in the default session when
  none is given); with neither ``url`` nor ``session_id`` it reads the default session's page.
* ``DELETE /v1/browser/sessions/{id}`` answers 200 also when the session was already closed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coderunner.browser.actions import Navigate
from coderunner.browser.models import BrowserActionResult, BrowserSessionInfo, PageContent
from coderunner.browser.protocol import AsyncBrowserBackend
from coderunner.errors import InvalidRequestError, UnsupportedOperationError
from coderunner.server.routing import json_model, state_of
from coderunner.server.state import ServerState
from coderunner.server.wire import (
    BrowserActionRequest,
    BrowserClickRequest,
    BrowserCloseResponse,
    BrowserContentRequest,
    BrowserExtractRequest,
    BrowserExtractResponse,
    BrowserFillRequest,
    BrowserNavigateRequest,
    BrowserScreenshotRequest,
    BrowserScreenshotResponse,
    BrowserScrollRequest,
    BrowserSessionList,
    BrowserSessionRequest,
    BrowserTypeRequest,
    BrowserWaitRequest,
    ErrorBody,
)

__all__ = ["browser_of", "router"]

router = APIRouter(tags=["InstaVM-compatible: browser"])

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Invalid selector or request, or the element cannot do that."},
    401: {"model": ErrorBody, "description": "Missing or wrong API key."},
    403: {"model": ErrorBody, "description": "The browser's egress policy refused the destination."},
    404: {"model": ErrorBody, "description": "Unknown or closed browser session, or no element matches."},
    408: {
        "model": ErrorBody,
        "description": "The element, page or condition took longer than the timeout, or the body arrived too slowly.",
    },
    410: {"model": ErrorBody, "description": "The browser crashed; the session is gone."},
    413: {"model": ErrorBody, "description": "The request body is larger than the server's limit."},
    422: {"model": ErrorBody, "description": "A field has the wrong type or is out of range."},
    429: {"model": ErrorBody, "description": "Too many browser sessions are open (CODERUNNER_BROWSER_MAX_SESSIONS)."},
    501: {"model": ErrorBody, "description": "The server's backend has no browser."},
    502: {"model": ErrorBody, "description": "The page could not be loaded."},
    503: {"model": ErrorBody, "description": "No browser could be started (Chromium missing or failing)."},
}


def browser_of(state: ServerState) -> AsyncBrowserBackend:
    """The server backend's browser capability.

    Raises:
        UnsupportedOperationError: The backend cannot drive a browser (answered as 501).
    """
    backend = state.backend
    if not isinstance(backend, AsyncBrowserBackend):
        raise UnsupportedOperationError(
            f"This server's backend ({type(backend).__name__}) has no browser capability. Serve with a backend "
            "that has one (e.g. CODERUNNER_BACKEND=inprocess with coderunner[browser] and Chromium installed)."
        )
    return backend


# -- sessions --------------------------------------------------------------------------------------


@router.post("/v1/browser/sessions", response_model=BrowserSessionInfo, responses=_ERRORS)
async def create_browser_session(body: BrowserSessionRequest, request: Request) -> Response:
    """Open an isolated browser session (own cookies, storage and pages)."""
    browser = browser_of(state_of(request))
    info = await browser.browser_create_session(
        body.viewport_width, body.viewport_height, body.user_agent, idle_timeout=body.idle_timeout
    )
    return json_model(info)


@router.get("/v1/browser/sessions", response_model=BrowserSessionList, responses=_ERRORS)
async def list_browser_sessions(request: Request) -> Response:
    """Every live browser session."""
    sessions = await browser_of(state_of(request)).browser_list_sessions()
    return json_model(BrowserSessionList(sessions=sessions, count=len(sessions)))


@router.get("/v1/browser/sessions/{session_id}", response_model=BrowserSessionInfo, responses=_ERRORS)
async def get_browser_session(session_id: str, request: Request) -> Response:
    """Describe a browser session (404 when unknown or closed)."""
    return json_model(await browser_of(state_of(request)).browser_get_session(session_id))


@router.delete("/v1/browser/sessions/{session_id}", response_model=BrowserCloseResponse, responses=_ERRORS)
async def close_browser_session(session_id: str, request: Request) -> Response:
    """Close a browser session; 200 also when it was already closed."""
    state = state_of(request)
    await browser_of(state).browser_close_session(session_id)
    if session_id == state.default_browser_session_id:
        state.default_browser_session_id = None
    return json_model(BrowserCloseResponse(session_id=session_id))


# -- interactions ----------------------------------------------------------------------------------


async def _act(request: Request, session_id: str, body: BrowserActionRequest) -> Any:
    """Run the body's action in ``session_id`` (the backend's browser checked first: 501 before 400)."""
    browser = browser_of(state_of(request))
    return await browser.browser_act(session_id, body.action())


@router.post("/v1/browser/interactions/navigate", response_model=BrowserActionResult, responses=_ERRORS)
async def navigate(body: BrowserNavigateRequest, request: Request) -> Response:
    """Open a URL and wait for its load event; without ``session_id``, in the default browser session."""
    state = state_of(request)
    browser = browser_of(state)
    action = body.action()
    sid = body.session_id or await state.default_browser_session(browser)
    return json_model(await browser.browser_act(sid, action))


@router.post("/v1/browser/interactions/click", response_model=BrowserActionResult, responses=_ERRORS)
async def click(body: BrowserClickRequest, request: Request) -> Response:
    """Click the first element matching the selector."""
    return json_model(await _act(request, body.session_id, body))


@router.post("/v1/browser/interactions/type", response_model=BrowserActionResult, responses=_ERRORS)
async def type_text(body: BrowserTypeRequest, request: Request) -> Response:
    """Type text key by key into an element."""
    return json_model(await _act(request, body.session_id, body))


@router.post("/v1/browser/interactions/fill", response_model=BrowserActionResult, responses=_ERRORS)
async def fill(body: BrowserFillRequest, request: Request) -> Response:
    """Replace the value of a form field."""
    return json_model(await _act(request, body.session_id, body))


@router.post("/v1/browser/interactions/scroll", response_model=BrowserActionResult, responses=_ERRORS)
async def scroll(body: BrowserScrollRequest, request: Request) -> Response:
    """Scroll an element into view, or the page to x/y."""
    return json_model(await _act(request, body.session_id, body))


@router.post("/v1/browser/interactions/wait", response_model=BrowserActionResult, responses=_ERRORS)
async def wait_for(body: BrowserWaitRequest, request: Request) -> Response:
    """Wait for visible/hidden (with a selector), load or networkidle; 408 when it times out."""
    return json_model(await _act(request, body.session_id, body))


@router.post("/v1/browser/interactions/screenshot", response_model=BrowserScreenshotResponse, responses=_ERRORS)
async def screenshot(body: BrowserScreenshotRequest, request: Request) -> Response:
    """Capture the page, base64-encoded in ``screenshot``."""
    image = await _act(request, body.session_id, body)
    return json_model(BrowserScreenshotResponse(session_id=body.session_id, screenshot=image, format=body.format))


@router.post("/v1/browser/interactions/extract", response_model=BrowserExtractResponse, responses=_ERRORS)
async def extract_elements(body: BrowserExtractRequest, request: Request) -> Response:
    """Tag, text and attributes of the elements matching the selector."""
    elements = await _act(request, body.session_id, body)
    return json_model(BrowserExtractResponse(session_id=body.session_id, elements=elements, count=len(elements)))


@router.post("/v1/browser/interactions/content", response_model=PageContent, responses=_ERRORS)
async def extract_content(body: BrowserContentRequest, request: Request) -> Response:
    """Readable text, interactive elements and content anchors; with ``url``, of that page."""
    state = state_of(request)
    browser = browser_of(state)
    action = body.action()
    sid = body.session_id
    if sid is None:
        if body.url is None and state.default_browser_session_id is None:
            raise InvalidRequestError(
                "Send 'session_id' (a browser session) or 'url' (read that page in the server's default session)."
            )
        sid = await state.default_browser_session(browser)
    if body.url is not None:
        await browser.browser_act(sid, Navigate(body.url, body.wait_timeout))
    return json_model(await browser.browser_act(sid, action))
