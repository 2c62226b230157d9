"""pydantic-ai's own WorkspaceBackendSuite, and a real Agent run, over coderunner sessions (inprocess and docker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

from pydantic_ai.workspaces import WorkspaceBackend, WorkspaceRef
from pydantic_ai.workspaces.conformance import WorkspaceBackendSuite

from coderunner import AsyncCodeRunner
from coderunner.integrations.pydantic_ai import CoderunnerWorkspaceBackend


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _make_runner(name: str) -> AsyncCodeRunner:
    if name == "docker":
        pytest.importorskip("docker")
        from coderunner.backends.docker import connect, ensure_image
        from coderunner.errors import BackendUnavailableError

        try:
            client = connect()
        except BackendUnavailableError as exc:
            pytest.skip(f"no Docker engine: {exc.message}")
        ensure_image(client)
        client.close()
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
