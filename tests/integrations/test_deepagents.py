"""Deep Agents integration: LangChain's SandboxIntegrationTests, unmodified, on a coderunner session per backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from deepagents import create_deep_agent
from integration_helpers import backend_runner, load_example, require_docker
from langchain_tests.integration_tests import SandboxIntegrationTests

from coderunner import CodeRunner
from coderunner.errors import SessionNotFoundError
from coderunner.integrations.deepagents import CoderunnerSandbox, CoderunnerSandboxProvider


class TestInprocessSandboxStandard(SandboxIntegrationTests):
    @pytest.fixture(scope="class")
    def sandbox(self) -> Iterator[CoderunnerSandbox]:
        backend = CoderunnerSandbox(CodeRunner(backend="inprocess", pool_size=0, absolute_paths=True))
        try:
            yield backend
        finally:
            runner = backend._runner
            backend.delete()
            runner.close()


@pytest.mark.docker
class TestDockerSandboxStandard(SandboxIntegrationTests):
    @pytest.fixture(scope="class")
    def sandbox(self) -> Iterator[CoderunnerSandbox]:
        require_docker()
        backend = CoderunnerSandbox("docker")
        try:
            yield backend
        finally:
            backend.delete()


def test_timeout_keeps_the_session() -> None:
    with CoderunnerSandbox("inprocess") as sandbox:
        assert sandbox.execute("export N=41").exit_code == 0
        slow = sandbox.execute("sleep 30", timeout=1)
        assert slow.exit_code == 124 and "timed out" in slow.output
        assert sandbox.execute("echo $((N + 1))").output.strip() == "42"
        failed = sandbox.execute("echo out; echo err >&2; false")
        assert failed.exit_code == 1 and "out" in failed.output and "err" in failed.output


def test_provider_reattaches_and_deletes() -> None:
    provider = CoderunnerSandboxProvider("inprocess")
    try:
        first = provider.get_or_create()
        first.execute("export MARK=here")
        again = provider.get_or_create(sandbox_id=first.id)
        assert again.execute("echo $MARK").output.strip() == "here"
        provider.delete(sandbox_id=first.id)
        with pytest.raises(SessionNotFoundError):
            CoderunnerSandbox(provider._runner, session_id=first.id)
    finally:
        provider.close()


# -- the real agent loop: create_deep_agent with a scripted chat model, its own tools on the sandbox ------------

example = load_example("deepagents_sandbox")
ScriptedChatModel = example.ScriptedChatModel
tool_results = example.tool_results


@pytest.fixture(scope="module", params=["inprocess", pytest.param("docker", marks=pytest.mark.docker)])
def loop_runner(request: pytest.FixtureRequest) -> Iterator[CodeRunner]:
    """One runner per backend for the agent-loop tests; each test checks it leaves no session behind."""
    with backend_runner(request.param, absolute_paths=True) as made:
        yield made


def _invoke(sandbox: CoderunnerSandbox, steps: list[Any]) -> tuple[str, list[str]]:
    """Run a deep agent with scripted tool calls on ``sandbox``: its final answer and every tool result."""
    model = ScriptedChatModel(steps=steps)
    state = create_deep_agent(model=model, backend=sandbox).invoke({"messages": [{"role": "user", "content": "go"}]})
    return str(state["messages"][-1].content), tool_results(state["messages"])


def test_example_runs_the_agent_loop(loop_runner: CodeRunner) -> None:
    assert example.main(runner=loop_runner) == "There are 1229 primes below 10,000."
    assert loop_runner.list_sessions() == []


def test_shell_state_carries_between_tool_calls_and_files_go_both_ways(loop_runner: CodeRunner) -> None:
    with CoderunnerSandbox(loop_runner) as sandbox:
        root = sandbox.execute("pwd -P").output.strip()
        _, results = _invoke(
            sandbox,
            [
                [("execute", {"command": "export GREETING=hello; printf 'from code' > made.txt"})],
                [("execute", {"command": "echo $GREETING"})],
                [("read_file", {"file_path": f"{root}/made.txt"})],
                [("write_file", {"file_path": f"{root}/back.txt", "content": "from the agent"})],
                [("execute", {"command": "cat back.txt"})],
                "done",
            ],
        )
        assert "hello" in results[1]
        assert "from code" in results[2]
        assert "from the agent" in results[4]
        assert sandbox.download_files([f"{root}/back.txt"])[0].content == b"from the agent"
    assert loop_runner.list_sessions() == []


def test_a_timeout_and_a_failing_command_are_tool_results_and_the_session_goes_on(loop_runner: CodeRunner) -> None:
    with CoderunnerSandbox(loop_runner) as sandbox:
        _, results = _invoke(
            sandbox,
            [
                [("execute", {"command": "export KEPT=still-here"})],
                [("execute", {"command": "sleep 60", "timeout": 2})],
                [("execute", {"command": "echo boom >&2; false"})],
                [("execute", {"command": "echo $KEPT"})],
                [("execute", {"command": "exit 3"})],  # ends the persistent shell: the model is told
                [("execute", {"command": "echo alive"})],
                "done",
            ],
        )
        assert "timed out" in results[1] and "124" in results[1]
        assert "boom" in results[2] and "exit code 1" in results[2]
        assert "still-here" in results[3]
        assert "exit code 3" in results[4] and "shell was restarted" in results[4]
        assert "alive" in results[5]
    assert loop_runner.list_sessions() == []


def test_two_deep_agents_are_isolated(loop_runner: CodeRunner) -> None:
    with CoderunnerSandbox(loop_runner) as first, CoderunnerSandbox(loop_runner) as second:
        _invoke(first, [[("execute", {"command": "echo first > mine.txt"})], "done"])
        _, results = _invoke(second, [[("execute", {"command": "cat mine.txt; echo status=$?"})], "done"])
        assert "status=1" in results[0] or "No such file" in results[0]
        assert first.id != second.id
    assert loop_runner.list_sessions() == []


def test_the_provider_is_registered_for_deep_agents_code() -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="deepagents_code.sandbox_providers") if e.name == "coderunner"]
    assert entry.load() is CoderunnerSandboxProvider
