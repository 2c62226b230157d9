"""The FastAPI app behind ``coderunner serve``: ``create_app()`` wires the backend, the job store and the routes.

Errors: every error answer is JSON ``{"detail": "...", "code": "...", "retryable": bool}``. One
handler maps :class:`~coderunner.errors.CodeRunnerError` codes to HTTP statuses
(:data:`STATUS_FOR_CODE`); malformed JSON is a 400 and schema violations a 422, each saying which
field to fix; anything unexpected is a JSON 500 and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from coderunner.errors import HTTP_STATUS, CodeRunnerError, ConfigurationError, MissingDependencyError

try:
    import fastapi  # noqa: F401
except ImportError:  # say which extra to install rather than a bare ImportError
    raise MissingDependencyError("fastapi", "server", "The coderunner REST server") from None

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from coderunner._version import __version__
from coderunner.backend import AsyncBackend, create_async_backend
from coderunner.browser.errors import HTTP_STATUS as BROWSER_HTTP_STATUS
from coderunner.config import Settings
from coderunner.server import routes_browser, routes_instavm, routes_native
from coderunner.server.job_store import JobStore
from coderunner.server.jobs import JobManager
from coderunner.server.middleware import DEFAULT_ALLOWED_HOSTS, DEFAULT_BODY_TIMEOUT, OPEN_PATHS, GatewayMiddleware
from coderunner.server.state import ServerState

__all__ = ["DEFAULT_MAX_BODY_BYTES", "STATUS_FOR_CODE", "create_app", "default_db_path", "http_status_for"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
"""Largest request body accepted by default (uploads included): 100 MiB."""
DEFAULT_MAX_JOBS = 4
"""Jobs running at once by default; the rest wait as pending."""
DEFAULT_JOB_RETENTION = 7 * 86_400.0
"""Seconds finished job records are kept by default (one week)."""

STATUS_FOR_CODE: dict[str, int] = {
    **HTTP_STATUS,
    # element_not_found 404, browser_timeout 408, destination_blocked 403, browser_session_lost 410, ...
    **BROWSER_HTTP_STATUS,
}
"""HTTP status for each :attr:`CodeRunnerError.code`: the core tree's (:data:`coderunner.errors.HTTP_STATUS`)
and the browser's; codes not listed give 500."""

_RETRY_AFTER = "5"


def http_status_for(error: CodeRunnerError) -> int:
    """The HTTP status the server answers for ``error``."""
    return STATUS_FOR_CODE.get(error.code, 500)


def default_db_path() -> Path:
    """The job database used when none is given: ``jobs.sqlite3`` in the user data directory."""
    import platformdirs

    return Path(platformdirs.user_data_dir("coderunner", appauthor=False)) / "jobs.sqlite3"


# -- error handlers --------------------------------------------------------------------------------


def _error(status: int, detail: str, code: str, retryable: bool = False, **extra: Any) -> Response:
    headers = {"Retry-After": _RETRY_AFTER} if retryable and status in (429, 503) else None
    # ASCII-escaped: a detail quoting the caller's input may hold lone surrogates, which UTF-8 refuses.
    body = json.dumps({"detail": detail, "code": code, "retryable": retryable, **extra})
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def _coderunner_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CodeRunnerError)
    status = http_status_for(exc)
    detail = exc.message
    if exc.code == "authentication":
        detail = f"The server's backend rejected the server's credentials: {detail}"
    return _error(status, detail, exc.code, exc.retryable)


def _location(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form", "header")]
    return ".".join(parts)


def _describe(errors: Sequence[Any]) -> tuple[int, str, list[dict[str, Any]]]:
    """Turn pydantic errors into (status, one readable sentence, JSON-safe list)."""
    clean = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in errors
    ]
    for e in errors:
        if e.get("type") == "json_invalid":
            position = e.get("loc", ("body", "?"))[-1]
            reason = (e.get("ctx") or {}).get("error", "invalid JSON")
            return 400, f"Malformed JSON body at character {position}: {reason}. Send a valid JSON object.", clean
    parts = []
    for e in errors:
        loc = _location(e.get("loc", ()))
        msg = str(e.get("msg", "invalid value"))
        if e.get("type") == "missing":
            parts.append(f"'{loc}' is required" if loc else "the request body is missing: send a JSON object")
        elif not loc and e.get("type") in ("model_attributes_type", "dict_type"):
            parts.append("the body must be a JSON object sent with Content-Type: application/json")
        elif e.get("type") == "value_error":
            parts.append(msg.removeprefix("Value error, "))
        else:
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r:.60})"
            parts.append(f"'{loc}': {msg}{shown}" if loc else f"{msg}{shown}")
    return 422, "Invalid request: " + "; ".join(parts) + ".", clean


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    status, detail, clean = _describe(exc.errors())
    return _error(status, detail, "invalid_request", errors=clean)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HTTP_CODES = {
    400: "invalid_request",
    401: "authentication",
    404: "route_not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "invalid_request",
}


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path.

    Starlette's 405 names only the methods of the first route whose path matched, but one path
    often has several routes (``GET /jobs`` and ``POST /jobs``).
    """
    methods: set[str] = set()
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            methods.add(method)
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route {request.method} {request.url.path}. See /docs for the API."
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = (
            f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}. "
            "See /docs for the API."
        )
    response = _error(exc.status_code, detail, _HTTP_CODES.get(exc.status_code, "error"))
    for name, value in headers.items():
        response.headers[name] = value
    return response


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return _error(
        500,
        f"Internal server error ({type(exc).__name__}: {exc}). The server keeps running; please report this.",
        "error",
    )


# -- MCP -------------------------------------------------------------------------------------------


def _mcp_http_app(backend: AsyncBackend) -> Any | None:
    """The MCP server's streamable-HTTP app, if ``coderunner.server.mcp`` provides ``http_app(backend)``."""
    if importlib.util.find_spec("coderunner.server.mcp") is None:
        return None
    try:
        module = importlib.import_module("coderunner.server.mcp")
    except MissingDependencyError as exc:
        log.info("MCP over HTTP is off: %s", exc.message)
        return None
    factory = getattr(module, "http_app", None)
    if factory is None:
        log.info("MCP over HTTP is off: coderunner.server.mcp has no http_app(backend)")
        return None
    return factory(backend)


# -- the app ---------------------------------------------------------------------------------------


def _document_api_key(app: FastAPI, *, required: bool) -> None:
    """Declare the X-API-Key scheme in the OpenAPI document, so the /docs explorer can send it.

    The key is enforced by the gateway middleware, not per route, so FastAPI cannot infer this.
    """
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["ApiKey"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            if required:
                schema["security"] = [{"ApiKey": []}]
                # The open paths (the health check) need no key: say so, or clients would send it for nothing.
                for path in OPEN_PATHS:
                    for operation in schema.get("paths", {}).get(path, {}).values():
                        operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    backend: AsyncBackend | None = None,
    backend_options: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    db_path: str | Path | None = None,
    max_jobs: int = DEFAULT_MAX_JOBS,
    job_retention: float | None = DEFAULT_JOB_RETENTION,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cors_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
    mcp: bool = True,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
) -> FastAPI:
    """Build the REST server.

    Args:
        settings: Runner settings (default: from ``CODERUNNER_*`` variables).
        backend: The async backend to serve; default: ``create_async_backend(settings.backend)``,
            built at startup. The app closes it at shutdown either way.
        backend_options: Options for the backend factory when ``backend`` is None (e.g. api_key for 'instavm').
        api_key: Key clients must send in ``X-API-Key`` (None: no auth; bind to loopback only).
        db_path: Job database file (``":memory:"`` for none kept); default :func:`default_db_path`.
        max_jobs: Jobs (and async tasks) running at once; the rest wait as pending.
        job_retention: Seconds finished job records are kept (None: forever).
        max_body_bytes: Largest request body accepted (uploads included); bigger ones get 413.
        cors_origins: Origins allowed by CORS; empty (the default) sends no CORS headers. Without an API
            key, requests from other web origins are refused (403).
        allowed_hosts: Host names a server without an API key answers to, besides IP addresses,
            ``localhost`` and ``coderunner.local`` (DNS-rebinding protection).
        mcp: Serve MCP (streamable HTTP) at ``/mcp`` when ``coderunner.server.mcp`` provides ``http_app``;
            it sits behind the same API-key check as every other route.
        body_timeout: Seconds a client has to send a request body, plus 1 s per 64 KiB received; a
            slower body gets 408 (None: no limit). The headers' limit is the protocol's
            (:func:`~coderunner.server.middleware.header_timeout_protocol`).

    Returns:
        The FastAPI app; serve it with uvicorn (``coderunner serve`` does).
    """
    settings = settings or Settings.from_env()
    if max_jobs < 1:
        raise ConfigurationError("max_jobs must be at least 1.")
    if max_body_bytes < 1:
        raise ConfigurationError("max_body_bytes must be positive.")
    if body_timeout is not None and not body_timeout > 0:
        raise ConfigurationError("body_timeout must be a positive number of seconds (or None for no limit).")
    database = str(db_path) if db_path is not None else str(default_db_path())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = backend
        if served is None:
            # Building a backend blocks (engine thread, first kernel): keep the loop free meanwhile.
            served = await asyncio.to_thread(
                create_async_backend, settings.backend, settings, **dict(backend_options or {})
            )
        jobs = JobManager(JobStore(database), served, settings, max_jobs=max_jobs, retention=job_retention)
        try:
            await jobs.start()
        except BaseException:
            await served.aclose()
            raise
        state = ServerState(backend=served, settings=settings, jobs=jobs, api_key=api_key or None)
        jobs.on_result = state.record
        app.state.coderunner = state
        try:
            async with contextlib.AsyncExitStack() as stack:
                sub = _mcp_http_app(served) if mcp else None
                if sub is not None:
                    # An exact route, not a mount: the gateway strips trailing slashes, so a mount's
                    # "/mcp" -> "/mcp/" redirect would loop.
                    if not any(getattr(r, "path", None) == "/mcp" for r in app.router.routes):
                        app.router.routes.append(Route("/mcp", endpoint=sub))
                    # Starlette does not run a sub-app's lifespan; the MCP session manager needs it.
                    await stack.enter_async_context(sub.router.lifespan_context(sub))
                yield
        finally:
            await jobs.close()
            await state.aclose()
            await served.aclose()

    app = FastAPI(
        title="coderunner",
        version=__version__,
        summary="Run code for AI agents in persistent sessions; InstaVM-compatible.",
        description=(
            "Runs Python, bash and JavaScript in persistent sessions. The `InstaVM-compatible` routes speak the "
            "InstaVM SDK's wire protocol; the rest is coderunner's own API (sessions, files, jobs). When the "
            "server has an API key, send it in the `X-API-Key` header (only `/health` and these docs are open)."
        ),
        lifespan=lifespan,
    )
    _document_api_key(app, required=bool(api_key))
    app.add_exception_handler(CodeRunnerError, _coderunner_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(routes_instavm.router)
    app.include_router(routes_browser.router)
    app.include_router(routes_native.router)
    app.add_middleware(
        GatewayMiddleware,
        api_key=api_key or None,
        max_body_bytes=max_body_bytes,
        allowed_origins=frozenset(cors_origins),
        allowed_hosts=DEFAULT_ALLOWED_HOSTS | {h.lower() for h in allowed_hosts},
        body_timeout=body_timeout,
    )
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        # Added last, so it runs first: preflight requests carry no API key.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    return app
