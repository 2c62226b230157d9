"""A smolagents CodeAgent whose code actions run in a stateful coderunner session instead of the local interpreter.

    pip install 'coderunner-sandbox[smolagents]'
    python examples/smolagents_executor.py                # offline: a scripted model writes the code actions
    HF_TOKEN=hf_... python examples/smolagents_executor.py --live

The backend is chosen by CODERUNNER_BACKEND (inprocess, docker, ...). The tests import ``main``/``ScriptedModel``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from smolagents import CodeAgent
from smolagents.models import ChatMessage, MessageRole, Model
from smolagents.monitoring import TokenUsage

from coderunner.integrations._runner import RunnerSource
from coderunner.integrations.smolagents import CoderunnerExecutor

Step = str | Callable[[list[Any]], str]


class ScriptedModel(Model):
    """A smolagents ``Model`` that answers each turn with the next scripted code action, recording what it saw."""

    def __init__(self, steps: list[Step]) -> None:
        """``steps``: code for each turn (wrapped in the agent's ``<code>`` tags), or a callable of the messages."""
        super().__init__(model_id="scripted")
        self.steps = list(steps)
        self.seen: list[list[Any]] = []

    def generate(self, messages: list[Any], stop_sequences: list[str] | None = None, **kwargs: Any) -> ChatMessage:
        """The next scripted code action as an assistant message."""
        self.seen.append(list(messages))
        step = self.steps.pop(0)
        code = step(messages) if callable(step) else step
        return ChatMessage(
            role=MessageRole.ASSISTANT,
            content=f"Thought: the next step.\n<code>\n{code}\n</code>",
            token_usage=TokenUsage(input_tokens=0, output_tokens=0),
        )


def scripted() -> ScriptedModel:
    """Compute in one step, keep the result in a variable, save a file, answer from the variable in the last."""
    return ScriptedModel(
        [
            "primes = [n for n in range(2, 10_000) if all(n % d for d in range(2, int(n**0.5) + 1))]\n"
            "print(len(primes))",
            "with open('primes.txt', 'w') as f:\n    f.write(' '.join(map(str, primes)))",
            "final_answer(f'There are {len(primes)} primes below 10,000.')",
        ]
    )


def main(model: Model | None = None, runner: RunnerSource = None) -> str:
    """Run the agent once with a coderunner executor and return its final answer."""
    executor = CoderunnerExecutor(runner=runner)
    with CodeAgent(tools=[], model=model or scripted(), executor=executor, max_steps=6, verbosity_level=0) as agent:
        return str(agent.run("How many primes are there below 10,000?"))


if __name__ == "__main__":
    if "--live" in sys.argv:
        from smolagents import InferenceClientModel

        print(main(InferenceClientModel()))
    else:
        print(main())
