"""Fork bombs on the InProcess engine at a real process limit: a pids cgroup created for the test (needs root).

The runner runs in a child process moved into the cgroup, under a tiny init that collects orphans
(as Docker's ``--init`` does in the sandbox; this machine's init may not). Each scenario checks that
the failure names the process limit and whose processes hold it, that the way out it names works, and
that bash, JavaScript and a timeout all work again within seconds, with the Python state kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# serial: a fork bomb fills the per-user process limit that every test running beside it shares.
pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(300)]

# Room for the runner (its threads count: the engine's, jupyter's), a Python, a bash and a node kernel.
_PIDS_MAX = 160


def _cgroup_parent() -> Path | None:
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").is_file():
        return v1
    v2 = Path("/sys/fs/cgroup")
    control = v2 / "cgroup.subtree_control"
    if control.is_file() and "pids" in control.read_text().split():
        return v2
    return None


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A fresh pids cgroup with ``pids.max`` set; whatever is left in it is killed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a pids cgroup needs root")
    parent = _cgroup_parent()
    if parent is None:
        pytest.skip("no pids cgroup controller is mounted (looked at /sys/fs/cgroup/pids and cgroup v2)")
    path = parent / f"coderunner-test-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(_PIDS_MAX))
    except OSError as exc:
        pytest.skip(f"cannot create a pids cgroup under {parent}: {exc}")
    try:
        yield path
    finally:
        for _ in range(100):
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:  # only processes of this test's own cgroup
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)


# Joins the cgroup, becomes a subreaper, runs the scenario in a child and collects every orphan until it exits.
_INIT = textwrap.dedent(
    """
    import ctypes, os, sys
    with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as fh:
        fh.write(str(os.getpid()))
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    child = os.fork()
    if child == 0:
        os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], *sys.argv[3:]])
    while True:
        pid, status = os.wait()
        if pid == child:
            sys.exit(os.waitstatus_to_exitcode(status))
    """
)

_PRELUDE = textwrap.dedent(
    """
    import json, sys, time
    from coderunner import BackendError, CodeRunner
    cgroup, out = sys.argv[1], sys.argv[2]
    report = {}

    def used():
        return int(open(cgroup + "/pids.current").read())

    def brief(result):
        return {"status": result.status, "stdout": result.stdout, "stderr": result.stderr[-2000:],
                "error": result.error.value if result.error else None, "warnings": result.warnings,
                "state_lost": result.state_lost}

    def recovered(r):
        # bash (forking), JavaScript, the Python state and a timeout, timed together.
        start = time.monotonic()
        got = {
            "bash": brief(r.execute("ls / | wc -l", "bash", timeout=30)),
            "javascript": brief(r.execute("console.log(6 * 7)", "javascript", timeout=30)),
            "python": brief(r.execute("print(x + 1)", timeout=30)),
            "timeout": brief(r.execute("import time; time.sleep(30)", timeout=1)),
        }
        got["seconds"] = time.monotonic() - start
        got["used"] = used()
        return got

    r = CodeRunner(pool_size=0, interrupt_grace=5)
    r.execute("x = 41")
    r.execute("true", "bash")
    report["baseline"] = used()
    """
)
_EPILOGUE = textwrap.dedent(
    """
    r.close()
    with open(out, "w") as fh:
        json.dump(report, fh)
    """
)


def _run(cgroup: Path, tmp_path: Path, scenario: str) -> dict[str, Any]:
    out = tmp_path / "report.json"
    script = _PRELUDE + textwrap.dedent(scenario) + _EPILOGUE
    env = {**os.environ, "CODERUNNER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with (tmp_path / "log").open("wb") as log:
        proc = subprocess.run(
            [sys.executable, "-c", _INIT, str(cgroup), script, str(cgroup), str(out)],
            stdout=log,
            stderr=log,
            env=env,
            timeout=240,
        )
    log_text = (tmp_path / "log").read_text(errors="replace")
    assert proc.returncode == 0, log_text[-5000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def _check_recovered(got: dict[str, Any], baseline: int) -> None:
    assert got["bash"]["status"] == "ok" and int(got["bash"]["stdout"]) > 3, got["bash"]
    assert got["javascript"]["stdout"] == "42\n", got["javascript"]
    assert got["python"]["stdout"] == "42\n", got["python"]  # the interpreter and its state survived
    assert got["timeout"]["status"] == "timeout" and got["timeout"]["state_lost"] is False, got["timeout"]
    assert got["seconds"] < 20, got  # bash, node start and the timeout itself take a few seconds
    assert got["used"] < baseline + 40, got  # the bomb's processes are gone (node and its threads came)


def test_python_sleeper_bomb_is_explained_and_interrupt_clears_it(pids_cgroup: Path, tmp_path: Path) -> None:
    report = _run(
        pids_cgroup,
        tmp_path,
        """
        bomb = (
            "import os, time\\n"
            # A few sleepers that leave the session and are re-parented (double fork), then plain ones.
            "for _ in range(5):\\n"
            "    mid = os.fork()\\n"
            "    if mid == 0:\\n"
            "        os.setsid()\\n"
            "        if os.fork() == 0:\\n"
            "            time.sleep(600)\\n"
            "        os._exit(0)\\n"
            "    os.waitpid(mid, 0)\\n"
            "for _ in range(10000):\\n"
            "    if os.fork() == 0:\\n"
            "        time.sleep(600)\\n"
            "        os._exit(0)\\n"
        )
        report["bomb"] = brief(r.execute(bomb, timeout=60))
        report["full"] = used()
        report["bash_during"] = brief(r.execute("ls / > /dev/null", "bash", timeout=3))
        try:
            r.execute("console.log(1)", "javascript", timeout=30)
            report["javascript_during"] = "started"
        except BackendError as exc:
            report["javascript_during"] = exc.message
        report["interrupt"] = r.interrupt()
        report["after"] = recovered(r)
        """,
    )
    bomb = report["bomb"]
    assert bomb["status"] == "error" and "Resource temporarily unavailable" in (bomb["error"] or ""), bomb
    assert report["full"] >= _PIDS_MAX - 8, report
    # The result of the bomb itself says what happened and what to do.
    (warning,) = bomb["warnings"]
    assert "process limit is reached" in warning and f"of {_PIDS_MAX} processes" in warning, warning
    assert "pids.max" in warning and "leftover processes of the python interpreter" in warning, warning
    assert "interrupt()" in warning, warning
    # bash cannot fork: it times out (the timeout kills bash's own leftovers: none) and says why.
    during = report["bash_during"]
    assert during["status"] in ("timeout", "error"), during
    assert any("leftover processes of the python interpreter" in w for w in during["warnings"]), during
    # node cannot start at all: the error says so, with the way out.
    message = report["javascript_during"]
    assert "process limit is reached" in message and "python interpreter" in message, message
    assert "interrupt()" in message, message
    assert report["interrupt"] is False  # nothing was executing; the leftovers went anyway
    _check_recovered(report["after"], report["baseline"])


def test_a_timeout_ends_a_python_bomb_and_keeps_the_interpreter(pids_cgroup: Path, tmp_path: Path) -> None:
    report = _run(
        pids_cgroup,
        tmp_path,
        """
        bomb = (
            "import os, time\\n"
            "try:\\n"
            "    while True:\\n"
            "        if os.fork() == 0:\\n"
            "            time.sleep(600)\\n"
            "            os._exit(0)\\n"
            "except OSError:\\n"
            "    pass\\n"
            "time.sleep(600)\\n"
        )
        # Long enough for the loop to reach the limit and sleep even on a busy machine: interrupted while it
        # still forks, Python may drop the KeyboardInterrupt (raised in an at-fork handler) and be restarted.
        report["bomb"] = brief(r.execute(bomb, timeout=10))
        report["after"] = recovered(r)
        """,
    )
    bomb = report["bomb"]
    assert bomb["status"] == "timeout" and bomb["state_lost"] is False, bomb
    assert any("killed" in w and "python code had started" in w for w in bomb["warnings"]), bomb
    _check_recovered(report["after"], report["baseline"])


def test_a_bash_fork_bomb_ends_at_the_next_timeout(pids_cgroup: Path, tmp_path: Path) -> None:
    report = _run(
        pids_cgroup,
        tmp_path,
        """
        report["bomb"] = brief(r.execute(":(){ :|:& };:", "bash", timeout=5))
        # It fills the cgroup within a moment (and, at the limit, dies out within seconds).
        limit = int(open(cgroup + "/pids.max").read())
        deadline = time.monotonic() + 10
        while used() < limit - 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        report["full"] = used()
        report["stuck"] = brief(r.execute("sleep 30", "bash", timeout=2))
        report["after_stuck"] = used()
        report["after"] = recovered(r)
        """,
    )
    assert report["full"] >= _PIDS_MAX - 8, report  # the bomb really held the limit
    stuck = report["stuck"]
    # Usually interrupted with its state kept; a bash stuck in its fork retries may not answer the interrupt,
    # or exit when they are cut short (bash's own rules), and is then replaced. Either way the bomb is gone
    # when the result comes: killed (the warning says how many), or, at the limit, already died out.
    assert stuck["status"] in ("timeout", "error"), stuck
    assert report["after_stuck"] < report["baseline"] + 5, report
    assert all(re.fullmatch(r"killed \d+ processes the bash code had started .*", w) for w in stuck["warnings"])
    _check_recovered(report["after"], report["baseline"])
