"""The MCP server: the one :mod:`coderunner.tools` list served over stdio and streamable HTTP (official ``mcp`` SDK).

Built on the SDK's low-level ``Server`` (mcp 2.x) so each tool's ``inputSchema`` is exactly
the spec's JSON schema. The tools are session-aware: every tool takes an optional
``session_id``, and ``start_session``/``close_session`` create and end isolated sessions.
Calls without ``session_id`` share the runner's default session (MCP 2026-era connections
are stateless, so there is no per-connection session to key one on); clients that need
isolation from each other call ``start_session``. Tool failures (bad arguments, errors in
the code, coderunner errors) are MCP tool errors (``isError: true``) with readable text;
images are ``ImageContent``.

Entry points:

``build_mcp_server(runner=None, *, name="coderunner", max_chars=20000, browser=None) -> mcp.server.lowlevel.Server``
    ``runner`` is an :class:`~coderunner.client.AsyncCodeRunner` or
    :class:`~coderunner.client.CodeRunner` (used as is, not closed), an
    :class:`~coderunner.backend.AsyncBackend`/``Backend`` (wrapped in a runner that closes its
    own sessions, not the backend), a zero-argument factory returning a runner (called when the
    server starts, closed when it stops), a backend name such as ``"docker"``, or None
    (``AsyncCodeRunner()`` configured from the ``CODERUNNER_*`` environment variables).

``mcp_http_app(runner=None, *, name="coderunner", json_response=False, stateless=False, allowed_hosts=None,
allowed_origins=None, session_idle_timeout=1800.0, max_chars=20000) -> starlette.applications.Starlette``
    (also exported as ``http_app``) An ASGI app serving MCP streamable HTTP on every path it
    receives, for the REST server to attach at ``/mcp``: either ``app.mount("/mcp", sub)`` (serves
    ``/mcp/``; Starlette redirects ``/mcp`` there) or, for a host that strips trailing slashes
    before routing, ``app.router.routes.append(Route("/mcp", endpoint=sub))`` (serves ``/mcp``).

    Lifespan requirement: the SDK's ``StreamableHTTPSessionManager`` must be running while
    requests are served, and Starlette does NOT run a mounted app's lifespan. The host enters
    it from its own lifespan: ``async with sub.router.lifespan_context(sub): yield``. Each
    entry starts a fresh session manager, so the app can be started more than once
    (tests). Requests arriving while it is not running get a 503 JSON error saying so. Used
    as a top-level app (``uvicorn.run(mcp_http_app())``) it runs its own lifespan.

    ``allowed_hosts``/``allowed_origins`` turn on the SDK's DNS-rebinding protection
    (Host/Origin checks, e.g. ``["127.0.0.1:*", "localhost:*"]``); by default it is off and
    the host app is responsible for access control (the REST server's API key middleware).

``run_stdio(runner=None, *, backend=None, name="coderunner")``
    Serve MCP over stdin/stdout until the client disconnects (``coderunner mcp``). The SDK
    moves the process's own fd 1 to stderr while serving, so stray prints from kernels cannot
    corrupt the protocol stream.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from coderunner.errors import MissingDependencyError
from coderunner.tools import MAX_TOOL_TEXT_CHARS, ToolResult, ToolSpec, adispatch, get_tool_specs

try:
    import anyio
    import mcp_types as types  # split out of `mcp` in 2.x; its absence means mcp 1.x (or none)
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.types import Receive, Scope, Send
except ImportError as exc:  # the [server] extra is optional; mcp<2 has a different server API
    raise MissingDependencyError("mcp>=2", "server", "The MCP server") from exc

__all__ = ["build_mcp_server", "http_app", "mcp_http_app", "run_stdio", "serve_stdio", "to_call_tool_result"]

log = logging.getLogger(__name__)

RunnerSource = Any
"""A runner, a backend, a zero-argument runner factory, a backend name, or None (see the module docstring)."""

INSTRUCTIONS = (
    "coderunner runs Python, bash and JavaScript code in persistent sessions. Variables, imports, the working "
    "directory and files persist between calls, so build on earlier results. Plot with matplotlib and call "
    "plt.show() to get images back. Calls without session_id share the default session; call start_session "
    "for an isolated one and pass its id as session_id."
)


def to_call_tool_result(result: ToolResult) -> types.CallToolResult:
    """Convert a :class:`ToolResult` into an MCP ``CallToolResult`` (text, then images; ``isError`` on failure)."""
    content: list[Any] = [types.TextContent(type="text", text=result.text)]
    content.extend(types.ImageContent(type="image", data=img.data, mime_type=img.mime_type) for img in result.images)
    return types.CallToolResult(content=content, is_error=result.is_error)


def _mcp_tool(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        description=spec.description,
        input_schema=spec.parameters,
        annotations=types.ToolAnnotations(read_only_hint=spec.read_only, open_world_hint=not spec.read_only),
    )


async def _close(runner: Any) -> None:
    closer = getattr(runner, "aclose", None)
    if closer is not None and inspect.iscoroutinefunction(closer):
        await closer()
    elif hasattr(runner, "close"):
        await anyio.to_thread.run_sync(runner.close)


@contextlib.asynccontextmanager
async def _runner_scope(source: RunnerSource) -> AsyncIterator[Any]:
    """Yield the runner the tools use, creating (and afterwards closing) it when the source asks for that."""
    from coderunner.backend import AsyncBackend, Backend
    from coderunner.client import AsyncCodeRunner, CodeRunner

    if isinstance(source, (AsyncCodeRunner, CodeRunner)):
        yield source  # the caller's runner: the caller closes it
        return
    if isinstance(source, (AsyncBackend, Backend)):
        # The caller owns the backend; the runner only closes the sessions it created.
        if inspect.iscoroutinefunction(getattr(source, "execute", None)):
            runner: Any = AsyncCodeRunner(backend=source)  # type: ignore[arg-type]
        else:
            runner = CodeRunner(backend=source)  # type: ignore[arg-type]
    elif source is None or isinstance(source, str):
        runner = AsyncCodeRunner(backend=source)  # a backend name, or CODERUNNER_BACKEND
    elif callable(source):
        runner = source()
        if inspect.isawaitable(runner):
            runner = await runner
    else:
        raise TypeError(
            f"Expected a runner, a backend, a runner factory, a backend name or None, not {type(source).__name__}."
        )
    try:
        yield runner
    finally:
        await _close(runner)


def _browser_by_default(source: RunnerSource) -> bool:
    """List the browser tools when the backend has the browser capability and can drive a browser.

    A backend given directly is checked with ``isinstance``; otherwise the configured backend's name
    decides (a runner's backend may not exist yet, and building it to look would start an engine).
    Only the in-process browser runs here and needs the ``playwright`` package on this machine; the
    Docker backend's runs in its container, the InstaVM backend's on the server.
    """
    from coderunner.backend import AsyncBackend, Backend
    from coderunner.browser.protocol import AsyncBrowserBackend, BrowserBackend
    from coderunner.config import Settings

    if isinstance(source, (AsyncBackend, Backend)):
        name = getattr(source, "name", "")
        capable = isinstance(source, (AsyncBrowserBackend, BrowserBackend))
    else:
        settings = getattr(source, "settings", None)
        name = source if isinstance(source, str) else getattr(settings, "backend", None) or Settings.from_env().backend
        capable = True
    if not capable:
        return False
    return name != "inprocess" or importlib.util.find_spec("playwright") is not None


def build_mcp_server(
    runner: RunnerSource = None,
    *,
    name: str = "coderunner",
    max_chars: int = MAX_TOOL_TEXT_CHARS,
    browser: bool | None = None,
) -> Server[Any]:
    """Build the MCP server exposing every coderunner tool, with session support.

    Args:
        runner: What runs the code (see the module docstring); created in the server's
            lifespan when it is a factory or None, and closed when the server stops.
        name: The server name reported to clients.
        max_chars: Cap on each tool result's text.
        browser: Also expose the browser tools (``browser_navigate``, ...,
            ``navigate_and_get_all_visible_text``). None (the default): when the ``playwright`` package
            is installed (``coderunner[browser]``), unless ``runner`` is a backend without the browser
            capability; listing them starts no browser.

    Returns:
        An ``mcp.server.lowlevel.Server``; run it with :func:`serve_stdio` or :func:`mcp_http_app`,
        or any SDK transport (``server.run(read, write, server.create_initialization_options())``).
    """
    from coderunner._version import __version__

    if browser is None:
        browser = _browser_by_default(runner)
    specs = get_tool_specs(sessions=True, browser=browser)
    tools = [_mcp_tool(spec) for spec in specs]
    schemas = {spec.name: spec.parameters for spec in specs}

    @contextlib.asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[Any]:
        async with _runner_scope(runner) as active:
            yield active

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        result = await adispatch(
            ctx.lifespan_context, params.name, params.arguments or {}, specs=specs, max_chars=max_chars
        )
        if result.is_error:
            log.debug("tool %s returned an error: %s", params.name, result.text[:200])
        return to_call_tool_result(result)

    return Server(
        name,
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        get_tool_input_schema=schemas.get,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def serve_stdio(runner: RunnerSource = None, *, backend: str | None = None, name: str = "coderunner") -> None:
    """Serve MCP over this process's stdin/stdout until the client disconnects (async form of :func:`run_stdio`)."""
    server = build_mcp_server(backend if runner is None and backend else runner, name=name)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def run_stdio(runner: RunnerSource = None, *, backend: str | None = None, name: str = "coderunner") -> None:
    """Serve MCP over stdin/stdout until the client disconnects (the ``coderunner mcp`` command).

    Args:
        runner: See :func:`build_mcp_server`; default: an ``AsyncCodeRunner`` configured from the
            ``CODERUNNER_*`` environment variables, closed on exit.
        backend: A backend name overriding ``CODERUNNER_BACKEND`` when ``runner`` is None
            (``coderunner mcp --backend docker``).
        name: The server name reported to clients.
    """
    if not logging.getLogger().handlers:
        # stdout is the protocol channel: anything logged must go to stderr.
        logging.basicConfig(level=logging.WARNING, format="coderunner-mcp: %(levelname)s %(name)s: %(message)s")
    anyio.run(functools.partial(serve_stdio, runner, backend=backend, name=name))


class _Endpoint:
    """ASGI endpoint forwarding every request to the session manager of the current lifespan."""

    def __init__(self) -> None:
        self.manager: StreamableHTTPSessionManager | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = self.manager
        if manager is None:
            body = json.dumps(
                {
                    "detail": "The MCP endpoint is not running: the host app must enter the MCP app's lifespan "
                    "(async with mcp_app.router.lifespan_context(mcp_app): ...).",
                    "code": "backend_unavailable",
                }
            ).encode()
            await send(
                {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await manager.handle_request(scope, receive, send)


def mcp_http_app(
    runner: RunnerSource = None,
    *,
    name: str = "coderunner",
    json_response: bool = False,
    stateless: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    allowed_origins: Sequence[str] | None = None,
    session_idle_timeout: float | None = 1800.0,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
) -> Starlette:
    """Build the ASGI app serving MCP over streamable HTTP at its root, to be mounted (e.g. at ``/mcp``).

    The host must run the returned app's lifespan (``async with app.router.lifespan_context(app)``)
    for as long as it serves requests; see the module docstring.

    Args:
        runner: See :func:`build_mcp_server` (the REST server passes its ``AsyncBackend``).
        name: The server name reported to clients.
        json_response: Answer with JSON bodies instead of SSE streams.
        stateless: No MCP transport sessions (every request stands alone).
        allowed_hosts: Enable DNS-rebinding protection, accepting these Host values ("host:*" for any port).
        allowed_origins: Origins accepted when protection is on (default: none but same-origin requests).
        session_idle_timeout: Seconds after which an idle MCP transport session is dropped (None: never).
        max_chars: Cap on each tool result's text.
    """
    server = build_mcp_server(runner, name=name, max_chars=max_chars)
    security = None
    if allowed_hosts is not None:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(allowed_hosts),
            allowed_origins=list(allowed_origins or ()),
        )
    endpoint = _Endpoint()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A manager runs only once, so every lifespan gets a new one.
        manager = StreamableHTTPSessionManager(
            app=server,
            json_response=json_response,
            stateless=stateless,
            security_settings=security,
            session_idle_timeout=None if stateless else session_idle_timeout,
        )
        async with manager.run():
            endpoint.manager = manager
            app.state.session_manager = manager
            try:
                yield
            finally:
                endpoint.manager = None

    # Every path reaches the endpoint, so the app works mounted (app.mount("/mcp", sub)) and as the
    # endpoint of an exact route (Route("/mcp", endpoint=sub)) for hosts that strip trailing slashes.
    app = Starlette(routes=[Mount("", app=endpoint)], lifespan=lifespan)
    app.state.mcp_server = server
    return app


http_app: Callable[..., Starlette] = mcp_http_app
"""Alias of :func:`mcp_http_app` (the name the REST server looks up)."""
