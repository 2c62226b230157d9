"""The user's processes never outlive what they belong to, and a dead interpreter is never replaced silently.

Processes started by the user's code (in the background, with ``setsid``, double-forked so that they are
re-parented) are killed when an execution times out or is interrupted (the interpreter and its variables
stay), when the session or the runner closes, at interpreter exit, and by the next runner's orphan sweep
after a crash. An interpreter killed from outside between calls makes the next result say ``state_lost``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from coderunner import CodeRunner

# serial: these scan and kill processes by tag and count them; nothing else should start processes meanwhile.
pytestmark = [pytest.mark.timeout(180), pytest.mark.serial]

# Each snippet starts three sleepers: a plain child, one in a new session (setsid) and one double-forked
# in a new session (its parent exits, so it is re-parented away from the interpreter), prints their pids
# and returns. They escape the interpreter's process group, so killing the group does not reach them.
_SPAWN = {
    "python": textwrap.dedent(
        """
        import os, subprocess, time
        a = subprocess.Popen(["sleep", "1000"])
        b = subprocess.Popen(["setsid", "sleep", "1000"])
        r, w = os.pipe()
        mid = os.fork()
        if mid == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(w, str(os.getpid()).encode())
                time.sleep(1000)
            os._exit(0)
        os.waitpid(mid, 0)
        print(a.pid, b.pid, int(os.read(r, 20)), flush=True)
        """
    ),
    "bash": textwrap.dedent(
        """
        sleep 1000 &
        a=$!
        setsid sleep 1000 &
        b=$!
        c=$(setsid bash -c 'sleep 1000 >/dev/null 2>&1 & echo $!')
        echo $a $b $c
        """
    ),
    "javascript": textwrap.dedent(
        """
        const cp = require('child_process');
        const a = cp.spawn('sleep', ['1000'], {stdio: 'ignore'});
        const b = cp.spawn('sleep', ['1000'], {stdio: 'ignore', detached: true});
        const c = cp.execSync("setsid bash -c 'sleep 1000 >/dev/null 2>&1 & echo $!'").toString().trim();
        console.log(a.pid, b.pid, c);
        """
    ),
}
# Code that blocks until the time limit interrupts it.
_BLOCK = {
    "python": "import time\ntime.sleep(120)",
    "bash": "sleep 120",
    "javascript": "const end = Date.now() + 120000; while (Date.now() < end) {}",
}
_SET = {"python": "kept = 41", "bash": "kept=41", "javascript": "var kept = 41;"}
_GET = {"python": "print(kept + 1)", "bash": "echo $((kept + 1))", "javascript": "console.log(kept + 1)"}
_PID = {"python": "import os; print(os.getpid())", "bash": "echo $$", "javascript": "console.log(process.pid)"}
LANGUAGES = ["python", "bash", "javascript"]


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    """The pids still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _wait_dead(pid: int, seconds: float = 10.0) -> bool:
    """Wait until ``pid`` has exited completely: a multithreaded process shows as a zombie while its other
    threads still exit, and its parent cannot collect it (nor learn that it died) before they have."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE and proc.num_threads() <= 1:
                return True
        except psutil.Error:
            return True
        time.sleep(0.02)
    return False


def _spawn(runner: CodeRunner, language: str, session_id: str | None = None) -> list[int]:
    result = runner.execute(_SPAWN[language], language, timeout=60, session_id=session_id)
    assert result.status == "ok", result
    pids = [int(p) for p in result.stdout.split()]
    assert len(pids) == 3 and all(_alive(p) for p in pids), result.stdout
    return pids


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[CodeRunner]:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0, interrupt_grace=5) as r:
        yield r


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_timeout_kills_leftovers_and_keeps_the_interpreter(runner: CodeRunner, language: str) -> None:
    runner.execute(_SET[language], language)
    kernel_pid = int(runner.execute(_PID[language], language).stdout)
    pids = _spawn(runner, language)
    result = runner.execute(_BLOCK[language], language, timeout=1)
    assert result.status == "timeout", result
    assert result.state_lost is False
    assert _wait_gone(pids) == [], "leftover processes survived the timeout"
    assert any(re.search(rf"killed \d+ processes the {language} code", w) for w in result.warnings), result.warnings
    assert _alive(kernel_pid)
    after = runner.execute(_GET[language], language)
    assert after.stdout.strip() == "42", after  # the interpreter and its variables survived


def test_cancelling_an_execution_kills_its_leftovers(runner: CodeRunner) -> None:
    pids = _spawn(runner, "bash")
    task = runner.execute_async("sleep 120", "bash")
    time.sleep(1.0)
    runner.cancel_task(task)
    assert runner.get_task_result(task).status == "cancelled"
    assert _wait_gone(pids) == []


def test_interrupt_when_idle_kills_what_the_session_left_running(runner: CodeRunner) -> None:
    runner.execute("kept = 41")
    pids = _spawn(runner, "python") + _spawn(runner, "bash") + _spawn(runner, "javascript")
    assert runner.interrupt() is False  # no execution was running
    assert _wait_gone(pids) == []
    assert runner.execute("print(kept + 1)").stdout == "42\n"
    assert runner.execute("echo ok", "bash").stdout == "ok\n"


def test_other_sessions_leftovers_are_not_touched(runner: CodeRunner) -> None:
    with runner.session("bash") as other:
        theirs = _spawn(runner, "bash", session_id=other.session_id)
        mine = _spawn(runner, "bash")
        runner.execute("sleep 120", "bash", timeout=1)
        assert _wait_gone(mine) == []
        assert all(_alive(p) for p in theirs)
    assert _wait_gone(theirs) == []  # closing that session took them


def test_session_close_kills_setsid_and_double_forked_children(runner: CodeRunner) -> None:
    with runner.session("python") as s:
        pids = _spawn(runner, "python", session_id=s.session_id) + _spawn(runner, "bash", session_id=s.session_id)
    assert _wait_gone(pids) == [], "processes escaped session close"


def test_runner_close_kills_every_leftover(tmp_path: Path) -> None:
    runner = CodeRunner(runtime_dir=str(tmp_path), pool_size=0)
    pids = [p for lang in LANGUAGES for p in _spawn(runner, lang)]
    runner.close()
    assert _wait_gone(pids) == [], "processes escaped runner close"


def _script(body: str) -> str:
    return textwrap.dedent(
        """
        import os, signal, sys
        from coderunner import CodeRunner
        r = CodeRunner(pool_size=0)
        pids = []
        for lang, code in SPAWN.items():
            res = r.execute(code, lang, timeout=60)
            assert res.status == "ok", res
            pids += res.stdout.split()
        with open(sys.argv[1], "w") as fh:  # not stdout: the leftovers hold it open
            fh.write(" ".join(pids))
        """
    ).replace("SPAWN", repr(_SPAWN)) + textwrap.dedent(body)


def _run_script(tmp_path: Path, script: str) -> tuple[int, str, list[int]]:
    """Run ``script`` in a fresh interpreter with its runtime directory in ``tmp_path``: (status, stderr, pids)."""
    env = {**os.environ, "CODERUNNER_RUNTIME_DIR": str(tmp_path / "runtime")}
    pid_file, err_file = tmp_path / "pids", tmp_path / "stderr"
    with err_file.open("wb") as err:
        # Output to files, not pipes: processes that outlive the script would hold a pipe open.
        proc = subprocess.run(
            [sys.executable, "-c", script, str(pid_file)], stdout=err, stderr=err, env=env, timeout=120
        )
    text = pid_file.read_text() if pid_file.exists() else ""
    return proc.returncode, err_file.read_text(), [int(p) for p in text.split()]


def test_interpreter_exit_without_close_kills_leftovers(tmp_path: Path) -> None:
    returncode, stderr, pids = _run_script(tmp_path, _script(""))
    assert returncode == 0, stderr
    assert len(pids) == 9
    assert _wait_gone(pids) == [], "processes outlived their runner's process"


def test_leftovers_of_a_killed_runner_are_reaped_by_the_next_start(tmp_path: Path) -> None:
    script = _script("os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no finalizers: a real crash\n")
    returncode, stderr, pids = _run_script(tmp_path, script)
    assert returncode == -signal.SIGKILL, stderr
    assert len(pids) == 9
    try:
        time.sleep(0.5)
        # The Python kernel's fork server saw its owner go and killed the kernel's process group, which held the
        # first sleeper (pids[0], a plain child); the ones that left the group are the next start's to find.
        assert all(_alive(p) for p in pids[1:]), "the crash should have left processes to reap"
        with CodeRunner(runtime_dir=str(tmp_path / "runtime"), pool_size=0):
            assert _wait_gone(pids) == [], "the next start did not reap the crashed runner's processes"
    finally:
        for pid in pids:  # do not leave them behind when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_interpreter_killed_between_calls_is_reported(runner: CodeRunner, language: str) -> None:
    runner.execute(_SET[language], language)
    pid = int(runner.execute(_PID[language], language).stdout)
    os.kill(pid, signal.SIGKILL)
    assert _wait_dead(pid)
    result = runner.execute(_PID[language], language)
    assert result.status == "ok"
    assert int(result.stdout) != pid
    assert result.state_lost is True
    assert len(result.warnings) == 1, result.warnings
    warning = result.warnings[0]
    assert language in warning and "while idle" in warning and "SIGKILL" in warning, warning
    assert "variables" in warning
    again = runner.execute(_PID[language], language)
    assert again.state_lost is False and again.warnings == []


def test_an_interpreter_that_exited_between_calls_reports_its_status(runner: CodeRunner) -> None:
    # The shell exits by itself after its snippet returned (a background `kill $$`), so the next call finds it dead.
    runner.execute("(sleep 0.2; kill -TERM $$) &", "bash")
    time.sleep(1.5)
    result = runner.execute("echo fresh", "bash")
    assert result.stdout == "fresh\n"
    assert result.state_lost is True
    assert "SIGTERM" in result.warnings[0] and "while idle" in result.warnings[0], result.warnings


def test_bash_functions_named_like_the_loops_builtins_are_not_run_by_it(runner: CodeRunner, tmp_path: Path) -> None:
    # The classic fork bomb defines `:`; the kernel's own loop must not call it between executions.
    log = tmp_path / "calls"
    runner.execute(f":() {{ echo ':' >> {log}; }}; set() {{ echo set >> {log}; builtin set \"$@\"; }}", "bash")
    for _ in range(3):
        assert runner.execute("echo ok", "bash").stdout == "ok\n"
    runner.execute("sleep 30", "bash", timeout=0.5)  # the interrupt path of the loop, too
    assert runner.execute("echo ok", "bash").stdout == "ok\n"
    assert not log.exists(), log.read_text()


def test_a_scan_since_a_start_reads_tags_only_of_processes_started_then_or_later() -> None:
    from coderunner.engine import processes

    tag = "e-scan-test:000000000000"
    proc = subprocess.Popen(["sleep", "30"], env={**os.environ, processes.TAG_VAR: tag})
    try:
        deadline = time.monotonic() + 10  # until exec: before it, /proc shows the forking parent's environment
        while b"sleep" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        mark = processes.start_mark(proc.pid)
        assert mark is not None
        assert processes.scan(since=mark)[proc.pid].tag == tag
        assert processes.scan(since=mark + 1)[proc.pid].tag is None  # older than asked: its environment is not read
        assert processes.scan()[proc.pid].tag == tag
    finally:
        proc.kill()
        proc.wait()
