"""Browser tools on the agent surfaces: a scripted OpenAI agent loop and MCP, on real Chromium and local pages."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ImageContent, TextContent
from openai import OpenAI
from scripted_openai import Reply, ScriptedOpenAI, calls, text, tool_outputs

from coderunner import AsyncCodeRunner, CodeRunner
from coderunner.integrations.openai import get_tools, run_tool_calls
from coderunner.server.mcp import build_mcp_server
from coderunner.testing import FakeBackend
from coderunner.tools import dispatch, get_tool_specs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from browser_helpers import PageServer, chromium_missing, png_size, serve_pages

_MISSING = chromium_missing()
BROWSER_TOOLS = [
    "browser_create_session",
    "browser_navigate",
    "browser_click",
    "browser_fill",
    "browser_type",
    "browser_screenshot",
    "browser_extract_content",
    "navigate_and_get_all_visible_text",
]


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    if _MISSING:
        pytest.skip(_MISSING)
    with serve_pages() as server:
        yield server


@pytest.fixture(scope="module")
def browser_runner(pages: PageServer) -> Iterator[CodeRunner]:
    runner = CodeRunner(backend="inprocess")
    yield runner
    runner.close()


def chat_loop(client: OpenAI, runner: CodeRunner, prompt: str, max_turns: int = 10) -> str:
    """The usual Chat Completions tool loop, offering the browser tools and sending screenshots back."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    tools = get_tools("chat", browser=True)
    for _ in range(max_turns):
        response = client.chat.completions.create(model="scripted", messages=messages, tools=tools)  # type: ignore[arg-type]
        message = response.choices[0].message
        assistant: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            assistant["tool_calls"] = [call.model_dump(exclude_none=True) for call in message.tool_calls]
        messages.append(assistant)
        if not message.tool_calls:
            return message.content or ""
        messages.extend(run_tool_calls(runner, message.tool_calls, images=True))
    return "(stopped)"


def test_browser_tools_are_opt_in_and_listed_once() -> None:
    assert not {s.name for s in get_tool_specs()} & set(BROWSER_TOOLS)
    names = [s.name for s in get_tool_specs(browser=True)]
    assert names[-len(BROWSER_TOOLS) :] == BROWSER_TOOLS
    # Their session_id is a browser session: sessions=True does not add a code session_id to the others.
    assert set(
        get_tool_specs(names=["navigate_and_get_all_visible_text"], sessions=True)[0].parameters["properties"]
    ) == {"url"}


def test_without_the_browser_capability_the_tool_says_so() -> None:
    with CodeRunner(backend=FakeBackend()) as runner:
        result = dispatch(runner, "browser_navigate", {"url": "http://127.0.0.1:1/"})
    assert result.is_error and "[unsupported]" in result.text


@pytest.mark.browser
def test_scripted_agent_fills_a_form_and_reads_the_result(browser_runner: CodeRunner, pages: PageServer) -> None:
    def think_then_read(api: str, body: dict[str, Any]) -> Reply:
        time.sleep(0.5)  # the page shows its greeting 200 ms after the click
        return calls(("browser_extract_content", {}))

    def answer(api: str, body: dict[str, Any]) -> Reply:
        content = next(o for o in tool_outputs(api, body) if isinstance(o, str) and o.startswith("Title: Form page"))
        greeting = next(line for line in content.splitlines() if "Hello," in line)
        return text(greeting.strip())

    steps = [
        calls(("browser_navigate", {"url": pages.url("/form")})),
        calls(("browser_fill", {"selector": "#name", "value": "agent"}), ("browser_click", {"selector": "#go"})),
        think_then_read,
        calls(("browser_screenshot", {})),
        answer,
    ]
    with ScriptedOpenAI(steps) as server:
        client = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        final = chat_loop(client, browser_runner, "Sign up as 'agent' on the form and tell me what the page says.")

    assert final == "Hello, agent"
    sent = [t["function"]["name"] for t in server.requests[0][1]["tools"]]
    assert set(BROWSER_TOOLS) <= set(sent)
    outputs = tool_outputs("chat", server.requests[-1][1])
    assert outputs[0].startswith(f"Opened {pages.url('/form')} (title: 'Form page', HTTP 200)")
    assert outputs[1] == f"Filled '#name'. The page is now {pages.url('/form')}."
    assert outputs[2] == f"Clicked '#go'. The page is now {pages.url('/form')}."
    assert "#go" in outputs[3] and "Interactive elements" in outputs[3]
    # The screenshot reached the model as image content, not as base64 text.
    assert outputs[4].startswith("[screenshot of the visible part of the page: image/png")
    assert len(outputs[4]) < 200
    image_turn = server.requests[-1][1]["messages"][-1]
    assert image_turn["role"] == "user" and image_turn["content"][1]["type"] == "image_url"
    assert image_turn["content"][1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")


@pytest.mark.browser
async def test_mcp_lists_and_runs_the_browser_tools(pages: PageServer) -> None:
    runner = AsyncCodeRunner(backend="inprocess")
    try:
        async with Client(build_mcp_server(runner, browser=True), mode="legacy") as client:
            listed = [t.name for t in (await client.list_tools()).tools]
            assert set(BROWSER_TOOLS) <= set(listed)

            read = await client.call_tool("navigate_and_get_all_visible_text", {"url": pages.url("/links")})
            body = "".join(c.text for c in read.content if isinstance(c, TextContent))
            assert not read.is_error and body.startswith("Title: Links page")
            assert "The first paragraph talks about the weather" in body

            shot = await client.call_tool("browser_screenshot", {})
            images = [c for c in shot.content if isinstance(c, ImageContent)]
            assert not shot.is_error and len(images) == 1 and images[0].mime_type == "image/png"
            assert png_size(images[0].data)[0] > 0

            missing = await client.call_tool("browser_click", {"selector": "#nope"})
            assert missing.is_error
            assert "[element_not_found]" in "".join(c.text for c in missing.content if isinstance(c, TextContent))

            gone = await client.call_tool("browser_navigate", {"url": pages.url("/form"), "session_id": "nope"})
            assert gone.is_error and "browser_create_session" in gone.content[0].text  # type: ignore[union-attr]
    finally:
        await runner.aclose()


async def test_mcp_leaves_out_browser_tools_for_a_backend_without_a_browser() -> None:
    async with Client(build_mcp_server(FakeBackend()), mode="legacy") as client:
        listed = {t.name for t in (await client.list_tools()).tools}
    assert "execute_python_code" in listed and not listed & set(BROWSER_TOOLS)
