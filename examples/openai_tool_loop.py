"""A complete OpenAI function-calling loop over coderunner's tools, with Chat Completions or the Responses API.

    OPENAI_API_KEY=sk-... python examples/openai_tool_loop.py
    OPENAI_API_KEY=sk-... python examples/openai_tool_loop.py --api responses --model gpt-4.1-mini

The backend is chosen by configuration alone: CODERUNNER_BACKEND=docker (or instavm, ...) runs
the same loop elsewhere. Any OpenAI-compatible server works: set OPENAI_BASE_URL.
The tests import ``main`` and drive it with a scripted model on a loopback endpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from coderunner import CodeRunner
from coderunner.integrations.openai import get_tools, run_tool_calls

SYSTEM = (
    "You are a careful analyst. Use the tools to run code instead of guessing; the session keeps "
    "variables and files between calls. Answer briefly once you have the result."
)
DEFAULT_PROMPT = "Compute the sum of the first 20 Fibonacci numbers with Python and tell me the result."
DEFAULT_MODEL = "gpt-4.1-mini"


def chat_loop(
    client: Any, runner: CodeRunner, model: str, prompt: str, *, images: bool = False, max_turns: int = 10
) -> str:
    """Chat Completions: call the model, run its tool calls, send the results back, until it answers."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    tools = get_tools("chat")
    for _ in range(max_turns):
        response = client.chat.completions.create(model=model, messages=messages, tools=tools)
        message = response.choices[0].message
        assistant: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            assistant["tool_calls"] = [call.model_dump(exclude_none=True) for call in message.tool_calls]
        messages.append(assistant)
        if not message.tool_calls:
            return message.content or ""
        # Bad model output (invalid JSON, unknown tool, wrong types) comes back as error text, never raises.
        messages.extend(run_tool_calls(runner, message.tool_calls, images=images))
    return "(stopped after too many tool calls)"


def responses_loop(
    client: Any, runner: CodeRunner, model: str, prompt: str, *, images: bool = False, max_turns: int = 10
) -> str:
    """Responses API: the same loop, sending the output items and function_call_output items back."""
    items: list[Any] = [{"role": "user", "content": prompt}]
    tools = get_tools("responses")
    for _ in range(max_turns):
        response = client.responses.create(model=model, instructions=SYSTEM, input=items, tools=tools)
        calls = [item for item in response.output if item.type == "function_call"]
        if not calls:
            return str(response.output_text)
        items.extend(item.model_dump(exclude_none=True) for item in response.output)
        items.extend(run_tool_calls(runner, calls, images=images))
    return "(stopped after too many tool calls)"


def main(
    client: Any = None,
    model: str | None = None,
    *,
    api: str = "chat",
    prompt: str = DEFAULT_PROMPT,
    runner: CodeRunner | None = None,
    images: bool = False,
) -> str:
    """Run the loop and return the model's final answer ("" when no API key is configured)."""
    if client is None:
        if not os.environ.get("OPENAI_API_KEY"):
            print("Set OPENAI_API_KEY (and optionally OPENAI_BASE_URL) to run this example.", file=sys.stderr)
            return ""
        from openai import OpenAI

        client = OpenAI()
    model = model or os.environ.get("OPENAI_MODEL", DEFAULT_MODEL)
    own_runner = runner is None
    active = runner or CodeRunner()  # honours CODERUNNER_BACKEND
    try:
        loop = responses_loop if api == "responses" else chat_loop
        return loop(client, active, model, prompt, images=images)
    finally:
        if own_runner:
            active.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", choices=["chat", "responses"], default="chat")
    parser.add_argument("--model", default=None)
    parser.add_argument("--images", action="store_true", help="send plots to the model (vision models)")
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    ns = parser.parse_args()
    answer = main(model=ns.model, api=ns.api, prompt=ns.prompt, images=ns.images)
    print(answer)
    sys.exit(0 if answer else 1)
