"""Python kernels forked from the engine's fork server are separate, clean processes, and are cleaned up.

The conformance suite judges behaviour on forked kernels (the default) and on spawned ones (the
``inprocess-spawn`` provider); these tests check what forking itself could get wrong: state, modules, open
files or random streams shared between sessions, the server's death, and clean-up of its children.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from coderunner import CodeRunner
from coderunner.engine import processes
from coderunner.engine.forkserver import fork_supported

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not fork_supported(), reason="kernels are spawned on this system (no safe fork)"),
]


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[CodeRunner]:
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0, kernel_start="fork") as r:
        yield r


def _engine(runner: CodeRunner) -> Any:
    return runner.backend.engine  # type: ignore[attr-defined]


def _kernel(runner: CodeRunner, session_id: str) -> Any:
    return _engine(runner).session(session_id).kernels["python"]


def _server_pid(runner: CodeRunner) -> int:
    server = _engine(runner)._forkserver
    assert server is not None and server.pid is not None
    return int(server.pid)


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_sessions_are_forked_children_of_the_server(runner: CodeRunner) -> None:
    a, b = runner.session(), runner.session()
    pa = int(a.execute("import os; print(os.getpid())").stdout)
    pb = int(b.execute("import os; print(os.getpid())").stdout)
    assert pa != pb
    assert _kernel(runner, a.session_id).forked and _kernel(runner, b.session_id).forked
    server = _server_pid(runner)
    assert psutil.Process(pa).ppid() == server == psutil.Process(pb).ppid()
    # Each leads its own process group and session, like a spawned kernel (interrupts and kills reach `!cmd`).
    assert os.getpgid(pa) == pa and os.getsid(pa) == pa


def test_forked_sessions_share_no_state_modules_or_open_files(runner: CodeRunner, tmp_path: Path) -> None:
    a, b = runner.session(), runner.session()
    secret = tmp_path / "a-only.txt"
    setup = a.execute(
        textwrap.dedent(
            f"""
            secret_value = 42
            import json, ipykernel
            json.dumps = lambda *args, **kwargs: "patched"     # a module the server imported? json is
            ipykernel.__version__ = "patched"                   # ipykernel certainly is
            held = open({str(secret)!r}, "w")
            print(json.dumps([1]), ipykernel.__version__)
            """
        )
    )
    assert setup.error is None, setup.error
    assert setup.stdout.split() == ["patched", "patched"]
    check = b.execute(
        textwrap.dedent(
            f"""
            import json, ipykernel, os
            print("secret_value" in dir())
            print(json.dumps([1]), ipykernel.__version__ != "patched")
            fds = os.listdir("/proc/self/fd")
            print(any(os.path.realpath(f"/proc/self/fd/{{fd}}") == {str(secret)!r} for fd in fds))
            """
        )
    )
    assert check.error is None, check.error
    assert check.stdout.split("\n")[:3] == ["False", "[1] True", "False"]


def test_forked_sessions_draw_different_random_numbers(runner: CodeRunner) -> None:
    code = "import random, tempfile, uuid; print(random.random(), tempfile.mktemp(), uuid.uuid4())"
    outs = {runner.session().execute(code).stdout for _ in range(3)}
    assert len(outs) == 3
    assert all(len(set(o.split())) == 3 for o in outs)


def test_a_forked_kernel_has_the_session_directory_environment_and_import_path(runner: CodeRunner) -> None:
    s = runner.session(env={"GREETING": "hello"})
    s.write_file("mymod.py", "VALUE = 7\n")
    out = s.execute("import os, sys, mymod; print(os.getcwd() == sys.path[0], os.environ['GREETING'], mymod.VALUE)")
    assert out.error is None, out.error
    assert out.stdout.split() == ["True", "hello", "7"]
    # What /proc shows of its environment carries its own tag, so its leftovers are found by it (processes.py).
    kernel = _kernel(runner, s.session_id)
    environ = Path(f"/proc/{kernel.pid}/environ").read_bytes().split(b"\0")
    assert f"{processes.TAG_VAR}={kernel.tag}".encode() in environ


def test_a_pooled_kernel_enters_its_session_before_the_first_code_runs(tmp_path: Path) -> None:
    # A kernel from the warm pool moves into its session with the session's first execution (no execution of
    # its own): that execution, and a command it starts, already see the session's directory and environment.
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=1, kernel_start="fork") as runner:
        s = runner.session(env={"GREETING": "hello"})
        assert _engine(runner).totals["pool_hits"] == 1
        s.write_file("mymod.py", "VALUE = 7\n")
        out = s.execute(
            "import os, sys, mymod; print(os.getcwd() == sys.path[0], os.environ['GREETING'], mymod.VALUE)\n"
            "!pwd; echo $GREETING"
        )
        assert out.error is None, out.error
        where = str(_engine(runner).session(s.session_id).working_dir)
        assert out.stdout.split() == ["True", "hello", "7", where, "hello"]
        assert psutil.Process(_kernel(runner, s.session_id).pid).cwd() == where


def test_a_kernel_that_cannot_enter_its_session_runs_no_code(tmp_path: Path) -> None:
    from coderunner.engine import python_hooks

    parent: dict[str, Any] = {"content": {"code": "print('ran')"}}
    before = os.getcwd()
    python_hooks._enter_session({"cwd": str(tmp_path / "missing"), "env": {}}, parent)
    assert os.getcwd() == before
    assert parent["content"]["code"].startswith("raise RuntimeError(")
    assert "close the session and open a new one" in parent["content"]["code"]


def test_a_session_with_other_interpreter_variables_is_spawned(runner: CodeRunner, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "fromextra.py").write_text("NAME = 'extra'\n")
    s = runner.session(env={"PYTHONPATH": str(extra)})
    out = s.execute("import fromextra; print(fromextra.NAME)")
    assert out.stdout == "extra\n", out.error
    assert not _kernel(runner, s.session_id).forked


def test_a_killed_fork_server_is_replaced_and_its_kernels_keep_working(runner: CodeRunner) -> None:
    before = runner.session()
    before.execute("kept = 'yes'")
    old_server = _server_pid(runner)
    os.kill(old_server, signal.SIGKILL)
    assert _wait_gone(old_server)
    # The kernel it forked is not its to take along.
    assert before.execute("print(kept)").stdout == "yes\n"
    after = runner.session()
    out = after.execute("import os; print(os.getppid())")
    assert out.error is None, out.error
    new_server = _server_pid(runner)
    assert new_server != old_server and int(out.stdout) == new_server
    assert _kernel(runner, after.session_id).forked


def test_a_forked_kernel_is_reaped_at_close(runner: CodeRunner) -> None:
    s = runner.session()
    pid = int(s.execute("import os; print(os.getpid())").stdout)
    s.close()
    # Reaped by the server, its parent: not even a zombie is left.
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(pid)


def test_a_dead_forked_kernel_is_reported_with_its_signal(runner: CodeRunner) -> None:
    s = runner.session()
    s.execute("x = 1")
    result = s.execute("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert result.state_lost is True
    assert "signal 9" in (result.error.value if result.error else "") or "SIGKILL" in str(result.error)
    assert s.execute("print('x' in dir())").stdout == "False\n"


_OWNER = textwrap.dedent(
    """
    import os, signal, sys
    from coderunner import CodeRunner
    r = CodeRunner(pool_size=0, kernel_start="fork")
    kernel, server = r.execute("import os; print(os.getpid(), os.getppid())").stdout.split()
    print(kernel, server, flush=True)
    if sys.argv[1] == "all":  # the fork server dies too: nobody is left to kill the kernel but the next start
        os.kill(int(server), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)   # no atexit, no finalizers: a real crash
    """
)


def _crash_owner(tmp_path: Path, how: str) -> tuple[int, int]:
    env = {**os.environ, "CODERUNNER_RUNTIME_DIR": str(tmp_path)}
    # Its stderr to a file: kernels write theirs there too, and an orphan would hold a pipe open.
    with open(tmp_path / "owner.err", "w") as err:
        out = subprocess.run(
            [sys.executable, "-c", _OWNER, how], stdout=subprocess.PIPE, stderr=err, text=True, env=env, timeout=120
        )
    assert out.returncode == -signal.SIGKILL, (tmp_path / "owner.err").read_text()
    kernel, server = map(int, out.stdout.split())
    return kernel, server


def test_the_fork_server_kills_its_kernels_when_its_owner_dies(tmp_path: Path) -> None:
    kernel, server = _crash_owner(tmp_path, "owner")
    assert _wait_gone(kernel), "a forked kernel outlived its owner"
    assert _wait_gone(server), "the fork server outlived its owner"


@pytest.mark.serial  # its orphan must still be there when it looks: nothing else may reap meanwhile
def test_an_orphaned_forked_kernel_is_reaped_at_the_next_start(tmp_path: Path) -> None:
    kernel, server = _crash_owner(tmp_path, "all")
    assert _wait_gone(server)
    assert psutil.pid_exists(kernel), "the crash should have left the kernel to reap"
    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0):
        assert _wait_gone(kernel), f"orphaned kernel {kernel} was not reaped"


def test_the_server_prepares_what_every_kernel_shares(runner: CodeRunner) -> None:
    runner.execute("pass")
    server = _engine(runner)._forkserver
    # The app's configuration, coderunner's hooks and the interactive shell are made once in the server.
    assert server.prepared and server.hooks_loaded and server.shell_built


def test_a_shell_built_by_the_server_is_each_kernels_own(runner: CodeRunner, tmp_path: Path) -> None:
    # What one session does to its shell (magics, aliases, configuration, history, namespace) stays in it.
    a = runner.session()
    setup = a.execute(
        textwrap.dedent(
            """
            from IPython.core.magic import register_line_magic
            @register_line_magic
            def shout(line):
                return line.upper()
            get_ipython().alias_manager.define_alias("hello_alias", "echo hello")
            get_ipython().ast_node_interactivity = "all"
            get_ipython().user_ns["planted"] = 1
            %cd /
            print(len(In), "ok")
            """
        )
    )
    assert setup.error is None, setup.error
    assert setup.stdout.strip().endswith("ok")
    b = runner.session(env={"TMPDIR": str(tmp_path)})
    check = b.execute(
        textwrap.dedent(
            """
            import os, tempfile
            ip = get_ipython()
            print("shout" in ip.magics_manager.magics["line"], ip.alias_manager.is_alias("hello_alias"))
            print(ip.ast_node_interactivity, "planted" in ip.user_ns, len(In))
            print(ip.kernel is not None and ip.kernel.shell is ip and ip.parent is ip.kernel)
            print(str(_dh[0]) == os.getcwd() == ip.starting_dir, os.environ["PAGER"], tempfile.gettempdir())
            """
        )
    )
    assert check.error is None, check.error
    lines = check.stdout.splitlines()
    assert lines[:3] == ["False False", "last_expr False 2", "True"], check.stdout
    assert lines[3] == f"True cat {tmp_path}", check.stdout


async def test_a_kernel_with_other_arguments_than_the_prepared_ones_still_starts(tmp_path: Path) -> None:
    from coderunner.engine.base import NullSink
    from coderunner.engine.forkserver import ForkServer
    from coderunner.engine.python import PythonKernel

    server = ForkServer(sys.executable, dict(os.environ), kernel_args=["--HistoryManager.enabled=True"])
    kernel = PythonKernel(forkserver=server)
    try:
        await kernel.start(tmp_path, dict(os.environ), tmp_path)
        assert kernel.forked and server.prepared
        reply = await kernel.execute("assert 6 * 7 == 42", NullSink())
        assert reply.error is None and reply.exit_code == 0
    finally:
        await kernel.shutdown()
        await server.close()


async def test_a_server_whose_shell_starts_a_thread_runs_again_without_it(tmp_path: Path) -> None:
    # A shell that starts a thread (an IPython or extension of another make) would leave no fork safe: the
    # server then runs again without building it, and its kernels build their own.
    from coderunner.engine.base import NullSink
    from coderunner.engine.forkserver import ForkServer
    from coderunner.engine.python import PythonKernel

    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import threading, time
            from ipykernel.zmqshell import ZMQInteractiveShell
            _init_magics = ZMQInteractiveShell.init_magics
            def init_magics(self):
                _init_magics(self)
                threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
            ZMQInteractiveShell.init_magics = init_magics
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    server = ForkServer(sys.executable, env, kernel_args=["--HistoryManager.enabled=False"])
    kernel = PythonKernel(forkserver=server)
    work = tmp_path / "work"
    work.mkdir()
    try:
        await kernel.start(work, env, work)
        assert kernel.forked and server.prepared and not server.shell_built
        reply = await kernel.execute("assert get_ipython().kernel.shell is get_ipython()", NullSink())
        assert reply.error is None and reply.exit_code == 0, reply.error
    finally:
        await kernel.shutdown()
        await server.close()


def test_a_forked_kernel_installs_the_hooks_before_it_starts(tmp_path: Path) -> None:
    # The setup a fresh kernel would get as its first, silent execution is done in the child, before it serves.
    with (
        CodeRunner(runtime_dir=str(tmp_path), pool_size=0, kernel_start="fork", max_output_chars=1000) as r,
        r.session() as s,
    ):
        assert _kernel(r, s.session_id)._proc.set_up
        capped = s.execute("print('x' * 50_000)")  # the first execution is already capped by the hooks
        assert len(capped.stdout) < 5000 and "x" * 100 in capped.stdout
        exited = s.execute("import sys\nsys.exit(3)")  # and IPython's 'To exit: use' warning is filtered
        assert exited.exit_code == 3 and "To exit" not in exited.stderr
