"""Backends the conformance suite runs against; each test runs once per available backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from coderunner import AsyncCodeRunner, CodeRunner

# name -> (sync factory, async factory). A backend whose engine is missing raises pytest.skip
# with the reason from its factory; CI installs every engine, so nothing is skipped there.
BackendFactories = tuple[Callable[..., CodeRunner], Callable[..., AsyncCodeRunner]]


def _inprocess(**options: Any) -> BackendFactories:
    return (
        lambda: CodeRunner(backend="inprocess", **options),
        lambda: AsyncCodeRunner(backend="inprocess", **options),
    )


def _docker(request: pytest.FixtureRequest, **options: Any) -> BackendFactories:
    """LocalDocker: skipped with the reason when no engine answers; the image is built once (content hash)."""
    pytest.importorskip(
        "docker", reason="the Docker backend needs the 'docker' package: pip install 'coderunner-sandbox[docker]'"
    )
    from coderunner.backends.docker import connect, ensure_image
    from coderunner.errors import BackendUnavailableError

    try:
        client = connect()
    except BackendUnavailableError as exc:
        pytest.skip(f"no Docker engine: {exc.message}")
    ensure_image(client)
    runtime = options.get("runtime")
    if runtime is not None and runtime not in (client.info().get("Runtimes") or {}):
        pytest.skip(f"the Docker engine has no {runtime!r} runtime (apt-get install runsc; scripts/docker-engine.sh)")
    client.close()
    return (
        lambda **more: CodeRunner(backend="docker", **options, **more),
        lambda **more: AsyncCodeRunner(backend="docker", **options, **more),
    )


def _server_helpers() -> Any:
    # tests/ is not a package: load the server suite's helpers by path, once.
    import importlib.util
    import sys
    from pathlib import Path

    name = "_coderunner_server_test_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "server" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _instavm(request: pytest.FixtureRequest) -> BackendFactories:
    """The InstaVM wire protocol against a live `coderunner serve` on loopback."""
    server = _server_helpers().start_live_server(api_key="conformance-key")
    request.addfinalizer(server.stop)
    opts = {"base_url": server.base_url, "api_key": "conformance-key"}
    return (lambda: CodeRunner(backend="instavm", **opts), lambda: AsyncCodeRunner(backend="instavm", **opts))


PROVIDERS: dict[str, Callable[[pytest.FixtureRequest], BackendFactories]] = {
    "inprocess": lambda request: _inprocess(),  # Python kernels forked from the fork server (the default)
    "inprocess-spawn": lambda request: _inprocess(kernel_start="spawn"),  # the fallback: a fresh interpreter each
    "instavm": _instavm,
    "docker": _docker,
    "docker-runsc": lambda request: _docker(request, runtime="runsc"),
}


def _selected() -> list[str]:
    wanted = os.environ.get("CODERUNNER_CONFORMANCE_BACKENDS")
    return [b.strip() for b in wanted.split(",")] if wanted else list(PROVIDERS)


def _params() -> list[Any]:
    # The Docker providers carry the docker mark, so `-m "not docker"` runs conformance without an engine.
    return [pytest.param(b, marks=pytest.mark.docker) if b.startswith("docker") else b for b in _selected()]


@pytest.fixture(scope="session", params=_params())
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


@pytest.fixture(scope="session")
def used_session(shared_runner: CodeRunner) -> Iterator[Any]:
    """One session per backend that earlier tests have already run code in.

    For checks that must hold in any session, fresh or long used (exit codes, stream separation, language
    aliases, path rules): they share it instead of each paying for a fresh session, which on the container
    backends is a container start.
    """
    session = shared_runner.session()
    yield session
    session.close()


@pytest.fixture
async def arunner(factories: BackendFactories, backend_name: str) -> AsyncIterator[AsyncCodeRunner]:
    """A new async runner per test. On docker without a warm pool: a runner that lives for one test would
    otherwise start a container for its pool that nothing takes (a wasted start, 2 to 8 s of CPU each)."""
    options = {"pool_size": 0} if backend_name.startswith("docker") else {}
    async with factories[1](**options) as runner:
        yield runner
