"""Fork bombs in a Docker sandbox (``--pids-limit 256``): the session names the limit, offers the way out, recovers.

The engine inside the container is the InProcess one (tests/unit/test_engine_fork_bomb.py runs the same
scenarios in a pids cgroup of its own); here the container's own limit and init are the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from coderunner import CodeRunner, CodeRunnerError, Session

# serial: the bomb takes the CPU from every test beside it (their timeouts would pass for failures).
pytestmark = [pytest.mark.docker, pytest.mark.serial]

# The bomb: sleepers, children of the Python interpreter, until fork() fails.
_PYTHON_BOMB = "import os, time\nfor _ in range(10000):\n  if os.fork() == 0: time.sleep(600); os._exit(0)\n"


@pytest.fixture
def session(docker_runner: CodeRunner) -> Iterator[Session]:
    with docker_runner.session() as s:
        yield s


def _assert_recovered(session: Session) -> float:
    """bash (forking), JavaScript, the Python state and a timeout all work; returns the seconds they took."""
    start = time.monotonic()
    bash = session.execute("ls / | wc -l", "bash", timeout=30)
    assert bash.status == "ok" and int(bash.stdout) > 3, bash
    js = session.execute("console.log(6 * 7)", "javascript", timeout=30)
    assert js.stdout == "42\n", js
    kept = session.execute("print(x + 1)", timeout=30)
    assert kept.stdout == "42\n", kept  # the Python interpreter and its variables survived
    slow = session.execute("import time; time.sleep(30)", timeout=1)
    assert slow.status == "timeout" and slow.state_lost is False, slow
    return time.monotonic() - start


def test_python_sleeper_bomb_names_the_limit_and_interrupt_clears_it(session: Session) -> None:
    session.execute("x = 41")
    session.execute("true", "bash")  # bash is running before the bomb; JavaScript is not
    bomb = session.execute(_PYTHON_BOMB, timeout=60)
    assert bomb.status == "error" and bomb.error is not None, bomb
    assert "Resource temporarily unavailable" in bomb.error.value, bomb.error
    (warning,) = bomb.warnings
    assert "process limit is reached" in warning and "of 256 processes" in warning, warning
    assert "leftover processes of the python interpreter" in warning and "interrupt()" in warning, warning

    stuck = session.execute("ls / > /dev/null", "bash", timeout=3)  # bash cannot fork
    assert stuck.status in ("timeout", "error"), stuck
    assert any("leftover processes of the python interpreter" in w for w in stuck.warnings), stuck.warnings
    with pytest.raises(CodeRunnerError) as caught:  # node cannot even start
        session.execute("console.log(1)", "javascript", timeout=30)
    assert "process limit is reached" in caught.value.message, caught.value.message
    assert "python interpreter" in caught.value.message and "interrupt()" in caught.value.message

    assert session.interrupt() is False  # nothing was executing: the leftovers go anyway
    assert _assert_recovered(session) < 20


def test_a_timeout_ends_a_python_bomb(session: Session) -> None:
    session.execute("x = 41")
    bomb = session.execute(
        "import os, time\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(600)\n"
        "            os._exit(0)\nexcept OSError:\n    pass\ntime.sleep(600)\n",
        timeout=10,
    )
    assert bomb.status == "timeout" and bomb.state_lost is False, bomb
    assert any("python code had started" in w for w in bomb.warnings), bomb.warnings
    assert _assert_recovered(session) < 20


def test_classic_bash_bomb_ends_at_the_next_timeout(session: Session) -> None:
    session.execute("x = 41")
    assert session.execute(":(){ :|:& };:", "bash", timeout=5).status == "ok"  # it backgrounds itself
    time.sleep(0.5)
    stuck = session.execute("sleep 30", "bash", timeout=3)
    assert stuck.status in ("timeout", "error"), stuck
    assert _assert_recovered(session) < 20
    # The kernel's own loop must not call the user's `:` function: the bomb stays gone.
    time.sleep(2)
    assert session.execute("ls / | wc -l", "bash", timeout=10).status == "ok"
