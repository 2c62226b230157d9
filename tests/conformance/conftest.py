"""Backends the conformance suite runs against; each test runs once per available backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from coderunner import AsyncCodeRunner, CodeRunner

# name -> (sync factory, async factory). A backend whose engine is missing raises pytest.skip
# with the reason from its factory; CI installs every engine, so nothing is skipped there.
BackendFactories = tuple[Callable[[], CodeRunner], Callable[[], AsyncCodeRunner]]


def _inprocess() -> BackendFactories:
    return (lambda: CodeRunner(backend="inprocess"), lambda: AsyncCodeRunner(backend="inprocess"))


PROVIDERS: dict[str, Callable[[pytest.FixtureRequest], BackendFactories]] = {
    "inprocess": lambda request: _inprocess(),
}


def _selected() -> list[str]:
    wanted = os.environ.get("CODERUNNER_CONFORMANCE_BACKENDS")
    return [b.strip() for b in wanted.split(",")] if wanted else list(PROVIDERS)


@pytest.fixture(scope="session", params=_selected())
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name not in PROVIDERS:
        pytest.skip(f"no conformance provider for backend {name!r}")
    return name


@pytest.fixture(scope="session")
def factories(backend_name: str, request: pytest.FixtureRequest) -> BackendFactories:
    return PROVIDERS[backend_name](request)


@pytest.fixture(scope="session")
def shared_runner(factories: BackendFactories) -> Iterator[CodeRunner]:
    runner = factories[0]()
    yield runner
    runner.close()


@pytest.fixture
def runner(shared_runner: CodeRunner) -> Iterator[Any]:
    """A fresh session (its own interpreters and directory) on the backend's shared runner."""
    session = shared_runner.session()
    yield session
    session.close()


@pytest.fixture
async def arunner(factories: BackendFactories) -> AsyncIterator[AsyncCodeRunner]:
    async with factories[1]() as runner:
        yield runner
