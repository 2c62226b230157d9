"""smolagents integration: real ``CodeAgent.run`` loops whose code actions run in coderunner sessions.

smolagents ships no fake model, so the example's ``ScriptedModel`` (the library's ``Model`` interface returning
``ChatMessage``s with ``<code>`` actions) drives the real agent loop, its final-answer tool and its tool export.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("smolagents")

from integration_helpers import backend_runner, load_example, require_docker
from smolagents import CodeAgent, tool
from smolagents.memory import ActionStep
from smolagents.utils import AgentError

from coderunner import CodeRunner
from coderunner.integrations.smolagents import CoderunnerExecutor

example = load_example("smolagents_executor")
ScriptedModel = example.ScriptedModel


@pytest.fixture(scope="module", params=["inprocess", pytest.param("docker", marks=pytest.mark.docker)])
def runner(request: pytest.FixtureRequest) -> Iterator[CodeRunner]:
    """One runner per backend for the module; every test checks it leaves no session behind."""
    with backend_runner(request.param) as made:
        yield made


@pytest.fixture
def executor(runner: CodeRunner) -> Iterator[CoderunnerExecutor]:
    """An executor on the shared runner; asserts the agent's cleanup closed its session."""
    made = CoderunnerExecutor(runner=runner, timeout=20)
    yield made
    made.cleanup()
    assert runner.list_sessions() == [], "the executor's session outlived its cleanup"


def _run(executor: CoderunnerExecutor, steps: list[Any], **run: Any) -> tuple[Any, list[ActionStep]]:
    """Run a CodeAgent with scripted code actions; its answer and its action steps.

    Not ``with CodeAgent(...)``: leaving that cleans the executor up, and some tests run a second agent on it.
    """
    agent = CodeAgent(tools=[], model=ScriptedModel(steps), executor=executor, max_steps=len(steps), verbosity_level=-1)
    answer = agent.run("go", **run)
    return answer, [s for s in agent.memory.steps if isinstance(s, ActionStep)]


def test_example_answers_from_state_kept_between_steps(runner: CodeRunner) -> None:
    assert example.main(runner=runner) == "There are 1229 primes below 10,000."
    assert runner.list_sessions() == []


def test_variable_set_in_one_step_is_read_in_the_next_and_final_answer_keeps_its_type(
    executor: CoderunnerExecutor,
) -> None:
    answer, steps = _run(executor, ["x = 6 * 7\nprint('set')", "final_answer({'x': x, 'items': [x, 'a']})"])
    assert answer == {"x": 42, "items": [42, "a"]}
    assert "set" in (steps[0].observations or "")
    assert steps[1].is_final_answer


def test_files_written_by_code_are_the_sessions_files(executor: CoderunnerExecutor, runner: CodeRunner) -> None:
    _run(executor, ["open('notes.txt', 'w').write('from code')", "final_answer(open('notes.txt').read())"])
    assert runner.download_file("notes.txt", session_id=executor.session_id) == b"from code"
    runner.write_file("back.txt", "from the host", session_id=executor.session_id)
    answer, _ = _run(executor, ["final_answer(open('back.txt').read())"])
    assert answer == "from the host"


def test_an_error_is_an_observation_and_the_run_goes_on(executor: CoderunnerExecutor) -> None:
    answer, steps = _run(executor, ["kept = 'yes'\n1 / 0", "final_answer(kept)"])
    assert answer == "yes"
    assert steps[0].error is not None
    assert "ZeroDivisionError" in str(steps[0].error) and "division by zero" in str(steps[0].error)


def test_a_timeout_interrupts_the_step_and_keeps_the_session(runner: CodeRunner) -> None:
    with CoderunnerExecutor(runner=runner, timeout=2) as executor:
        answer, steps = _run(executor, ["kept = 'still here'", "import time\ntime.sleep(60)", "final_answer(kept)"])
        # On a failure, say what each step saw (it failed twice in fresh CI runs under load, never alone).
        assert answer == "still here", [(s.error, s.observations) for s in steps]
        assert "timed out after 2 seconds" in str(steps[1].error)
        assert "variables are kept" in str(steps[1].error)
    assert runner.list_sessions() == []


def test_images_come_back_as_pil_images(executor: CoderunnerExecutor) -> None:
    from PIL import Image

    _, steps = _run(
        executor,
        [
            "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()",
            "from PIL import Image\nImage.new('RGB', (3, 2), 'red')",  # an image as the step's value
            "final_answer('done')",
        ],
    )
    plot, value = steps[0].action_output, steps[1].action_output
    assert isinstance(plot, Image.Image) and plot.size[0] > 100
    assert isinstance(value, Image.Image) and value.size == (3, 2)


def test_additional_args_and_tools_are_sent_into_the_session(executor: CoderunnerExecutor) -> None:
    @tool
    def double(n: int) -> int:
        """Double a number.

        Args:
            n: The number.
        """
        return n * 2

    model = ScriptedModel(["import os\nfinal_answer([double(data[0]), data[1], os.getpid() != PARENT])"])
    import os

    with CodeAgent(tools=[double], model=model, executor=executor, max_steps=1, verbosity_level=-1) as agent:
        answer = agent.run("go", additional_args={"data": [21, "b"], "PARENT": os.getpid()})
    assert answer == [42, "b", True]  # the tool ran in the session's interpreter, not in this process


def test_two_agents_are_isolated(runner: CodeRunner) -> None:
    with CoderunnerExecutor(runner=runner) as first, CoderunnerExecutor(runner=runner) as second:
        _run(first, ["secret = 'first'", "final_answer(secret)"])
        answer, steps = _run(second, ["print(secret)", "final_answer('isolated')"])
        assert answer == "isolated"
        assert "NameError" in str(steps[0].error)
        assert first.session_id != second.session_id
    assert runner.list_sessions() == []


def test_installing_an_import_the_session_already_has_is_a_no_op(runner: CodeRunner) -> None:
    with CoderunnerExecutor(["json", "numpy.*", "*"], runner=runner) as executor:
        assert executor.installed_packages == ["json", "numpy.*", "*"]


def test_a_cleaned_up_executor_says_so() -> None:
    executor = CoderunnerExecutor(runner="inprocess")
    executor.cleanup()
    executor.cleanup()  # idempotent
    with pytest.raises(AgentError, match="cleaned up"):
        executor("print(1)")


def test_constructs_from_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERUNNER_BACKEND", "inprocess")
    monkeypatch.setenv("CODERUNNER_POOL_SIZE", "0")
    executor = CoderunnerExecutor()
    try:
        assert executor("print('configured')").logs == "configured\n"
        assert executor._runner.backend.name == "inprocess"
    finally:
        executor.cleanup()


@pytest.mark.docker
def test_an_executor_that_made_its_runner_leaves_no_container() -> None:
    require_docker()
    from coderunner.backends.docker import LABEL_RUNNER, connect

    executor = CoderunnerExecutor(runner="docker")
    runner_id = executor._runner.backend._fleet.runner_id  # type: ignore[attr-defined]
    with CodeAgent(tools=[], model=ScriptedModel(["final_answer(1)"]), executor=executor, verbosity_level=-1) as agent:
        assert agent.run("go") == 1
    client = connect()
    try:
        assert client.api.containers(all=True, filters={"label": f"{LABEL_RUNNER}={runner_id}"}) == []
    finally:
        client.close()
