"""LangChain integration: a real tool-calling loop with a scripted BaseChatModel and real tools."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from integration_helpers import load_example
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from coderunner import AsyncCodeRunner, CodeRunner
from coderunner.integrations.langchain import get_langchain_tools
from coderunner.tools import ToolResult, get_tool_specs

example = load_example("langchain_agent")

Step = AIMessage | Callable[[list[BaseMessage]], AIMessage]


class ScriptedChatModel(BaseChatModel):
    """A chat model that replays scripted AIMessages (tool calls, then an answer) and records what it saw."""

    steps: list[Any]
    seen: list[list[BaseMessage]] = []
    bound_tools: list[dict[str, Any]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        step = self.steps.pop(0)
        message = step(messages) if callable(step) else step
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        self.bound_tools = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=self.bound_tools, **kwargs)


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:6]}", "type": "tool_call"}


def ai_calls(*calls: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=list(calls))


def echo_last_tool(messages: list[BaseMessage]) -> AIMessage:
    last = [m for m in messages if isinstance(m, ToolMessage)][-1]
    return AIMessage(content=f"The tool said: {last.content}")


def test_agent_loop_with_state_and_tool_messages(env_runner: CodeRunner) -> None:
    model = ScriptedChatModel(
        steps=[
            ai_calls(call("execute_python_code", code="x = 6 * 7")),
            ai_calls(call("execute_python_code", code="print(x)")),
            echo_last_tool,
        ]
    )
    answer = example.main(model=model, runner=env_runner)
    assert answer == "The tool said: stdout:\n42"
    assert [t["function"]["name"] for t in model.bound_tools] == [s.name for s in get_tool_specs()]
    tool_messages = [m for m in model.seen[-1] if isinstance(m, ToolMessage)]
    assert [m.status for m in tool_messages] == ["success", "success"]
    assert isinstance(tool_messages[1].artifact, ToolResult)


def test_errors_are_error_tool_messages_not_exceptions(runner: CodeRunner) -> None:
    invalid = AIMessage(
        content="",
        tool_calls=[
            call("execute_python_code", code="1 / 0"),
            call("execute_bash_command", code="ls"),  # wrong argument name
            call("no_such_tool"),
            call("read_file", path="../outside.txt"),
        ],
        invalid_tool_calls=[
            {
                "name": "execute_code",
                "args": "{oops",
                "id": "bad_1",
                "error": "invalid JSON",
                "type": "invalid_tool_call",
            }
        ],
    )
    model = ScriptedChatModel(steps=[invalid, AIMessage(content="gave up")])
    assert example.main(model=model, runner=runner) == "gave up"
    replies = [m for m in model.seen[-1] if isinstance(m, ToolMessage)]
    assert [m.status for m in replies] == ["error"] * 5
    assert "ZeroDivisionError: division by zero" in replies[0].content
    assert "command: Field required" in replies[1].content and "code: unexpected argument" in replies[1].content
    assert "Unknown tool 'no_such_tool'" in replies[2].content
    assert "[path_not_allowed]" in replies[3].content
    assert "Could not parse the arguments" in replies[4].content


def test_images_are_content_blocks_and_the_artifact_is_the_result(runner: CodeRunner) -> None:
    tools = {t.name: t for t in get_langchain_tools(runner)}
    plot = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.show()"
    message = tools["execute_python_code"].invoke(call("execute_python_code", code=plot))
    assert isinstance(message, ToolMessage) and message.status == "success"
    assert message.content[0]["type"] == "text" and "[image 1: image/png" in message.content[0]["text"]
    image = message.content[1]
    assert image["type"] == "image" and image["mime_type"] == "image/png" and image["base64"].startswith("iVBOR")
    assert message.artifact.images[0].data == image["base64"]
    text_only = {t.name: t for t in get_langchain_tools(runner, images=False)}
    assert isinstance(text_only["execute_python_code"].invoke(call("execute_python_code", code=plot)).content, str)
    # Invoked with plain arguments (no tool call id), a tool returns its content.
    assert tools["execute_code"].invoke({"code": "print(5)"}) == "stdout:\n5"


async def test_async_agent_on_an_async_runner() -> None:
    model = ScriptedChatModel(
        steps=[
            ai_calls(call("write_file", path="notes/a.txt", content="hello")),
            ai_calls(call("execute_python_code", code="print(open('notes/a.txt').read().upper())")),
            echo_last_tool,
        ]
    )
    async with AsyncCodeRunner(backend="inprocess", pool_size=0) as arunner:
        assert await example.amain(model=model, runner=arunner) == "The tool said: stdout:\nHELLO"
        # Built with only an async runner, the tools cannot be invoked synchronously.
        tool = get_langchain_tools(arunner)[0]
        with pytest.raises(NotImplementedError):
            tool.invoke({"code": "1"})


async def test_sync_runner_serves_ainvoke_in_a_thread(runner: CodeRunner) -> None:
    tools: list[BaseTool] = get_langchain_tools(runner, names=["execute_code"])
    assert await tools[0].ainvoke({"code": "print('from a thread')"}) == "stdout:\nfrom a thread"
