"""A LangChain tool-calling agent over coderunner's tools, written with langchain-core alone.

    pip install 'coderunner-sandbox[langchain]' langchain-openai
    OPENAI_API_KEY=sk-... python examples/langchain_agent.py

Any chat model with ``bind_tools`` works (ChatOpenAI, ChatAnthropic, ...); the backend is
chosen by CODERUNNER_BACKEND. The tests import ``main``/``amain`` and pass a scripted model.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool

from coderunner import AsyncCodeRunner, CodeRunner
from coderunner.integrations.langchain import get_langchain_tools

SYSTEM = "Use the tools to run code; the session keeps variables and files between calls. Answer briefly."
DEFAULT_PROMPT = "Use Python to find how many primes there are below 10,000."


def _unknown(call: dict[str, Any], tools: Sequence[BaseTool]) -> ToolMessage:
    names = ", ".join(t.name for t in tools)
    return ToolMessage(
        f"Unknown tool {call['name']!r}. Available tools: {names}.", tool_call_id=call["id"], status="error"
    )


def _unparsable(ai: AIMessage) -> list[ToolMessage]:
    # Calls whose arguments were not valid JSON land in invalid_tool_calls; answer them so the model can retry.
    return [
        ToolMessage(
            f"Could not parse the arguments of {bad.get('name')!r}: {bad.get('error') or 'invalid JSON'}. "
            "Send a JSON object.",
            tool_call_id=bad.get("id") or "",
            status="error",
        )
        for bad in ai.invalid_tool_calls
    ]


def run_agent(model: Any, tools: Sequence[BaseTool], prompt: str, *, max_turns: int = 10) -> str:
    """Call the model, run the tools it asks for, feed back ToolMessages, until it answers."""
    bound = model.bind_tools(tools)
    by_name = {tool.name: tool for tool in tools}
    messages: list[BaseMessage] = [SystemMessage(SYSTEM), HumanMessage(prompt)]
    for _ in range(max_turns):
        ai: AIMessage = bound.invoke(messages)
        messages.append(ai)
        if not ai.tool_calls and not ai.invalid_tool_calls:
            return ai.text
        for call in ai.tool_calls:
            tool = by_name.get(call["name"])
            # tool.invoke(call) returns a ToolMessage; failures come back with status="error".
            messages.append(tool.invoke(call) if tool is not None else _unknown(dict(call), tools))
        messages.extend(_unparsable(ai))
    return "(stopped after too many tool calls)"


async def arun_agent(model: Any, tools: Sequence[BaseTool], prompt: str, *, max_turns: int = 10) -> str:
    """The async twin of :func:`run_agent` (``ainvoke`` everywhere)."""
    bound = model.bind_tools(tools)
    by_name = {tool.name: tool for tool in tools}
    messages: list[BaseMessage] = [SystemMessage(SYSTEM), HumanMessage(prompt)]
    for _ in range(max_turns):
        ai: AIMessage = await bound.ainvoke(messages)
        messages.append(ai)
        if not ai.tool_calls and not ai.invalid_tool_calls:
            return ai.text
        for call in ai.tool_calls:
            tool = by_name.get(call["name"])
            messages.append(await tool.ainvoke(call) if tool is not None else _unknown(dict(call), tools))
        messages.extend(_unparsable(ai))
    return "(stopped after too many tool calls)"


def _default_model() -> Any:
    if not os.environ.get("OPENAI_API_KEY"):
        return None
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        print("pip install langchain-openai to run this example with OpenAI.", file=sys.stderr)
        return None
    return ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4.1-mini"))


def main(model: Any = None, runner: CodeRunner | None = None, prompt: str = DEFAULT_PROMPT) -> str:
    """Run the agent synchronously and return its answer ("" when no model is configured)."""
    model = model or _default_model()
    if model is None:
        print("Set OPENAI_API_KEY (and install langchain-openai) to run this example.", file=sys.stderr)
        return ""
    own = runner is None
    active = runner or CodeRunner()  # honours CODERUNNER_BACKEND
    try:
        return run_agent(model, get_langchain_tools(active), prompt)
    finally:
        if own:
            active.close()


async def amain(model: Any = None, runner: AsyncCodeRunner | None = None, prompt: str = DEFAULT_PROMPT) -> str:
    """Run the agent on an AsyncCodeRunner and return its answer."""
    model = model or _default_model()
    if model is None:
        print("Set OPENAI_API_KEY (and install langchain-openai) to run this example.", file=sys.stderr)
        return ""
    own = runner is None
    active = runner or AsyncCodeRunner()
    try:
        return await arun_agent(model, get_langchain_tools(active), prompt)
    finally:
        if own:
            await active.aclose()


if __name__ == "__main__":
    answer = asyncio.run(amain()) if "--async" in sys.argv else main()
    print(answer)
    sys.exit(0 if answer else 1)
