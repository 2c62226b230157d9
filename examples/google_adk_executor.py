"""A Google ADK agent whose code blocks run in a stateful coderunner session, one per ADK session.

    pip install 'coderunner-sandbox[google-adk]'
    python examples/google_adk_executor.py                # offline: a scripted model writes the code blocks
    GOOGLE_API_KEY=... python examples/google_adk_executor.py --live

The backend is chosen by CODERUNNER_BACKEND (inprocess, docker, ...). The tests import ``run``/``ScriptedModel``.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncGenerator, Callable
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.genai import types

from coderunner.integrations.google_adk import CoderunnerCodeExecutor

Step = str | Callable[[LlmRequest], str]


def code(source: str) -> str:
    """A model turn that is one Python code block (ADK runs it)."""
    return f"```python\n{source}\n```"


class ScriptedModel(BaseLlm):
    """An ADK model that replays scripted turns (code blocks or a final text) and records each request."""

    model: str = "scripted"
    steps: list[Any] = []
    requests: list[Any] = []

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        """The next scripted turn."""
        self.requests.append(llm_request)
        step = self.steps.pop(0)
        text = step(llm_request) if callable(step) else step
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def last_result(request: LlmRequest) -> str:
    """The output of the last code execution the model was shown (ADK shows it as a ``tool_output`` block)."""
    for content in reversed(request.contents or []):
        for part in reversed(content.parts or []):
            if part.code_execution_result is not None:
                return part.code_execution_result.output or ""
            if part.text and "```tool_output" in part.text:
                return part.text.split("```tool_output", 1)[1].strip("`\n ")
    return ""


def first_number(text: str) -> str:
    """The first integer in ``text`` ('?' when there is none)."""
    found = re.search(r"\d+", text)
    return found.group() if found else "?"


def scripted() -> ScriptedModel:
    """Compute in one block, reuse the variable in the next and save a file, then answer from the last output."""
    return ScriptedModel(
        steps=[
            code("primes = [n for n in range(2, 10_000) if all(n % d for d in range(2, int(n**0.5) + 1))]"),
            code("open('primes.txt', 'w').write(' '.join(map(str, primes)))\nprint(len(primes))"),
            lambda request: f"There are {first_number(last_result(request))} primes below 10,000.",
        ]
    )


async def run(
    agent_model: BaseLlm | str,
    executor: CoderunnerCodeExecutor,
    prompts: list[str],
    *,
    user: str = "user",
) -> tuple[list[Any], str, InMemoryRunner]:
    """Send ``prompts`` to an agent using ``executor`` in one new ADK session: its events, its id, the runner."""
    agent = LlmAgent(name="analyst", model=agent_model, code_executor=executor, instruction="Answer with code.")
    runner = InMemoryRunner(agent=agent, app_name="coderunner-example")
    session = await runner.session_service.create_session(app_name="coderunner-example", user_id=user)
    events: list[Any] = []
    for prompt in prompts:
        message = types.Content(role="user", parts=[types.Part(text=prompt)])
        async for event in runner.run_async(user_id=user, session_id=session.id, new_message=message):
            events.append(event)
    return events, session.id, runner


def final_text(events: list[Any]) -> str:
    """The text of the last event that has any."""
    for event in reversed(events):
        texts = [p.text for p in (event.content.parts if event.content else []) if p.text]
        if texts:
            return "".join(texts)
    return ""


def main(model: BaseLlm | str | None = None) -> str:
    """Run the agent once with a coderunner executor and return its final answer."""
    with CoderunnerCodeExecutor() as executor:
        events, _, _ = asyncio.run(run(model or scripted(), executor, ["How many primes are there below 10,000?"]))
    return final_text(events)


if __name__ == "__main__":
    print(main("gemini-2.5-flash" if "--live" in sys.argv else None))
