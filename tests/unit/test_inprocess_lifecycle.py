"""InProcess lifecycle: kernels are cleaned up on close, at exit, on expiry, and after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from coderunner import (
    CapacityError,
    CodeRunner,
    FileNotFoundInSessionError,
    InvalidRequestError,
    PathError,
    SessionNotFoundError,
)


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def _pids(runner: CodeRunner) -> list[int]:
    return [
        int(runner.execute("import os; print(os.getpid())").stdout),
        int(runner.execute("echo $$", "bash").stdout),
        int(runner.execute("console.log(process.pid)", "javascript").stdout),
    ]


def test_close_stops_every_kernel_and_removes_dirs(tmp_path: Path) -> None:
    runner = CodeRunner(runtime_dir=str(tmp_path), pool_size=1)
    pids = _pids(runner)
    workdir = Path(runner.get_session_info().working_dir)
    child = int(runner.execute("sleep 300 & echo $!", "bash").stdout)
    assert workdir.is_dir()
    runner.close()
    for pid in [*pids, child]:
        assert _wait_gone(pid), f"process {pid} survived close()"
    assert not workdir.exists()
    assert list(tmp_path.glob("e-*")) == []


def test_interpreter_exit_without_close_cleans_up(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from coderunner import CodeRunner
        r = CodeRunner()
        print(r.execute("import os; print(os.getpid())").stdout.strip())
        print(r.execute("echo $$", "bash").stdout.strip(), flush=True)
        """
    )
    env = {**os.environ, "CODERUNNER_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    for pid in map(int, out.stdout.split()):
        assert _wait_gone(pid), f"kernel {pid} outlived its runner process"
    assert list(tmp_path.glob("e-*")) == []


@pytest.mark.serial  # its orphans must still be there when it looks: nothing else may reap or load meanwhile
def test_orphans_of_a_killed_runner_are_reaped_at_next_start(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, signal
        from coderunner import CodeRunner
        r = CodeRunner()
        print(r.execute("echo $$", "bash").stdout.strip())
        print(r.execute("console.log(process.pid)", "javascript").stdout.strip(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)   # no atexit, no finalizers: a real crash
        """
    )
    env = {**os.environ, "CODERUNNER_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == -signal.SIGKILL
    orphans = list(map(int, out.stdout.split()))
    assert len(orphans) == 2
    assert all(psutil.pid_exists(p) for p in orphans), "the crash should have left orphans to reap"
    assert len(list(tmp_path.glob("e-*"))) == 1
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0) as fresh:
        for pid in orphans:
            assert _wait_gone(pid), f"orphan {pid} was not reaped"
        assert [p.name for p in tmp_path.glob("e-*")] == [fresh.backend.engine.dir.name]  # type: ignore[attr-defined]


def test_idle_default_session_is_replaced_with_a_warning(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), idle_timeout=0.5, pool_size=0) as runner:
        runner.execute("x = 1")
        old = runner.session_id
        time.sleep(2.0)
        result = runner.execute("print('x' in dir())")
        assert result.stdout == "False\n"
        assert result.state_lost is True
        assert result.warnings and "idle" in result.warnings[0]
        assert runner.session_id != old
        with pytest.raises(SessionNotFoundError, match="expired"):
            runner.execute("print(1)", session_id=old)


def test_lifetime_ends_a_session(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0) as runner:
        s = runner.session(lifetime=0.5)
        time.sleep(2.0)
        with pytest.raises(SessionNotFoundError, match="lifetime"):
            s.execute("print(1)")
        assert not s.is_active()


def test_max_sessions_is_enforced_with_a_clear_message(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), max_sessions=2, pool_size=0) as runner:
        a = runner.session("bash")
        runner.session("bash")
        with pytest.raises(CapacityError, match="max_sessions"):
            runner.session("bash")
        a.close()
        runner.session("bash").close()


def test_warm_pool_refills(tmp_path: Path) -> None:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=1) as runner:
        engine = runner.backend.engine  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while runner.backend.stats()["pooled_kernels"] < 1 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        assert runner.backend.stats()["pooled_kernels"] == 1  # type: ignore[attr-defined]
        s = runner.session()
        assert s.execute("import os; print(os.getcwd())").stdout.strip() == s.info().working_dir
        assert engine is not None


async def test_sync_client_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    # Jupyter and FastAPI handlers call sync code from inside a loop; asyncio.run() would fail there.
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0) as runner:
        assert runner.execute("print('inside')").stdout == "inside\n"


def test_interrupts_work_when_the_caller_ignores_sigint(tmp_path: Path) -> None:
    # A program started in the background by a shell inherits SIGINT as ignored; bash would
    # then refuse to trap it and every timeout would cost the session its state.
    script = textwrap.dedent(
        """
        from coderunner import CodeRunner
        with CodeRunner(pool_size=0) as r:
            r.execute("kept=yes", "bash")
            t = r.execute("sleep 100", "bash", timeout=1)
            print(t.status, t.state_lost, r.execute("echo $kept", "bash").stdout.strip())
        """
    )
    env = {**os.environ, "CODERUNNER_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["timeout", "False", "yes"]


def test_absolute_paths_on_inprocess_are_the_hosts_only_when_asked(tmp_path: Path) -> None:
    """absolute_paths=True opens the host's filesystem to the file calls, with this process's rights."""
    target = tmp_path / "host" / "notes.txt"
    with CodeRunner(backend="inprocess", pool_size=0) as confined, pytest.raises(PathError, match="absolute_paths="):
        confined.write_file(str(target), "x")
    with CodeRunner(backend="inprocess", pool_size=0, absolute_paths=True) as runner:
        info = runner.write_file(str(target), "from a file call")
        assert info.path == str(target) and target.read_text() == "from a file call"
        assert runner.download_file(str(target)) == b"from a file call"
        assert [f.path for f in runner.list_files(str(target.parent))] == [str(target)]
        with pytest.raises(FileNotFoundInSessionError):
            runner.download_file(str(tmp_path / "missing.txt"))
        with pytest.raises(InvalidRequestError, match="is a directory"):
            runner.download_file(str(tmp_path))
        # Relative paths still start in, and stay in, the session directory.
        with pytest.raises(PathError):
            runner.write_file("../escape.txt", "x")


def test_an_engine_directory_appears_only_whole_and_a_crashed_staging_one_is_removed(tmp_path: Path) -> None:
    # Another process's sweep must never see a live engine's directory without its owner file: it would take it
    # for a crashed engine's, remove it and kill the engine's fork server and kernels.
    from coderunner.engine.engine import reap_orphans

    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0) as runner:
        runner.execute("pass")
        engine_dir = runner.backend.engine.dir  # type: ignore[attr-defined]
        assert (engine_dir / "owner.json").is_file()
        root = engine_dir.parent
        assert reap_orphans(root) == 0 and engine_dir.is_dir()
        assert runner.execute("print('alive')").stdout == "alive\n"
        young = root / ".e-1-young.new"
        (young / "pids").mkdir(parents=True)
        old = root / ".e-2-old.new"
        (old / "pids").mkdir(parents=True)
        os.utime(old, (time.time() - 3600, time.time() - 3600))
        reap_orphans(root)
        assert young.is_dir()  # it may be an engine starting right now
        assert not old.exists()  # left by a crash before the rename: nothing runs from it
