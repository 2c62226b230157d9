"""What every router shares: the server state of a request, JSON answers of wire models, the OpenAPI error statuses."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from coderunner.server.state import ServerState
from coderunner.server.wire import ErrorBody, to_json

__all__ = ["ERROR_DESCRIPTIONS", "error_responses", "json_model", "state_of"]

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: malformed JSON, or a rule the schema cannot state (a path outside the session "
    "directory, an empty code string, an unknown language alias); the detail names the rule.",
    401: "Missing or wrong API key (X-API-Key).",
    403: "Refused: a web page's request to a server without an API key, or a destination the browser may not load.",
    404: "Unknown or expired session, task or file.",
    408: "The request body arrived too slowly (the server's --body-timeout), or a browser wait timed out.",
    413: "The request body is larger than the server's limit (16 KiB for a request that carries its API key "
    "in the body).",
    422: "A field has the wrong type, is missing or is out of the documented range; the detail names it.",
    429: "The server is at capacity (sessions, jobs or browser sessions); retry after Retry-After seconds.",
    501: "The server's backend cannot do this (e.g. it has no browser).",
    502: "The server's backend failed, or the page could not be loaded.",
    503: "The server's backend is unavailable right now (retryable).",
}
"""What each error status means, for the OpenAPI ``responses`` of every route."""


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (each an :class:`ErrorBody`)."""
    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


def state_of(request: Request) -> ServerState:
    """The server state stored on the app by the lifespan."""
    state: ServerState = request.app.state.coderunner
    return state


def json_model(model: BaseModel, status_code: int = 200) -> Response:
    """Serialise a pydantic model straight to a JSON response (skips FastAPI's re-validation)."""
    return Response(to_json(model), status_code=status_code, media_type="application/json")
