"""Google ADK integration: real ``InMemoryRunner`` loops of an ``LlmAgent`` running its code in coderunner sessions.

ADK ships no fake model, so the example's ``ScriptedModel`` (ADK's ``BaseLlm`` returning scripted code blocks)
drives the real agent loop: ADK extracts each code block, calls the executor, saves its output files as
artifacts and shows the result to the model in the next turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("google.adk")

from google.genai import types
from integration_helpers import backend_runner, load_example

from coderunner import CodeRunner
from coderunner.integrations.google_adk import CoderunnerCodeExecutor

example = load_example("google_adk_executor")
ScriptedModel = example.ScriptedModel
code = example.code
last_result = example.last_result


@pytest.fixture(scope="module", params=["inprocess", pytest.param("docker", marks=pytest.mark.docker)])
def runner(request: pytest.FixtureRequest) -> Iterator[CodeRunner]:
    """One runner per backend for the module; every test checks it leaves no session behind."""
    with backend_runner(request.param) as made:
        yield made


@pytest.fixture
def executor(runner: CodeRunner) -> Iterator[CoderunnerCodeExecutor]:
    """An executor on the shared runner; asserts closing it closed every session it made."""
    made = CoderunnerCodeExecutor(runner=runner, timeout_seconds=20)
    yield made
    made.close()
    assert runner.list_sessions() == [], "a coderunner session outlived the executor"


def _results(events: list[Any]) -> list[Any]:
    """The code execution results in a run's events, in order."""
    return [
        p.code_execution_result
        for e in events
        for p in (e.content.parts if e.content else [])
        if p.code_execution_result
    ]


def _run(
    executor: CoderunnerCodeExecutor, steps: list[Any], prompts: list[str] | None = None
) -> tuple[list[Any], str, Any]:
    return asyncio.run(example.run(ScriptedModel(steps=steps), executor, prompts or ["go"]))


def test_example_answers_from_state_kept_between_blocks(runner: CodeRunner) -> None:
    with CoderunnerCodeExecutor(runner=runner) as executor:
        events, _, _ = asyncio.run(example.run(example.scripted(), executor, ["How many primes below 10,000?"]))
    assert example.final_text(events) == "There are 1229 primes below 10,000."
    assert runner.list_sessions() == []


def test_variables_persist_between_blocks_and_between_invocations(executor: CoderunnerCodeExecutor) -> None:
    events, session_id, _ = _run(
        executor,
        [code("x = 6 * 7"), "first turn done", code("print(x)"), lambda request: last_result(request)],
        ["set it", "read it"],
    )
    results = _results(events)
    assert [r.outcome for r in results] == [types.Outcome.OUTCOME_OK] * 2
    assert "42" in (results[1].output or "")
    assert list(executor.session_ids) == [session_id]  # one coderunner session for the ADK session


def test_a_file_written_by_code_is_an_artifact_and_input_files_reach_the_code(
    executor: CoderunnerCodeExecutor, runner: CodeRunner
) -> None:
    events, session_id, adk = _run(executor, [code("open('report.txt', 'w').write('from code')"), "done"])
    assert any("report.txt" in e.actions.artifact_delta for e in events)
    artifact = asyncio.run(
        adk.artifact_service.load_artifact(
            app_name="coderunner-example", user_id="user", session_id=session_id, filename="report.txt"
        )
    )
    assert artifact is not None and artifact.inline_data.data == b"from code"
    assert runner.download_file("report.txt", session_id=executor.session_ids[session_id]) == b"from code"


def test_inline_data_files_are_written_into_the_session(runner: CodeRunner) -> None:
    with CoderunnerCodeExecutor(runner=runner, optimize_data_file=True) as executor:
        model = ScriptedModel(steps=[code("print(open('data_1_2.csv').read().split()[1])"), last_result])
        agent_events: list[Any] = []

        async def go() -> None:
            from google.adk.agents import LlmAgent
            from google.adk.runners import InMemoryRunner

            adk = InMemoryRunner(agent=LlmAgent(name="a", model=model, code_executor=executor), app_name="app")
            session = await adk.session_service.create_session(app_name="app", user_id="u")
            message = types.Content(
                role="user",
                parts=[types.Part(text="sum it"), types.Part.from_bytes(data=b"a,b\n1,2\n", mime_type="text/csv")],
            )
            async for event in adk.run_async(user_id="u", session_id=session.id, new_message=message):
                agent_events.append(event)

        asyncio.run(go())
        assert "1,2" in example.final_text(agent_events)
    assert runner.list_sessions() == []


def test_an_error_is_a_failed_result_with_its_traceback(executor: CoderunnerCodeExecutor) -> None:
    events, _, _ = _run(executor, [code("kept = 'yes'\n1 / 0"), code("print(kept)"), "done"])
    failed, after = _results(events)
    assert failed.outcome == types.Outcome.OUTCOME_FAILED
    assert "ZeroDivisionError" in (failed.output or "")
    assert after.outcome == types.Outcome.OUTCOME_OK and "yes" in (after.output or "")


def test_a_timeout_interrupts_the_block_and_keeps_the_session(runner: CodeRunner) -> None:
    with CoderunnerCodeExecutor(runner=runner, timeout_seconds=2, error_retry_attempts=3) as executor:
        events, _, _ = _run(
            executor, [code("kept = 'still here'"), code("import time\ntime.sleep(60)"), code("print(kept)"), "done"]
        )
        _, timed_out, after = _results(events)
        assert timed_out.outcome == types.Outcome.OUTCOME_FAILED
        assert "timed out after 2 seconds" in (timed_out.output or "")
        assert "still here" in (after.output or "")
    assert runner.list_sessions() == []


def test_images_are_output_files(executor: CoderunnerCodeExecutor) -> None:
    events, _, _ = _run(executor, [code("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"), "done"])
    assert any(name.endswith(".png") for e in events for name in e.actions.artifact_delta)


def test_two_adk_sessions_are_isolated(executor: CoderunnerCodeExecutor) -> None:
    first, first_id, _ = _run(executor, [code("secret = 'first'"), "done"])
    second, second_id, _ = _run(executor, [code("print(secret)"), "done"])
    assert _results(first)[0].outcome == types.Outcome.OUTCOME_OK
    assert "NameError" in (_results(second)[0].output or "")
    assert set(executor.session_ids) == {first_id, second_id}
    assert len(set(executor.session_ids.values())) == 2


def test_a_session_closed_behind_the_executor_is_replaced_and_the_model_told(
    executor: CoderunnerCodeExecutor, runner: CodeRunner
) -> None:
    def close_it_then_run(request: Any) -> str:
        (session_id,) = executor.session_ids.values()
        runner.close_session(session_id)
        return code("print('again')")

    events, _, _ = _run(executor, [code("x = 1"), close_it_then_run, "done"])
    replaced = _results(events)[1]
    assert replaced.outcome == types.Outcome.OUTCOME_OK
    assert "again" in (replaced.output or "") and "earlier variables are gone" in (replaced.output or "")


def test_not_stateful_means_a_fresh_session_per_block(runner: CodeRunner) -> None:
    with CoderunnerCodeExecutor(runner=runner, stateful=False) as executor:
        events, _, _ = _run(executor, [code("x = 1"), code("print(x)"), "done"])
        assert "NameError" in (_results(events)[1].output or "")
        assert executor.session_ids == {}
    assert runner.list_sessions() == []


def test_constructs_from_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERUNNER_BACKEND", "inprocess")
    monkeypatch.setenv("CODERUNNER_POOL_SIZE", "0")
    with CoderunnerCodeExecutor() as executor:
        events, _, _ = _run(executor, [code("print('configured')"), "done"])
        assert "configured" in (_results(events)[0].output or "")
        assert executor._runner is not None and executor._runner.backend.name == "inprocess"
    with pytest.raises(RuntimeError, match="closed"):
        _run(executor, [code("print(1)"), "done"])
