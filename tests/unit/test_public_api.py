"""The public surface is pinned, and importing coderunner works without any optional extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import coderunner
from coderunner import Backend, CodeRunner
from coderunner.testing import AsyncFakeBackend, FakeBackend

PUBLIC = {
    "AsyncBackend",
    "AsyncCodeRunner",
    "AsyncSession",
    "AuthenticationError",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "CapacityError",
    "CodeRunner",
    "CodeRunnerError",
    "ConfigurationError",
    "ErrorInfo",
    "ExecRequest",
    "ExecutionResult",
    "FileInfo",
    "FileNotFoundInSessionError",
    "InvalidRequestError",
    "MissingDependencyError",
    "NotFoundError",
    "Output",
    "PathError",
    "PermissionDeniedError",
    "RateLimitError",
    "Session",
    "SessionInfo",
    "SessionNotFoundError",
    "SessionSpec",
    "Settings",
    "TaskInfo",
    "TaskNotFoundError",
    "UnsupportedOperationError",
    "__version__",
    "available_backends",
    "create_async_backend",
    "create_backend",
    "register_backend",
}


def test_all_is_pinned() -> None:
    assert set(coderunner.__all__) == PUBLIC
    for name in coderunner.__all__:
        assert hasattr(coderunner, name), name


def test_public_callables_have_docstrings() -> None:
    for name in coderunner.__all__:
        obj = getattr(coderunner, name)
        if callable(obj):
            assert obj.__doc__, name


def test_import_without_optional_extras() -> None:
    blocked = [
        "fastapi",
        "uvicorn",
        "docker",
        "playwright",
        "langchain_core",
        "llama_index",
        "openai",
        "mcp",
        "matplotlib",
        "instavm",
    ]
    script = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {blocked!r}:
                    raise ModuleNotFoundError(f"blocked {{name}}", name=name)
                return None
        sys.meta_path.insert(0, Block())
        import coderunner
        from coderunner import CodeRunner
        r = CodeRunner(backend="fake")
        print(r.execute("print(1)").status)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_fakes_satisfy_the_protocols() -> None:
    from coderunner import AsyncBackend

    assert isinstance(FakeBackend(), Backend)
    assert isinstance(AsyncFakeBackend(), AsyncBackend)


def test_fake_backend_records_and_scripts() -> None:
    fake = FakeBackend()
    fake.queue("42\n")
    with CodeRunner(backend=fake) as runner:
        assert runner.execute("print(6 * 7)").stdout == "42\n"
        assert runner.execute("anything").stdout == ""
        runner.write_file("d/a.txt", b"x")
        assert runner.download_file("d/a.txt") == b"x"
        assert [f.path for f in runner.list_files("d")] == ["d/a.txt"]
    assert [c.code for c in fake.calls] == ["print(6 * 7)", "anything"]


def test_backend_specific_session_options_are_checked() -> None:
    import asyncio

    import pytest

    from coderunner import AsyncCodeRunner, ConfigurationError

    with CodeRunner(pool_size=0) as runner:
        for start in (lambda: runner.start_session(cpus=2), lambda: runner.session(memory="1g")):
            with pytest.raises(ConfigurationError, match="no session option") as caught:
                start()
            assert "backend='docker'" in caught.value.message and "idle_timeout" in caught.value.message
        assert runner.execute("print(1)").stdout == "1\n"  # the runner is unharmed

    async def main() -> None:
        async with AsyncCodeRunner(pool_size=0) as runner:
            with pytest.raises(ConfigurationError, match="cpus"):
                await runner.session(cpus=1)
            with pytest.raises(ConfigurationError, match="cpus"):
                await runner.start_session(cpus=1)

    asyncio.run(main())
