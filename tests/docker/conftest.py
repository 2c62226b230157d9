"""Fixtures for the Docker backend's own tests (every module is marked ``docker``): an engine, or a skip saying why."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from coderunner import CodeRunner


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The Docker SDK client; the whole module is skipped, with the reason, when no engine answers."""
    pytest.importorskip(
        "docker", reason="the Docker backend needs the 'docker' package: pip install 'coderunner-sandbox[docker]'"
    )
    from coderunner.backends.docker import connect
    from coderunner.errors import BackendUnavailableError

    try:
        client = connect()
    except BackendUnavailableError as exc:
        pytest.skip(f"no Docker engine (start one with scripts/docker-engine.sh): {exc.message}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: Any) -> str:
    """The sandbox image, built once per content hash (usually already there from `make docker-image`)."""
    from coderunner.backends.docker import ensure_image

    return ensure_image(docker_client)


@pytest.fixture(scope="module")
def docker_runner(sandbox_image: str) -> Iterator[CodeRunner]:
    """One Docker-backed runner per test module (sessions are containers; the pool keeps one warm)."""
    runner = CodeRunner(backend="docker", image=sandbox_image)
    yield runner
    runner.close()
