"""An OpenAI Agents SDK sandbox agent whose sandbox is a coderunner session (shell, files and a stateful Python).

    pip install 'coderunner-sandbox[openai-agents]'
    python examples/openai_agents_sandbox.py              # offline: a scripted model drives the tools
    OPENAI_API_KEY=sk-... python examples/openai_agents_sandbox.py --live

The backend is chosen by CODERUNNER_BACKEND (inprocess, docker, ...). The tests import ``main``/``ScriptedModel``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from agents import Model, ModelResponse, RunConfig, Runner, Usage
from agents.run_config import SandboxRunConfig
from agents.sandbox import SandboxAgent
from agents.sandbox.capabilities import Capabilities
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from coderunner.integrations._runner import RunnerSource
from coderunner.integrations.openai_agents import CoderunnerSandboxClient, StatefulPython

Step = list[tuple[str, dict[str, Any]]] | str | Callable[[list[Any]], "list[tuple[str, dict[str, Any]]] | str"]


class ScriptedModel(Model):
    """A ``Model`` that replays scripted steps (tool calls or a final text) and records each input it saw."""

    def __init__(self, steps: list[Step]) -> None:
        """``steps``: a list of ``(tool, arguments)`` calls, a final text, or a callable of the input giving one."""
        self.steps = list(steps)
        self.inputs: list[list[Any]] = []

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        """The next scripted step as a model response."""
        items = [input] if isinstance(input, str) else list(input)
        self.inputs.append(items)
        step = self.steps.pop(0)
        step = step(items) if callable(step) else step
        output: list[Any]
        if isinstance(step, str):
            output = [
                ResponseOutputMessage(
                    id=f"msg_{uuid.uuid4().hex[:8]}",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[ResponseOutputText(type="output_text", text=step, annotations=[])],
                )
            ]
        else:
            output = [
                ResponseFunctionToolCall(
                    type="function_call", call_id=f"call_{uuid.uuid4().hex[:8]}", name=name, arguments=json.dumps(args)
                )
                for name, args in step
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Streaming is not scripted."""
        raise NotImplementedError("ScriptedModel does not stream")


def tool_outputs(items: list[Any]) -> list[str]:
    """The tool results in a model input, in order."""
    return [str(i.get("output")) for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]


def scripted() -> ScriptedModel:
    """Set a variable in one call, read it in the next, run a shell command, then quote the last results."""
    return ScriptedModel(
        [
            [
                (
                    "run_python",
                    {"code": "primes = [n for n in range(2, 10_000) if all(n % d for d in range(2, int(n**0.5) + 1))]"},
                )
            ],
            [("run_python", {"code": "open('primes.txt', 'w').write(str(len(primes)))\nprint(len(primes))"})],
            [("exec_command", {"cmd": "cat primes.txt"})],
            lambda items: f"There are {tool_outputs(items)[1].strip()} primes below 10,000.",
        ]
    )


async def amain(model: Model | str | None = None, runner: RunnerSource = None) -> str:
    """Run the agent once on a coderunner sandbox and return its final answer."""
    agent = SandboxAgent(
        name="analyst",
        instructions="Use run_python (a persistent kernel) and the shell to answer. Answer briefly.",
        model=model if model is not None else scripted(),
        capabilities=[*Capabilities.default(), StatefulPython()],
    )
    client = CoderunnerSandboxClient(runner)
    try:
        result = await Runner.run(
            agent,
            "How many primes are there below 10,000?",
            run_config=RunConfig(
                sandbox=SandboxRunConfig(client=client), tracing_disabled=isinstance(agent.model, ScriptedModel)
            ),
        )
        return str(result.final_output)
    finally:
        await client.aclose()


def main(model: Model | str | None = None, runner: RunnerSource = None) -> str:
    """Sync entry point of :func:`amain`."""
    return asyncio.run(amain(model, runner))


if __name__ == "__main__":
    print(main("gpt-4.1-mini" if "--live" in sys.argv else None))
