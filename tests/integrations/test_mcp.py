"""MCP server: the official MCP client over stdio (a subprocess) and streamable HTTP (uvicorn on loopback)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from integration_helpers import serve
from mcp import Client, StdioServerParameters
from mcp_types import ImageContent, TextContent
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from coderunner import AsyncCodeRunner, CodeRunner
from coderunner.server.mcp import build_mcp_server, mcp_http_app
from coderunner.testing import AsyncFakeBackend, FakeBackend
from coderunner.tools import get_tool_specs

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def exercise(client: Client) -> None:
    """The behaviour every transport must show: tools, state, errors, images, sessions."""
    listed = await client.list_tools()
    specs = get_tool_specs(sessions=True, browser=importlib.util.find_spec("playwright") is not None)
    assert [t.name for t in listed.tools] == [s.name for s in specs]
    assert {t.name: t.input_schema for t in listed.tools} == {s.name: s.parameters for s in specs}

    assert not (await client.call_tool("execute_python_code", {"code": "x = 41"})).is_error
    result = await client.call_tool("execute_python_code", {"code": "print(x + 1)"})
    assert not result.is_error and text_of(result) == "stdout:\n42"

    shell = {"command": "mkdir -p sub && cd sub && export GREETING=hi"}
    assert not (await client.call_tool("execute_bash_command", shell)).is_error
    echoed = await client.call_tool("execute_bash_command", {"command": 'echo "$GREETING from $(basename "$PWD")"'})
    assert text_of(echoed) == "stdout:\nhi from sub"  # the shell keeps its directory and variables
    await client.call_tool("execute_code", {"code": "let n = 21", "language": "javascript"})
    assert text_of(await client.call_tool("execute_code", {"code": "console.log(n * 2)", "language": "js"})) == (
        "stdout:\n42"
    )

    failed = await client.call_tool("execute_python_code", {"code": "1 / 0"})
    assert failed.is_error and "ZeroDivisionError: division by zero" in text_of(failed)
    bad = await client.call_tool("execute_code", {"code": "1", "language": "fortran"})
    assert bad.is_error and "Invalid arguments for tool 'execute_code'" in text_of(bad)
    unknown = await client.call_tool("rm_rf", {})
    assert unknown.is_error and "Unknown tool 'rm_rf'" in text_of(unknown)

    plotted = await client.call_tool("execute_python_code", {"code": PLOT})
    images = [c for c in plotted.content if isinstance(c, ImageContent)]
    assert not plotted.is_error and len(images) == 1 and images[0].mime_type == "image/png"
    assert "[image 1: image/png" in text_of(plotted) and images[0].data not in text_of(plotted)

    started = await client.call_tool("start_session", {})
    sid = text_of(started).split()[2]
    isolated = await client.call_tool("execute_python_code", {"code": "print(x)", "session_id": sid})
    assert isolated.is_error and "NameError" in text_of(isolated)
    assert not (
        await client.call_tool("write_file", {"path": "f.txt", "content": "in session", "session_id": sid})
    ).is_error
    assert text_of(await client.call_tool("read_file", {"path": "f.txt", "session_id": sid})) == "in session"
    assert (await client.call_tool("read_file", {"path": "f.txt"})).is_error  # the default session has no f.txt
    assert not (await client.call_tool("close_session", {"session_id": sid})).is_error
    gone = await client.call_tool("execute_python_code", {"code": "1", "session_id": sid})
    assert gone.is_error and "start_session" in text_of(gone)


async def test_stdio_subprocess() -> None:
    env = {**os.environ, "CODERUNNER_BACKEND": "inprocess", "CODERUNNER_POOL_SIZE": "0"}
    params = StdioServerParameters(
        command=sys.executable, args=["-c", "from coderunner.server.mcp import run_stdio; run_stdio()"], env=env
    )
    async with Client(params) as client:
        await exercise(client)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A host Starlette app attaching the MCP app at /mcp both ways, and running its lifespan as the REST server must.

    ``Mount("/mcp")`` serves ``/mcp/``; the exact ``Route("/mcp")`` serves ``/mcp`` (for hosts
    that strip trailing slashes before routing).
    """
    runner = AsyncCodeRunner(backend="inprocess", pool_size=0)
    mcp = mcp_http_app(runner, allowed_hosts=["127.0.0.1:*", "localhost:*"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp.router.lifespan_context(mcp):
            yield
        await runner.aclose()

    host = Starlette(routes=[Route("/mcp", endpoint=mcp), Mount("/mcp", app=mcp)], lifespan=lifespan)
    with serve(host) as base:
        yield base


@pytest.mark.parametrize(("mode", "path"), [("auto", "/mcp/"), ("legacy", "/mcp/"), ("auto", "/mcp")])
async def test_streamable_http(base_url: str, mode: str, path: str) -> None:
    async with Client(base_url + path, mode=mode) as client:
        await exercise(client)


async def test_http_guards(base_url: str) -> None:
    async with httpx.AsyncClient() as http:
        # DNS-rebinding protection is on when allowed_hosts is given.
        evil = await http.post(f"{base_url}/mcp/", json={}, headers={"Host": "evil.example"})
        assert evil.status_code == 421
    # Attached without running its lifespan: a clear 503 rather than a crash.
    fake_runner = CodeRunner(backend="fake")
    lonely = Starlette(routes=[Mount("/mcp", app=mcp_http_app(fake_runner))])
    with serve(lonely) as base:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{base}/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    fake_runner.close()
    assert response.status_code == 503 and "lifespan" in response.json()["detail"]


async def test_rest_server_serves_mcp() -> None:
    """The REST server (coderunner.server.app) attaches this app at /mcp and runs its lifespan."""
    pytest.importorskip("fastapi")
    from coderunner.server.app import create_app

    with serve(create_app(db_path=":memory:")) as base:
        async with Client(f"{base}/mcp", mode="legacy") as client:
            result = await client.call_tool("execute_python_code", {"code": "print(6 * 7)"})
    assert text_of(result) == "stdout:\n42"


async def test_server_accepts_runners_backends_and_factories() -> None:
    made: list[AsyncCodeRunner] = []

    def factory() -> AsyncCodeRunner:
        made.append(AsyncCodeRunner(backend="fake", handler=lambda call: "from factory\n"))
        return made[-1]

    sources: list[Any] = [
        CodeRunner(backend=FakeBackend(lambda call: "from sync runner\n")),
        AsyncFakeBackend(lambda call: "from async backend\n"),
        FakeBackend(lambda call: "from sync backend\n"),
        factory,
    ]
    for source in sources:
        async with Client(build_mcp_server(source), mode="legacy") as client:
            result = await client.call_tool("execute_code", {"code": "x"})
            assert text_of(result).startswith("stdout:\nfrom ")
    assert made and made[0]._core.closed  # a runner the server made is closed with it


def test_browser_tools_follow_where_the_browser_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from coderunner.server.mcp import _browser_by_default

    has_playwright = importlib.util.find_spec("playwright") is not None
    # The Docker and InstaVM browsers run elsewhere: no playwright needed on this machine.
    assert _browser_by_default("docker") is True
    assert _browser_by_default("instavm") is True
    assert _browser_by_default("inprocess") is has_playwright
    assert _browser_by_default(FakeBackend()) is False  # a backend without the capability
    lazy = AsyncCodeRunner(backend="docker")  # its backend does not exist yet: the settings tell
    assert _browser_by_default(lazy) is True
    assert lazy._backend is None  # and looking did not build it
    monkeypatch.setenv("CODERUNNER_BACKEND", "docker")
    assert _browser_by_default(None) is True
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # as if playwright were absent
    assert _browser_by_default("docker") is True
    assert _browser_by_default("inprocess") is False
