"""LlamaIndex integration: a real FunctionAgent driven by llama-index-core's mock function-calling LLM."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from integration_helpers import load_example
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock, ToolCallBlock
from llama_index.core.llms import MessageRole
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool, ToolOutput

from coderunner import AsyncCodeRunner, CodeRunner
from coderunner.integrations.llamaindex import CodeRunnerToolSpec, get_llamaindex_tools
from coderunner.tools import get_tool_specs

example = load_example("llamaindex_agent")

# llama-index's workflow engine runs inspect.getmembers() over its own pydantic agent, which trips
# pydantic's deprecation warnings on every FunctionAgent; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect")


def tool_call(name: str, **kwargs: Any) -> ToolCallBlock:
    return ToolCallBlock(tool_call_id=f"call_{uuid.uuid4().hex[:6]}", tool_name=name, tool_kwargs=kwargs)


def tool_texts(messages: Sequence[ChatMessage]) -> list[str]:
    return [
        "".join(b.text for b in m.blocks if isinstance(b, TextBlock)) for m in messages if m.role == MessageRole.TOOL
    ]


class Script:
    """A response generator for MockFunctionCallingLLM: one scripted assistant turn per call."""

    def __init__(self, *turns: Any) -> None:
        self.turns = list(turns)
        self.seen: list[list[ChatMessage]] = []
        self.tool_names: list[list[str]] = []

    def __call__(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        self.seen.append(list(messages))
        self.tool_names.append([t.metadata.name for t in kwargs.get("tools", [])])
        turn = self.turns.pop(0)
        if callable(turn):
            return turn(messages)
        if isinstance(turn, str):
            return ChatMessage(role=MessageRole.ASSISTANT, content=turn)
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=list(turn))


def quote_last_tool(messages: Sequence[ChatMessage]) -> ChatMessage:
    return ChatMessage(role=MessageRole.ASSISTANT, content=f"The tool said: {tool_texts(messages)[-1]}")


async def test_function_agent_runs_tools_with_state(env_runner: CodeRunner) -> None:
    script = Script(
        [tool_call("execute_python_code", code="x = 6 * 7")],
        [tool_call("execute_python_code", code="print(x)")],
        quote_last_tool,
    )
    llm = MockFunctionCallingLLM(response_generator=script)
    answer = await example.amain(llm=llm, runner=env_runner)
    assert answer == "The tool said: stdout:\n42"
    assert script.tool_names[0] == [s.name for s in get_tool_specs()]
    assert tool_texts(script.seen[-1]) == ["Done (no output).", "stdout:\n42"]


async def test_errors_reach_the_model_as_error_outputs() -> None:
    script = Script(
        [
            tool_call("execute_python_code", code="undefined_name"),
            tool_call("execute_bash_command"),  # missing argument
            tool_call("list_files", path="/etc"),  # outside the session
        ],
        "understood",
    )
    async with AsyncCodeRunner(backend="inprocess", pool_size=0) as arunner:
        answer = await example.amain(llm=MockFunctionCallingLLM(response_generator=script), runner=arunner)
    assert answer == "understood"
    # FunctionAgent runs a turn's tool calls concurrently: results arrive in completion order.
    texts = sorted(tool_texts(script.seen[-1]))
    assert "[path_not_allowed]" in texts[0]
    assert "command: Field required" in texts[1]
    assert "NameError: name 'undefined_name' is not defined" in texts[2]


async def test_tool_output_has_is_error_and_image_blocks(runner: CodeRunner) -> None:
    tools = {t.metadata.name: t for t in CodeRunnerToolSpec(runner).to_tool_list()}
    assert all(isinstance(t, FunctionTool) for t in tools.values())
    plot = "import matplotlib.pyplot as plt\nplt.plot([2, 1])\nplt.show()"
    output = await tools["execute_python_code"].acall(code=plot)
    assert isinstance(output, ToolOutput) and not output.is_error
    assert isinstance(output.blocks[0], TextBlock) and isinstance(output.blocks[1], ImageBlock)
    assert output.blocks[1].image_mimetype == "image/png"
    assert output.raw_output.images  # the ToolResult
    failed = tools["execute_python_code"].call(code="raise ValueError('boom')")
    assert failed.is_error and "ValueError: boom" in failed.content
    bad = tools["write_file"].call(path="x.txt")
    assert bad.is_error and "content: Field required" in bad.content


async def test_sessions_and_subsets() -> None:
    async with AsyncCodeRunner(backend="fake", handler=lambda call: f"ran in {call.session_id[:4]}\n") as arunner:
        spec = CodeRunnerToolSpec(arunner, sessions=True)
        assert "start_session" in spec.spec_functions
        tools = {t.metadata.name: t for t in spec.to_tool_list()}
        started = await tools["start_session"].acall(language="python")
        sid = started.content.split()[2]
        out = await tools["execute_code"].acall(code="1", session_id=sid)
        assert out.content == f"stdout:\nran in {sid[:4]}"
    subset = get_llamaindex_tools(CodeRunner(backend="fake"), names=["read_file", "list_files"])
    assert [t.metadata.name for t in subset] == ["read_file", "list_files"]
