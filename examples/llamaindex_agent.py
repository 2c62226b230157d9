"""A LlamaIndex ``FunctionAgent`` with coderunner's tools.

    pip install 'coderunner-sandbox[llamaindex]' llama-index-llms-openai
    OPENAI_API_KEY=sk-... python examples/llamaindex_agent.py

Any function-calling LLM works; the backend is chosen by CODERUNNER_BACKEND. The tests import
``amain`` and pass a scripted LLM.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent

from coderunner import AsyncCodeRunner, CodeRunner
from coderunner.integrations.llamaindex import CodeRunnerToolSpec

SYSTEM = "Use the tools to run code; the session keeps variables and files between calls. Answer briefly."
DEFAULT_PROMPT = "Use Python to compute the 30th Fibonacci number."


def _default_llm() -> Any:
    if not os.environ.get("OPENAI_API_KEY"):
        return None
    try:
        from llama_index.llms.openai import OpenAI
    except ImportError:
        print("pip install llama-index-llms-openai to run this example with OpenAI.", file=sys.stderr)
        return None
    return OpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4.1-mini"))


async def amain(
    llm: Any = None, runner: AsyncCodeRunner | CodeRunner | None = None, prompt: str = DEFAULT_PROMPT
) -> str:
    """Run the agent and return its final answer ("" when no LLM is configured)."""
    llm = llm or _default_llm()
    if llm is None:
        print("Set OPENAI_API_KEY (and install llama-index-llms-openai) to run this example.", file=sys.stderr)
        return ""
    own = runner is None
    active = runner or AsyncCodeRunner()  # honours CODERUNNER_BACKEND
    try:
        agent = FunctionAgent(tools=CodeRunnerToolSpec(active).to_tool_list(), llm=llm, system_prompt=SYSTEM)
        response = await agent.run(user_msg=prompt)
        return str(response)
    finally:
        if own and isinstance(active, AsyncCodeRunner):
            await active.aclose()


def main(llm: Any = None, prompt: str = DEFAULT_PROMPT) -> str:
    """Synchronous entry point."""
    return asyncio.run(amain(llm, prompt=prompt))


if __name__ == "__main__":
    answer = main()
    print(answer)
    sys.exit(0 if answer else 1)
