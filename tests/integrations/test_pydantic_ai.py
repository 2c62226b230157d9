"""pydantic-ai's own WorkspaceBackendSuite, and a real Agent run, over coderunner sessions (inprocess and docker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

from integration_helpers import require_docker
from pydantic_ai.workspaces import WorkspaceBackend, WorkspaceRef
from pydantic_ai.workspaces.conformance import WorkspaceBackendSuite

from coderunner import AsyncCodeRunner
from coderunner.integrations.pydantic_ai import CoderunnerWorkspaceBackend


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _make_runner(name: str) -> AsyncCodeRunner:
    if name == "docker":
        require_docker()
        return AsyncCodeRunner(backend="docker", absolute_paths=True)
    return AsyncCodeRunner(backend="inprocess", absolute_paths=True, pool_size=0)


@pytest.fixture(scope="module", params=["inprocess", pytest.param("docker", marks=pytest.mark.docker)])
def shared_runner(request: pytest.FixtureRequest) -> Iterator[AsyncCodeRunner]:
    runner = _make_runner(request.param)
    yield runner
    import asyncio

    asyncio.run(runner.aclose())


class TestCoderunnerWorkspaceSuite(WorkspaceBackendSuite):
    """The framework's suite, unmodified, over one coderunner session per test."""

    @pytest.fixture
    async def backend(self, shared_runner: AsyncCodeRunner) -> AsyncIterator[WorkspaceBackend]:
        backend = CoderunnerWorkspaceBackend(shared_runner)
        yield backend
        await backend.aclose()

    @pytest.fixture
    def fresh_backend(self, shared_runner: AsyncCodeRunner) -> Iterator[Callable[[], WorkspaceBackend]]:
        made: list[CoderunnerWorkspaceBackend] = []

        def make() -> WorkspaceBackend:
            made.append(CoderunnerWorkspaceBackend(shared_runner))
            return made[-1]

        yield make

    @pytest.fixture
    def attach_backend(self, shared_runner: AsyncCodeRunner) -> Callable[[WorkspaceRef], WorkspaceBackend]:
        return lambda ref: CoderunnerWorkspaceBackend(shared_runner, ref=ref)

    @pytest.fixture
    def destroy_environment(self) -> Callable[[WorkspaceBackend], Awaitable[None]]:
        async def destroy(backend: WorkspaceBackend) -> None:
            assert isinstance(backend, CoderunnerWorkspaceBackend)
            await backend.destroy()

        return destroy


_ = Any


def _scripted(calls: list[tuple[str, dict[str, Any]]]) -> Any:
    """A FunctionModel that makes ``calls`` one per turn, then answers with the last tool result it saw."""
    from pydantic_ai.messages import (
        ModelMessage,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        # Turns of this run only: count the responses since the last user prompt (history comes before it).
        start = max(i for i, m in enumerate(messages) if any(isinstance(p, UserPromptPart) for p in m.parts))
        turn = sum(1 for m in messages[start:] if isinstance(m, ModelResponse))
        if turn < len(calls):
            name, args = calls[turn]
            return ModelResponse(parts=[ToolCallPart(name, args)])
        returns = [p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)]
        return ModelResponse(parts=[TextPart(repr([r.content for r in returns]))])

    return FunctionModel(respond)


@pytest.mark.anyio
async def test_agent_uses_the_workspace_tools(shared_runner: AsyncCodeRunner) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ToolReturnPart

    from coderunner.integrations.pydantic_ai import CoderunnerWorkspace

    first, second = CoderunnerWorkspace(shared_runner), CoderunnerWorkspace(shared_runner)
    try:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("run_python", {"code": "x = 41"}),
            ("run_python", {"code": "print(x + 1)"}),
            ("run_command", {"command": "printf 'from sh' > made.txt"}),
            ("read_file", {"path": "made.txt"}),
            ("write_file", {"path": "back.txt", "content": "from the model"}),
            ("run_command", {"command": "cat back.txt"}),
            ("run_command", {"command": "sleep 30", "timeout": 1}),
            ("run_python", {"code": "print(x)"}),
            ("run_python", {"code": "1 / 0"}),
            ("run_command", {"command": "exit 3"}),
        ]
        result = await Agent(_scripted(calls), capabilities=[first]).run("go")
        returns = [
            p.content for m in result.all_messages() for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)
        ]
        assert "42" in returns[1]
        assert returns[3] == {"path": "made.txt", "content": "from sh"}
        assert returns[5]["stdout"] == "from the model"
        assert returns[6]["timed_out"] is True
        assert "41" in returns[7]  # the session survived the timeout, its state too
        assert "ZeroDivisionError" in returns[8]
        assert returns[9]["exit_code"] == 3
        ref = result.all_messages()[-1].workspace_ref  # type: ignore[union-attr]
        assert ref is not None and ref.provider == "coderunner"

        other = await Agent(
            _scripted([("run_python", {"code": "print('x' in globals())"}), ("run_command", {"command": "ls"})]),
            capabilities=[second],
        ).run("go")
        other_returns = [
            p.content for m in other.all_messages() for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)
        ]
        assert "False" in other_returns[0]
        assert "made.txt" not in other_returns[1]["stdout"]

        # The same agent continues in its session when given the history.
        again = await Agent(_scripted([("run_python", {"code": "print(x)"})]), capabilities=[first]).run(
            "more", message_history=result.all_messages()
        )
        again_returns = [
            p.content for m in again.new_messages() for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)
        ]
        assert "41" in again_returns[0]
    finally:
        await first.aclose()
        await second.aclose()
    assert ref.id not in {s.session_id for s in await shared_runner.list_sessions()}


def test_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from integration_helpers import load_example

    monkeypatch.setenv("CODERUNNER_BACKEND", "inprocess")
    example = load_example("pydantic_ai_sandbox")
    assert asyncio.run(example.amain()) == "There are 25 primes below 100."
