"""A LangChain Deep Agent whose shell and files are a coderunner session (``CoderunnerSandbox``).

    pip install 'coderunner-sandbox[deepagents]'
    python examples/deepagents_sandbox.py                 # offline: a scripted chat model calls the tools
    ANTHROPIC_API_KEY=... python examples/deepagents_sandbox.py --live

The backend is chosen by CODERUNNER_BACKEND (inprocess, docker, ...). The tests import ``main``/``ScriptedChatModel``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from deepagents import create_deep_agent
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from coderunner.integrations._runner import RunnerSource
from coderunner.integrations.deepagents import CoderunnerSandbox

Step = list[tuple[str, dict[str, Any]]] | str | Callable[[list[BaseMessage]], "list[tuple[str, dict[str, Any]]] | str"]


class ScriptedChatModel(BaseChatModel):
    """A chat model that replays scripted turns (tool calls or a final text) and records what it was shown."""

    steps: list[Any]
    seen: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        """Tools are part of the script: binding them changes nothing."""
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        step = self.steps.pop(0)
        step = step(messages) if callable(step) else step
        if isinstance(step, str):
            message = AIMessage(content=step)
        else:
            calls = [{"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:8]}"} for name, args in step]
            message = AIMessage(content="", tool_calls=calls)
        return ChatResult(generations=[ChatGeneration(message=message)])


def tool_results(messages: list[BaseMessage]) -> list[str]:
    """The tool results in a conversation, in order."""
    return [str(m.content) for m in messages if isinstance(m, ToolMessage)]


def scripted(folder: str) -> ScriptedChatModel:
    """Write a script with the file tool, run it with execute, read its output file back, then answer."""
    return ScriptedChatModel(
        steps=[
            [
                (
                    "write_file",
                    {
                        "file_path": f"{folder}/primes.py",
                        "content": "n = sum(all(k % d for d in range(2, int(k**0.5) + 1)) for k in range(2, 10_000))\n"
                        f"open('{folder}/count.txt', 'w').write(str(n))\nprint(n)\n",
                    },
                )
            ],
            [("execute", {"command": f"python3 {folder}/primes.py"})],
            [("read_file", {"file_path": f"{folder}/count.txt"})],
            lambda messages: f"There are {tool_results(messages)[1].split()[0]} primes below 10,000.",
        ]
    )


def main(model: BaseChatModel | str | None = None, runner: RunnerSource = None) -> str:
    """Run the deep agent once on a coderunner sandbox and return its final answer."""
    folder = f"/tmp/coderunner-example-{uuid.uuid4().hex[:8]}"  # the sandbox's /tmp (the host's on inprocess)
    with CoderunnerSandbox(runner) as sandbox:
        try:
            agent = create_deep_agent(model=model if model is not None else scripted(folder), backend=sandbox)
            question = {"messages": [{"role": "user", "content": "How many primes are there below 10,000?"}]}
            return str(agent.invoke(question)["messages"][-1].content)
        finally:
            sandbox.execute(f"rm -rf {folder}")


if __name__ == "__main__":
    print(main("anthropic:claude-sonnet-4-5" if "--live" in sys.argv else None))
