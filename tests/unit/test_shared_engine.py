"""One engine per process: InProcess runners share its loop thread and warm pool, never their sessions.

Each test gives its runners a runtime directory of their own (``tmp_path``), which keys the sharing: the
runners of one test share one engine, and no other test's runner (the conformance suite's, in the same
worker) joins it.
"""

from __future__ import annotations

import concurrent.futures
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from coderunner import CapacityError, CodeRunner, SessionNotFoundError
from coderunner.backends.inprocess import InProcessBackend
from coderunner.config import Settings
from coderunner.specs import ExecRequest

pytestmark = pytest.mark.timeout(240)


def _engine(runner: CodeRunner) -> Any:
    return runner.backend.engine  # type: ignore[attr-defined]


def _stats(runner: CodeRunner) -> dict[str, int]:
    stats: dict[str, int] = runner.backend.stats()  # type: ignore[attr-defined]
    return stats


def _eventually(check: Callable[[], bool], seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _gone(pid: int) -> bool:
    return _eventually(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)


def test_runners_share_the_engine_and_keep_their_sessions_apart(tmp_path: Path) -> None:
    a = CodeRunner(runtime_dir=str(tmp_path), language="bash", pool_size=0)
    b = CodeRunner(runtime_dir=str(tmp_path), language="bash", pool_size=0)
    assert _engine(a) is _engine(b)
    a_pid = int(a.execute("echo $$", "bash").stdout)
    b.execute("kept=yes", "bash")
    a_extra, b_extra = a.session("bash"), b.session("bash")
    a_ids = {a.session_id, a_extra.session_id}
    b_ids = {b.session_id, b_extra.session_id}
    assert {s.session_id for s in a.list_sessions()} == a_ids
    assert {s.session_id for s in b.list_sessions()} == b_ids

    # Another runner's session is unknown here, through every call, with the unknown id's message.
    theirs = a_extra.session_id
    calls: list[Callable[[], object]] = [
        lambda: b.backend.execute(theirs, ExecRequest("echo 1", "bash")),
        lambda: b.backend.get_session(theirs),
        lambda: b.backend.close_session(theirs),
        lambda: b.backend.interrupt(theirs),
        lambda: b.backend.upload_file(theirs, "x.txt", b"x"),
        lambda: b.backend.download_file(theirs, "x.txt"),
        lambda: b.backend.list_files(theirs),
    ]
    for call in calls:
        with pytest.raises(SessionNotFoundError, match="does not exist in this runner"):
            call()
    with pytest.raises(SessionNotFoundError, match="does not exist in this runner"):
        b.backend.get_session("never-created")
    assert a_extra.execute("echo still-here").stdout == "still-here\n"  # b's attempts left it alone

    # Closing a closes a's sessions only; b goes on with its state.
    a.close()
    assert _gone(a_pid)
    assert {s.session_id for s in b.list_sessions()} == b_ids
    assert b.execute("echo $kept", "bash").stdout == "yes\n"
    assert b_extra.execute("echo fine").stdout == "fine\n"
    assert _stats(b)["active_sessions"] == 2
    engine = _engine(b)

    # The last runner out shuts the engine down; a runner made afterwards starts a new one.
    b.close()
    assert not list(tmp_path.glob("e-*")), "the last runner's close removes the engine directory"
    with CodeRunner(runtime_dir=str(tmp_path), language="bash", pool_size=0) as c:
        assert c.execute("echo again", "bash").stdout == "again\n"
        assert _engine(c) is not engine
        assert [s.session_id for s in c.list_sessions()] == [c.session_id]


def test_a_runner_dropped_without_close_releases_its_sessions(tmp_path: Path) -> None:
    keeper = CodeRunner(runtime_dir=str(tmp_path), language="bash", pool_size=0)
    try:
        dropped = CodeRunner(runtime_dir=str(tmp_path), language="bash", pool_size=0)
        pid = int(dropped.execute("echo $$", "bash").stdout)
        sid = dropped.session_id
        assert sid is not None
        del dropped
        gc.collect()
        assert _gone(pid)
        assert not _engine(keeper).has_session(sid)
        assert keeper.execute("echo ok", "bash").stdout == "ok\n"
    finally:
        keeper.close()


def test_a_second_runners_first_session_is_a_warm_kernel(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=1) as first:
        first.execute("pass")  # takes the warm kernel; the pool starts its replacement
        assert _eventually(lambda: _stats(first)["pooled_kernels"] >= 1)
        before = _stats(first)
        with CodeRunner(runtime_dir=str(tmp_path), pool_size=1) as second:
            assert _engine(second) is _engine(first)
            assert second.execute("print(1)").stdout == "1\n"
            after = _stats(second)
        # Its kernel came from the pool (a hit), not from a start of its own (a miss).
        assert after["pool_hits"] == before["pool_hits"] + 1
        assert after["pool_misses"] == before["pool_misses"]
        # The counters of sessions and executions are each runner's own.
        assert (after["sessions_created"], after["executions"]) == (1, 1)


def test_each_runner_keeps_its_own_limits(tmp_path: Path) -> None:
    quick = CodeRunner(
        runtime_dir=str(tmp_path), language="bash", pool_size=0, timeout=1, max_output_chars=100, max_sessions=1
    )
    patient = CodeRunner(runtime_dir=str(tmp_path), language="bash", pool_size=0, timeout=120, idle_timeout=50)
    try:
        assert _engine(quick) is _engine(patient)
        assert quick.execute("sleep 30", "bash").status == "timeout"
        assert patient.execute("sleep 2; echo done", "bash").stdout == "done\n"
        assert len(quick.execute("head -c 1000 /dev/zero | tr '\\0' x", "bash").stdout) < 1000
        assert patient.execute("head -c 1000 /dev/zero | tr '\\0' x", "bash").stdout == "x" * 1000
        assert patient.get_session_info().idle_timeout == 50
        assert quick.get_session_info().idle_timeout == 3600
        # max_sessions is a per-runner cap: quick has its one, patient may open more.
        with pytest.raises(CapacityError, match="max_sessions=1"):
            quick.session("bash")
        patient.session("bash").close()
    finally:
        quick.close()
        patient.close()


def test_the_pool_follows_the_largest_live_runner(tmp_path: Path) -> None:
    small = CodeRunner(runtime_dir=str(tmp_path), pool_size=1)
    try:
        big = CodeRunner(runtime_dir=str(tmp_path), pool_size=2)
        assert _eventually(lambda: _stats(small)["pooled_kernels"] == 2)
        big.close()
        # The surplus is shut down at once: nothing was taken, so no recent demand keeps it.
        assert _eventually(lambda: _stats(small)["pooled_kernels"] == 1)
        assert _stats(small)["pool_target"] == 1
    finally:
        small.close()


def test_runners_made_and_closed_on_many_threads(tmp_path: Path) -> None:
    def one(n: int) -> str:
        with CodeRunner(runtime_dir=str(tmp_path), language="bash", pool_size=0) as runner:
            return runner.execute(f"echo {n}", "bash").stdout

    for _ in range(2):  # the second round starts a new engine, or joins one still being closed: both work
        with concurrent.futures.ThreadPoolExecutor(6) as threads:
            assert sorted(threads.map(one, range(6))) == sorted(f"{n}\n" for n in range(6))
    assert not list(tmp_path.glob("e-*"))


def test_opting_out_gives_a_runner_an_engine_of_its_own(tmp_path: Path) -> None:
    shared = InProcessBackend(Settings.from_env(runtime_dir=str(tmp_path), pool_size=0))
    own = InProcessBackend(Settings.from_env(runtime_dir=str(tmp_path), pool_size=0, shared_engine=False))
    try:
        assert own.engine is not shared.engine
        assert len(list(tmp_path.glob("e-*"))) == 2
    finally:
        own.close()
        shared.close()
    assert not list(tmp_path.glob("e-*"))
