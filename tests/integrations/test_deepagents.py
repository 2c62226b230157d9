"""Deep Agents integration: LangChain's SandboxIntegrationTests, unmodified, on a coderunner session per backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration_helpers import require_docker
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
