"""OpenAI Agents SDK integration: real ``Runner.run`` loops of a ``SandboxAgent`` on coderunner sessions.

The SDK ships no fake model, so the example's ``ScriptedModel`` (the SDK's ``Model`` interface returning
``ModelResponse``s with function calls) drives the real agent loop and the SDK's own shell/file tools.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import RunConfig, Runner
from agents.run_config import SandboxRunConfig
from agents.sandbox import ExposedPortUnavailableError, LocalSnapshotSpec, SandboxAgent
from agents.sandbox.capabilities import Capabilities
from agents.sandbox.errors import ExecTimeoutError
from integration_helpers import backend_runner, load_example

from coderunner import CodeRunner
from coderunner.integrations.openai_agents import (
    CoderunnerSandboxClient,
    CoderunnerSandboxSession,
    StatefulPython,
    python_tool,
)

example = load_example("openai_agents_sandbox")
ScriptedModel = example.ScriptedModel
tool_outputs = example.tool_outputs


@pytest.fixture(scope="module", params=["inprocess", pytest.param("docker", marks=pytest.mark.docker)])
def runner(request: pytest.FixtureRequest) -> Iterator[CodeRunner]:
    """One runner per backend for the module; every test checks it leaves no session behind."""
    # The docker runner keeps the default file rule: absolute paths there are the container's own anyway.
    options = {"absolute_paths": True} if request.param == "inprocess" else {}
    with backend_runner(request.param, **options) as made:
        yield made


@pytest.fixture
def client(runner: CodeRunner) -> Iterator[CoderunnerSandboxClient]:
    """A client over the shared runner (not closed with it); asserts no coderunner session leaked."""
    yield CoderunnerSandboxClient(runner)
    assert runner.list_sessions() == [], "a coderunner session outlived its SDK session"


def _agent(model: ScriptedModel, **python: Any) -> SandboxAgent[Any]:
    return SandboxAgent(
        name="t",
        instructions="test",
        model=model,
        capabilities=[*Capabilities.default(), StatefulPython(**python)],
    )


def _config(client: CoderunnerSandboxClient, **sandbox: Any) -> RunConfig:
    return RunConfig(sandbox=SandboxRunConfig(client=client, **sandbox), tracing_disabled=True)


async def test_example_state_persists_between_python_calls_and_shell_sees_the_files(runner: CodeRunner) -> None:
    assert await example.amain(runner=runner) == "There are 1229 primes below 10,000."
    assert runner.list_sessions() == []


async def test_variable_set_in_one_call_is_read_in_the_next(client: CoderunnerSandboxClient) -> None:
    model = ScriptedModel(
        [
            [("run_python", {"code": "x = 6 * 7"})],
            [("run_python", {"code": "print(x)"})],
            lambda items: "|".join(tool_outputs(items)),
        ]
    )
    result = await Runner.run(_agent(model), "go", run_config=_config(client))
    assert result.final_output == "(no output)|42\n"


async def test_file_written_by_code_is_read_through_the_sdk_file_api_and_back(
    client: CoderunnerSandboxClient,
) -> None:
    session = await client.create()
    try:
        async with session:
            model = ScriptedModel([[("run_python", {"code": "open('out.txt', 'w').write('from code')"})], "done"])
            await Runner.run(_agent(model), "go", run_config=_config(client, session=session))
            assert (await session.read(Path("out.txt"))).read() == b"from code"
            root = Path(session.state.manifest.root)
            assert (await session.read(root / "out.txt")).read() == b"from code"  # absolute, in the workspace
            await session.write(Path("back.txt"), io.BytesIO(b"from the sdk"))
            model = ScriptedModel(
                [
                    [("run_python", {"code": "print(open('back.txt').read())"})],
                    [("exec_command", {"cmd": "cat back.txt"})],
                    lambda items: "|".join(tool_outputs(items)),
                ]
            )
            result = await Runner.run(_agent(model), "go", run_config=_config(client, session=session))
            assert result.final_output.startswith("from the sdk\n|")
            assert "from the sdk" in result.final_output.split("|")[1]
            with pytest.raises(FileNotFoundError):
                await session.read(Path("missing.txt"))
    finally:
        await client.delete(session)


async def test_timeouts_are_the_sdks_timeout_and_the_session_still_works(client: CoderunnerSandboxClient) -> None:
    session = await client.create()
    try:
        async with session:
            model = ScriptedModel(
                [
                    [("run_python", {"code": "kept = 'still here'"})],
                    [("run_python", {"code": "import time\ntime.sleep(30)"})],
                    [("run_python", {"code": "print(kept)"})],
                    lambda items: "|".join(tool_outputs(items)),
                ]
            )
            result = await Runner.run(_agent(model, timeout=2), "go", run_config=_config(client, session=session))
            outputs = result.final_output.split("|")
            assert "[timeout]" in outputs[1]
            assert outputs[2] == "still here\n"
            with pytest.raises(ExecTimeoutError):
                await session.exec("sleep", "30", timeout=1, shell=False)
            after = await session.exec("echo", "alive", shell=False)
            assert (after.exit_code, after.stdout) == (0, b"alive\n")
    finally:
        await client.delete(session)


async def test_errors_in_code_are_data(client: CoderunnerSandboxClient) -> None:
    model = ScriptedModel(
        [
            [("run_python", {"code": "1 / 0"})],
            [("exec_command", {"cmd": "echo oops >&2; exit 3"})],
            [("run_python", {"code": "print('next')"})],
            lambda items: "|".join(tool_outputs(items)),
        ]
    )
    result = await Runner.run(_agent(model), "go", run_config=_config(client))
    python_error, shell_error, after = result.final_output.split("|")
    assert "ZeroDivisionError" in python_error
    assert "3" in shell_error and "oops" in shell_error
    assert after == "next\n"


async def test_exec_is_independent_like_the_sdks_backends(client: CoderunnerSandboxClient) -> None:
    session = await client.create()
    try:
        async with session:
            await session.exec("cd /tmp && export LEAK=1")
            where = await session.exec("pwd; echo ${LEAK:-unset}")
            assert where.stdout.decode().split() == [session.state.manifest.root, "unset"]
    finally:
        await client.delete(session)


async def test_two_agent_sessions_are_isolated(client: CoderunnerSandboxClient) -> None:
    first, second = await client.create(), await client.create()
    try:
        async with first, second:
            tool_a, tool_b = python_tool(first), python_tool(second)
            assert isinstance(first._inner, CoderunnerSandboxSession)
            await first.write(Path("mine.txt"), io.BytesIO(b"a"))
            model_a = ScriptedModel([[("run_python", {"code": "secret = 1"})], "ok"])
            model_b = ScriptedModel(
                [
                    [("run_python", {"code": "print(secret)"})],
                    [("exec_command", {"cmd": "ls"})],
                    lambda items: "|".join(tool_outputs(items)),
                ]
            )
            await Runner.run(
                SandboxAgent(name="a", model=model_a, tools=[tool_a]), "go", run_config=_config(client, session=first)
            )
            result = await Runner.run(
                SandboxAgent(name="b", model=model_b, tools=[tool_b]), "go", run_config=_config(client, session=second)
            )
            assert "NameError" in result.final_output
            assert "mine.txt" not in result.final_output
            assert first.state.coderunner_session_id != second.state.coderunner_session_id
            assert first.state.backend == second.state.backend == client.runner.backend.name
    finally:
        await client.delete(first)
        await client.delete(second)


async def test_persist_delete_resume_hydrates_a_new_session(client: CoderunnerSandboxClient, tmp_path: Path) -> None:
    session = await client.create(snapshot=LocalSnapshotSpec(base_path=tmp_path))
    async with session:
        await session.exec("mkdir -p sub && echo kept > sub/file.txt")
    payload = client.serialize_session_state(session.state)
    old_id = session.state.coderunner_session_id
    await client.delete(session)

    resumed = await client.resume(client.deserialize_session_state(payload))
    try:
        async with resumed:
            assert resumed.state.coderunner_session_id != old_id
            assert (await resumed.read(Path("sub/file.txt"))).read() == b"kept\n"
    finally:
        await client.delete(resumed)


async def test_resume_reattaches_a_live_session(client: CoderunnerSandboxClient) -> None:
    session = await client.create()
    await session.start()
    tool_model = ScriptedModel([[("run_python", {"code": "alive = 'yes'"})], "ok"])
    await Runner.run(_agent(tool_model), "go", run_config=_config(client, session=session))
    state = client.deserialize_session_state(client.serialize_session_state(session.state))
    resumed = await client.resume(state)
    try:
        async with resumed:
            assert resumed.state.coderunner_session_id == session.state.coderunner_session_id
            model = ScriptedModel([[("run_python", {"code": "print(alive)"})], lambda items: tool_outputs(items)[0]])
            result = await Runner.run(_agent(model), "go", run_config=_config(client, session=resumed))
            assert result.final_output == "yes\n"
    finally:
        await client.delete(resumed)


async def test_exposed_ports_are_refused_with_the_sdks_error(client: CoderunnerSandboxClient) -> None:
    session = await client.create()
    try:
        async with session:
            with pytest.raises(ExposedPortUnavailableError):
                await session.resolve_exposed_port(8080)
    finally:
        await client.delete(session)


def test_python_tool_refuses_a_foreign_session() -> None:
    from agents.sandbox.manifest import Manifest
    from agents.sandbox.sandboxes.unix_local import UnixLocalSandboxSession, UnixLocalSandboxSessionState
    from agents.sandbox.snapshot import NoopSnapshot

    foreign = UnixLocalSandboxSession(
        state=UnixLocalSandboxSessionState(manifest=Manifest(), snapshot=NoopSnapshot(id="x"))
    )
    with pytest.raises(TypeError, match="CoderunnerSandboxClient"):
        python_tool(foreign)


def test_the_example_and_a_snapshot_round_trip_work_through_a_remote_server(tmp_path: Path) -> None:
    """Over the InstaVM protocol to a `coderunner serve` on loopback whose runner keeps to the session directory.

    The workspace tar is made inside the workspace (and left out of itself): a path outside the session
    directory would be refused by such a server, and the SDK's cleanup after the run would fail.
    """
    import asyncio

    from integration_helpers import serve

    from coderunner.server.app import create_app

    with (
        serve(create_app(db_path=":memory:", mcp=False)) as base_url,
        CodeRunner(backend="instavm", base_url=base_url) as remote,
    ):
        assert example.main(runner=remote) == "There are 1229 primes below 10,000."

        async def round_trip() -> bytes:
            client = CoderunnerSandboxClient(remote)
            session = await client.create(snapshot=LocalSnapshotSpec(base_path=tmp_path))
            async with session:
                await session.exec("echo kept > file.txt")
            payload = client.serialize_session_state(session.state)
            await client.delete(session)
            resumed = await client.resume(client.deserialize_session_state(payload))
            try:
                async with resumed:
                    listing = (await resumed.exec("ls -a")).stdout
                    assert b".coderunner-workspace-" not in listing
                    return bytes((await resumed.read(Path("file.txt"))).read())
            finally:
                await client.delete(resumed)

        assert asyncio.run(round_trip()) == b"kept\n"
        assert remote.list_sessions() == []
