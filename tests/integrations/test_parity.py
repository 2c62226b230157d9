"""Parity: every agent surface exports exactly the ToolSpec's schema, name and description, so they cannot drift."""

from __future__ import annotations

import re
from typing import Any

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool
from mcp import Client

from coderunner import CodeRunner
from coderunner.integrations.langchain import get_langchain_tools
from coderunner.integrations.llamaindex import get_llamaindex_tools
from coderunner.integrations.openai import get_tools
from coderunner.server.mcp import build_mcp_server
from coderunner.testing import FakeBackend
from coderunner.tools import get_tool_specs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect")


def normalize(schema: Any, *, top: bool = True) -> Any:
    """Drop formatting-only differences: titles anywhere, and a copy of the tool description at the top."""
    if isinstance(schema, dict):
        out = {k: normalize(v, top=False) for k, v in schema.items() if k != "title"}
        if top:
            out.pop("description", None)
        return out
    if isinstance(schema, list):
        return [normalize(v, top=False) for v in schema]
    return schema


def squash(text: str) -> str:
    return " ".join(text.split())


async def mcp_tools(browser: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    server = build_mcp_server(CodeRunner(backend=FakeBackend()), browser=browser)
    async with Client(server, mode="legacy") as client:
        listed = await client.list_tools()
    return {t.name: (t.description or "", t.input_schema) for t in listed.tools}


def exported(sessions: bool, browser: bool) -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
    """surface -> tool name -> (description, parameters schema), for every sync surface."""
    runner = CodeRunner(backend=FakeBackend())
    surfaces: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
        "openai-chat": {
            t["function"]["name"]: (t["function"]["description"], t["function"]["parameters"])
            for t in get_tools("chat", sessions=sessions, browser=browser)
        },
        "openai-responses": {
            t["name"]: (t["description"], t["parameters"])
            for t in get_tools("responses", sessions=sessions, browser=browser)
        },
    }
    lc = get_langchain_tools(runner, sessions=sessions, browser=browser)
    surfaces["langchain-tool_call_schema"] = {t.name: (t.description, t.tool_call_schema) for t in lc}
    surfaces["langchain-openai-conversion"] = {
        t.name: (t.description, convert_to_openai_tool(t)["function"]["parameters"]) for t in lc
    }
    li = get_llamaindex_tools(runner, sessions=sessions, browser=browser)
    surfaces["llamaindex-metadata"] = {
        t.metadata.name: (t.metadata.description, t.metadata.get_parameters_dict()) for t in li
    }
    surfaces["llamaindex-openai-conversion"] = {
        t.metadata.name: (t.metadata.description, t.metadata.to_openai_tool()["function"]["parameters"]) for t in li
    }
    surfaces["llamaindex-fn_schema"] = {
        t.metadata.name: (t.metadata.description, t.metadata.fn_schema.model_json_schema()) for t in li
    }
    runner.close()
    return surfaces


@pytest.mark.parametrize("browser", [False, True], ids=["code", "browser"])
@pytest.mark.parametrize("sessions", [False, True], ids=["plain", "sessions"])
async def test_every_surface_exports_the_spec(sessions: bool, browser: bool) -> None:
    specs = get_tool_specs(sessions=sessions, browser=browser)
    expected = {s.name: (squash(s.description), normalize(s.parameters)) for s in specs}
    surfaces = exported(sessions, browser)
    if sessions:  # the MCP server always exposes sessions
        surfaces["mcp"] = await mcp_tools(browser)
    for surface, tools in surfaces.items():
        got = {name: (squash(desc), normalize(schema)) for name, (desc, schema) in tools.items()}
        assert list(got) == list(expected), f"{surface}: tool names or order differ"
        for name in expected:
            assert got[name] == expected[name], f"{surface}: {name} differs from its ToolSpec"


def test_spec_schemas_are_clean_and_portable() -> None:
    required = {"execute_python_code": ["code"], "execute_bash_command": ["command"]}
    for spec in get_tool_specs(sessions=True, browser=True):
        schema = spec.parameters
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", spec.name)
        assert len(spec.description) <= 1024, f"{spec.name}: LlamaIndex/OpenAI limit descriptions to 1024 chars"
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert "title" not in repr(schema) and "anyOf" not in repr(schema) and "$ref" not in repr(schema)
        assert all(prop.get("description") for prop in schema["properties"].values()), spec.name
        if spec.name in required:
            assert schema["required"] == required[spec.name]
    plain = {s.name: s.parameters for s in get_tool_specs()}
    assert set(plain["execute_python_code"]["properties"]) == {"code", "language"}
    assert set(plain["execute_bash_command"]["properties"]) == {"command"}
    assert plain["execute_code"]["properties"]["language"]["enum"] == ["python", "bash", "javascript"]


def test_strict_schemas_follow_openai_rules() -> None:
    for api in ("chat", "responses"):
        for tool in get_tools(api, strict=True, sessions=True, browser=True):  # type: ignore[arg-type]
            params = tool["function"]["parameters"] if api == "chat" else tool["parameters"]
            assert params["additionalProperties"] is False
            assert params["required"] == list(params["properties"])
            assert all("default" not in prop for prop in params["properties"].values())
