"""A pydantic-ai Agent whose workspace is a coderunner session: commands, files and stateful Python.

    pip install 'coderunner-sandbox[pydantic-ai]'
    python examples/pydantic_ai_sandbox.py          # offline: a scripted FunctionModel drives the tools
    CODERUNNER_BACKEND=docker python examples/pydantic_ai_sandbox.py

Swap the FunctionModel for any model name (``Agent("openai:gpt-5.2", ...)``) to let a real LLM drive it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from coderunner.integrations.pydantic_ai import CoderunnerWorkspace

SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("run_python", {"code": "primes = [n for n in range(2, 100) if all(n % d for d in range(2, n))]"}),
    ("run_python", {"code": "open('primes.txt', 'w').write(' '.join(map(str, primes)))"}),
    ("run_command", {"command": "wc -w < primes.txt"}),
    ("read_file", {"path": "primes.txt"}),
]


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Make the SCRIPT's calls one per turn, then answer with the word count the shell printed."""
    turn = sum(1 for m in messages if isinstance(m, ModelResponse))
    if turn < len(SCRIPT):
        return ModelResponse(parts=[ToolCallPart(*SCRIPT[turn])])
    returns = [p.content for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    return ModelResponse(parts=[TextPart(f"There are {returns[2]['stdout'].strip()} primes below 100.")])


async def amain() -> str:
    """Run the agent once in a fresh coderunner session and return its answer."""
    workspace = CoderunnerWorkspace()
    try:
        result = await Agent(FunctionModel(scripted), capabilities=[workspace]).run("How many primes below 100?")
        return result.output
    finally:
        await workspace.aclose()


if __name__ == "__main__":
    print(asyncio.run(amain()))
