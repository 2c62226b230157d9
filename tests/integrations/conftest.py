"""Shared fixtures for the agent-integration tests: runners per backend, example loading, the fake interpreter.

Backends: every agent test that takes ``env_runner`` runs once per backend in ``BACKENDS``,
with ``CODERUNNER_BACKEND`` set to its name, so the loops are proven to switch backend by
configuration alone. To add docker or instavm, put them in CODERUNNER_TEST_EXTRA_BACKENDS
(comma-separated) and, if they need options, in ``BACKEND_OPTIONS``; a backend that is not
available is skipped with the reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import coderunner.tools.dispatcher
from coderunner import CodeRunner, available_backends

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helper modules next to this file

from integration_helpers import PythonEmulator

# name -> options for CodeRunner(**options) (the backend itself comes from CODERUNNER_BACKEND).
BACKEND_OPTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "inprocess": lambda: {"pool_size": 0},
    "fake": lambda: {"handler": PythonEmulator()},
    # Hooks: "docker": lambda: {}, "instavm": lambda: {"api_key": os.environ["INSTAVM_API_KEY"]},
}
EXTRA = [b.strip() for b in os.environ.get("CODERUNNER_TEST_EXTRA_BACKENDS", "").split(",") if b.strip()]
BACKENDS = ["inprocess", "fake", *EXTRA]


@pytest.fixture(params=BACKENDS)
def env_runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[CodeRunner]:
    """A CodeRunner whose backend was selected through CODERUNNER_BACKEND, once per backend."""
    name: str = request.param
    if name not in available_backends():
        pytest.skip(f"backend {name!r} is not available here (available: {', '.join(available_backends())})")
    monkeypatch.setenv("CODERUNNER_BACKEND", name)
    options = BACKEND_OPTIONS.get(name, dict)()
    runner = CodeRunner(**options)
    assert runner.backend.name == name
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture(scope="module")
def runner() -> Iterator[CodeRunner]:
    """One real InProcess runner per test module (kernels start once)."""
    with CodeRunner(backend="inprocess", pool_size=0) as r:
        yield r


@pytest.fixture
def fresh_default_runner() -> Iterator[None]:
    """Reset the process-wide default runner before and after a test that uses it."""

    def reset() -> None:
        current = coderunner.tools.dispatcher._default_runner
        coderunner.tools.dispatcher._default_runner = None
        if current is not None:
            current.close()

    reset()
    yield
    reset()


# LangChain's SandboxIntegrationTests (langchain-tests 1.1.9) assert an older contract than deepagents 0.7.32's
# BaseSandbox, which the Deep Agents adapter inherits: glob paths relative to the root with directories (0.7.32:
# files only, absolute paths, so the permission middleware's deny rules see them; langchain-ai/langchain#39948)
# and write() refusing an existing file (0.7.32: "creating or overwriting"). They run, unmodified, as strict
# xfails: the day either side changes, they fail loudly here and the adapter is revisited.
_DEEPAGENTS_CONTRACT_DRIFT = {
    "test_glob",
    "test_glob_basic_pattern",
    "test_glob_with_directories",
    "test_glob_hidden_files_explicitly",
    "test_glob_with_character_class",
    "test_glob_with_question_mark",
    "test_write_existing_file_fails",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name == "test_deepagents.py" and (
            getattr(item, "originalname", item.name) in _DEEPAGENTS_CONTRACT_DRIFT
        ):
            item.add_marker(
                pytest.mark.xfail(strict=True, reason="langchain-tests 1.1.9 asserts a pre-0.7.32 deepagents contract")
            )
