"""BashKernel against the real bash: persistence, streams, exit codes, interrupts, death, shutdown."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from coderunner.engine.bash import BashKernel, _Stream

pytestmark = pytest.mark.timeout(30)


class ListSink:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.events: list[tuple[str, str]] = []

    def stdout(self, text: str) -> None:
        self.out.append(text)
        self.events.append(("stdout", text))

    def stderr(self, text: str) -> None:
        self.err.append(text)
        self.events.append(("stderr", text))

    def display(self, kind: Any, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        raise AssertionError("bash has no rich output")

    @property
    def stdout_text(self) -> str:
        return "".join(self.out)

    @property
    def stderr_text(self) -> str:
        return "".join(self.err)


def _env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


@pytest.fixture
async def kernel(tmp_path: Path) -> AsyncIterator[BashKernel]:
    (tmp_path / "work").mkdir()
    (tmp_path / "run").mkdir()
    k = BashKernel()
    await k.start(tmp_path / "work", _env(tmp_path), tmp_path / "run")
    yield k
    await k.shutdown()


async def run(kernel: BashKernel, code: str, timeout: float = 10) -> tuple[Any, ListSink]:
    sink = ListSink()
    reply = await asyncio.wait_for(kernel.execute(code, sink), timeout)
    return reply, sink


async def wait_for_text(sink: ListSink, text: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while text not in sink.stdout_text:
        assert time.monotonic() < deadline, f"{text!r} never appeared"
        await asyncio.sleep(0.01)


def _gone(pid: int) -> bool:
    try:
        # Nobody may reap orphans in a container: a zombie is dead for our purposes.
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_starts_in_cwd_with_exactly_env(tmp_path: Path, kernel: BashKernel) -> None:
    assert kernel.is_alive()
    assert kernel.pid is not None
    reply, sink = await run(kernel, 'pwd; echo "home=$HOME"; echo "secret=${CODERUNNER_NOT_PASSED-unset}"')
    assert reply.exit_code == 0
    assert sink.stdout_text == f"{tmp_path / 'work'}\nhome={tmp_path}\nsecret=unset\n"


async def test_state_persists_between_executions(kernel: BashKernel, tmp_path: Path) -> None:
    await run(kernel, 'x=42\ngreet() {\n  echo "hello $1 ($x)"\n}\ncd /tmp\nexport EXPORTED=yes')
    await run(kernel, "declare -A colours=([sky]=blue); declare -a nums=(1 2 3)")
    reply, sink = await run(
        kernel, 'greet world; pwd; bash -c \'echo "$EXPORTED"\'; echo "${colours[sky]} ${#nums[@]}"'
    )
    assert reply.exit_code == 0
    assert sink.stdout_text == "hello world (42)\n/tmp\nyes\nblue 3\n"


async def test_stdout_and_stderr_are_separate(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "echo out1; echo err1 >&2; echo out2; ls /definitely-missing")
    assert reply.exit_code == 2
    assert reply.error is None
    assert sink.stdout_text == "out1\nout2\n"
    assert sink.stderr_text.startswith("err1\n")
    assert "definitely-missing" in sink.stderr_text


async def test_exit_codes_are_the_last_status(kernel: BashKernel) -> None:
    assert (await run(kernel, "false"))[0].exit_code == 1
    assert (await run(kernel, "(exit 3)"))[0].exit_code == 3
    assert (await run(kernel, "true"))[0].exit_code == 0
    reply, sink = await run(kernel, "no_such_command_xyz")
    assert reply.exit_code == 127
    assert reply.error is None and not reply.died
    # Messages name "bash", as at a prompt, not the snippet file in the runtime directory.
    assert sink.stderr_text == "bash: line 1: no_such_command_xyz: command not found\n"


async def test_status_carries_over_like_a_prompt(kernel: BashKernel) -> None:
    await run(kernel, "false")
    reply, sink = await run(kernel, "echo $?")
    assert sink.stdout_text == "1\n"
    assert reply.exit_code == 0


async def test_output_without_trailing_newline(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "printf 'no newline'")
    assert (reply.exit_code, sink.stdout_text) == (0, "no newline")
    reply, sink = await run(kernel, "printf 'err no newline' >&2")
    assert (reply.exit_code, sink.stderr_text) == (0, "err no newline")


async def test_syntax_error_keeps_the_shell(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "if then")
    assert reply.exit_code == 2 and not reply.died
    assert sink.stderr_text.startswith("bash: line 1: syntax error")
    assert (await run(kernel, "echo alive"))[1].stdout_text == "alive\n"


async def test_heredoc_multiline_function_unicode_and_no_trailing_newline(kernel: BashKernel) -> None:
    code = "f() {\n  cat <<EOF\nhéllo $1 — 日本\nEOF\n}\nf wörld\ncat <<'RAW'\n$not_expanded\nRAW"
    reply, sink = await run(kernel, code)
    assert reply.exit_code == 0
    assert sink.stdout_text == "héllo wörld — 日本\n$not_expanded\n"


async def test_set_is_not_cut_short(kernel: BashKernel) -> None:
    # `set` prints every variable; the end marker must not be among them.
    reply, sink = await run(kernel, "set; declare -p; echo END")
    assert reply.exit_code == 0
    assert sink.stdout_text.endswith("END\n")


async def test_stdin_is_not_the_control_channel(kernel: BashKernel) -> None:
    start = time.monotonic()
    _, sink = await run(kernel, 'cat; read -r line; echo "read=$? line=[$line]"')
    assert time.monotonic() - start < 2
    assert sink.stdout_text == "read=1 line=[]\n"
    # The next execution still arrives: nothing was eaten from the control pipe.
    assert (await run(kernel, "echo next"))[1].stdout_text == "next\n"


async def test_control_fd_is_closed_for_user_code(kernel: BashKernel) -> None:
    _, sink = await run(kernel, "ls /proc/self/fd; read -r -u 250 x; echo rc=$?")
    fds = sink.stdout_text.split()
    assert "250" not in fds
    assert fds[-1] == "rc=1"


async def test_interrupt_external_command_keeps_state(kernel: BashKernel) -> None:
    await run(kernel, "kept=before")
    sink = ListSink()
    task = asyncio.ensure_future(kernel.execute("echo started; sleep 100; echo not-reached", sink))
    await wait_for_text(sink, "started")
    start = time.monotonic()
    await kernel.interrupt()
    reply = await asyncio.wait_for(task, 5)
    assert time.monotonic() - start < 2
    assert reply.interrupted and reply.exit_code == 130 and not reply.died
    assert reply.error is not None and reply.error.name == "KeyboardInterrupt"
    assert "not-reached" not in sink.stdout_text
    reply, sink = await run(kernel, "echo $kept")
    assert (reply.exit_code, reply.interrupted, sink.stdout_text) == (0, False, "before\n")


async def test_interrupt_busy_loop_keeps_state(kernel: BashKernel) -> None:
    await run(kernel, "kept=loop")
    sink = ListSink()
    task = asyncio.ensure_future(kernel.execute("echo started; while true; do :; done; echo not-reached", sink))
    await wait_for_text(sink, "started")
    await kernel.interrupt()
    reply = await asyncio.wait_for(task, 5)
    assert reply.interrupted and reply.exit_code == 130 and not reply.died
    assert "not-reached" not in sink.stdout_text
    assert (await run(kernel, "echo $kept"))[1].stdout_text == "loop\n"


async def test_interrupt_unwinds_nested_functions(kernel: BashKernel) -> None:
    code = (
        "inner() { while :; do :; done; echo after-inner; }\n"
        "outer() { inner; echo after-outer; }\n"
        "echo started\nouter\necho after-call"
    )
    sink = ListSink()
    task = asyncio.ensure_future(kernel.execute(code, sink))
    await wait_for_text(sink, "started")
    await kernel.interrupt()
    reply = await asyncio.wait_for(task, 5)
    assert reply.interrupted and not reply.died
    assert sink.stdout_text == "started\n"
    # The unwinding trap is gone: later functions run to completion.
    assert (await run(kernel, "outer() { echo a; echo b; }; outer"))[1].stdout_text == "a\nb\n"


async def test_interrupt_under_set_e_keeps_the_shell(kernel: BashKernel) -> None:
    await run(kernel, "set -e")
    sink = ListSink()
    task = asyncio.ensure_future(kernel.execute("echo started; sleep 100", sink))
    await wait_for_text(sink, "started")
    await kernel.interrupt()
    reply = await asyncio.wait_for(task, 5)
    assert reply.interrupted and not reply.died
    assert "e" in (await run(kernel, "echo $-"))[1].stdout_text


async def test_interrupt_while_idle_is_harmless(kernel: BashKernel) -> None:
    await kernel.interrupt()
    await asyncio.sleep(0.05)
    reply, sink = await run(kernel, "echo fine")
    assert (reply.exit_code, reply.interrupted, sink.stdout_text) == (0, False, "fine\n")


async def test_exit_is_reported_as_death(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "echo bye; echo err >&2; exit 7")
    assert reply.died and reply.returncode == 7 and reply.exit_code == 7
    assert (sink.stdout_text, sink.stderr_text) == ("bye\n", "err\n")
    assert not kernel.is_alive()
    # Executing on a dead kernel reports death again instead of hanging.
    reply, _ = await run(kernel, "echo again")
    assert reply.died


async def test_kill_9_is_reported_as_death(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "echo before; kill -9 $$; echo after")
    assert reply.died and reply.returncode == -9 and reply.exit_code == 137
    assert sink.stdout_text == "before\n"


async def test_death_is_noticed_with_a_background_job_holding_the_pipes(kernel: BashKernel) -> None:
    start = time.monotonic()
    reply, _ = await run(kernel, "sleep 100 & exit 4")
    assert reply.died and reply.returncode == 4
    assert time.monotonic() - start < 2


async def test_set_e_failure_is_reported_as_death(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "set -e\necho one\nfalse\necho two")
    assert reply.died and reply.returncode == 1
    assert sink.stdout_text == "one\n"


async def test_configure_with_tricky_values(kernel: BashKernel, tmp_path: Path) -> None:
    target = tmp_path / "dir with space"
    target.mkdir()
    values = {
        "QUOTES": 'it\'s "quoted" `ticks`',
        "DOLLAR": "$HOME ${PATH} $(echo no)",
        "MULTI": "line1\nline2\n",
        "EMPTY": "",
        "BACKSLASH": "a\\b\\n",
    }
    await kernel.configure(target, values)
    code = 'pwd; for v in QUOTES DOLLAR MULTI EMPTY BACKSLASH; do printf "%s=[%s]\\n" "$v" "${!v}"; done'
    reply, sink = await run(kernel, code)
    expected = f"{target}\n" + "".join(f"{k}=[{v}]\n" for k, v in values.items())
    assert reply.exit_code == 0
    # $(...) strips trailing newlines only in command substitution; printf keeps them.
    assert sink.stdout_text == expected
    reply, sink = await run(kernel, "env | grep -c '^QUOTES='")
    assert sink.stdout_text == "1\n"


async def test_configure_rejects_names_bash_cannot_hold(kernel: BashKernel, tmp_path: Path) -> None:
    from coderunner.errors import BackendError

    with pytest.raises(BackendError):
        await kernel.configure(tmp_path, {"NOT-VALID": "x"})


async def test_ten_megabytes_of_output(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "yes | head -c 10000000; echo done >&2", timeout=20)
    assert reply.exit_code == 0
    assert len(sink.stdout_text) == 10_000_000
    assert sink.stdout_text.startswith("y\ny\n")
    assert sink.stderr_text == "done\n"


async def test_large_output_on_both_streams_does_not_deadlock(kernel: BashKernel) -> None:
    reply, sink = await run(
        kernel, "head -c 3000000 /dev/zero | tr '\\0' e >&2; head -c 3000000 /dev/zero | tr '\\0' o"
    )
    assert reply.exit_code == 0
    assert (len(sink.stdout_text), len(sink.stderr_text)) == (3_000_000, 3_000_000)


async def test_multibyte_character_split_across_reads(kernel: BashKernel) -> None:
    # "€" is e2 82 ac: the pause makes the two halves arrive in separate reads.
    reply, sink = await run(
        kernel, "printf '\\xe2\\x82'; sleep 0.1; printf '\\xac!'; printf '\\xe6\\x97'>&2; sleep 0.1; printf '\\xa5' >&2"
    )
    assert reply.exit_code == 0
    assert sink.stdout_text == "€!"
    assert sink.stderr_text == "日"
    assert "\ufffd" not in sink.stdout_text


async def test_invalid_utf8_is_replaced(kernel: BashKernel) -> None:
    _, sink = await run(kernel, "printf 'a\\xffb'")
    assert sink.stdout_text == "a\ufffdb"


def test_stream_finds_markers_and_characters_split_byte_by_byte() -> None:
    marker = b"\x1ecrMARK"
    chunks: list[str] = []
    stream = _Stream(fd=-1, rewrite=(b"/run/x.sh: ", b"bash: "))
    stream.begin(marker, chunks.append)
    for byte in "h€ /run/x.sh: line 1 partial\x1ecr".encode() + marker + b" 3\nleftover":
        stream.feed(bytes([byte]))
    assert stream.done and stream.status.strip() == b"3"
    assert "".join(chunks) == "h€ bash: line 1 partial\x1ecr"
    rest: list[str] = []
    stream.begin(b"\x1ecrNEXT", rest.append)
    stream.feed(b"\x1ecrNEXT\n")
    assert stream.done and "".join(rest) == "leftover"


async def test_background_output_after_the_end_goes_to_the_next_execution(kernel: BashKernel) -> None:
    _, sink = await run(kernel, "(sleep 0.2; echo late) &")
    assert sink.stdout_text == ""
    await asyncio.sleep(0.5)
    _, sink = await run(kernel, "echo now")
    assert sink.stdout_text == "late\nnow\n"


async def test_user_redirecting_fd1_does_not_hang(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "exec >/dev/null; echo hidden")
    assert (reply.exit_code, sink.stdout_text) == (0, "")
    reply, sink = await run(kernel, "echo still-hidden; echo shown >&2")
    assert (sink.stdout_text, sink.stderr_text) == ("", "shown\n")


async def test_xtrace_persists_without_tracing_the_loop(kernel: BashKernel) -> None:
    await run(kernel, "set -x")
    _, sink = await run(kernel, "echo traced")
    assert sink.stdout_text == "traced\n"
    assert sink.stderr_text == "++ echo traced\n"
    await run(kernel, "set +x")
    _, sink = await run(kernel, "echo quiet")
    assert sink.stderr_text == ""


async def test_shutdown_kills_background_jobs_and_is_idempotent(kernel: BashKernel) -> None:
    _, sink = await run(kernel, "sleep 1000 & echo $!")
    job = int(sink.stdout_text)
    shell = kernel.pid
    assert shell is not None and not _gone(job)
    await kernel.shutdown()
    await kernel.shutdown()
    deadline = time.monotonic() + 3
    while not (_gone(job) and _gone(shell)):
        assert time.monotonic() < deadline, "background job survived shutdown"
        await asyncio.sleep(0.02)
    assert not kernel.is_alive()


async def test_shutdown_after_death_still_kills_background_jobs(kernel: BashKernel) -> None:
    reply, sink = await run(kernel, "sleep 1000 & echo $!; exit 0")
    assert reply.died and reply.returncode == 0
    job = int(sink.stdout_text)
    await kernel.shutdown()
    deadline = time.monotonic() + 3
    while not _gone(job):
        assert time.monotonic() < deadline, "background job survived shutdown"
        await asyncio.sleep(0.02)


async def test_cancelled_execute_then_shutdown(kernel: BashKernel) -> None:
    task = asyncio.ensure_future(kernel.execute("trap '' INT; sleep 100", ListSink()))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(kernel.shutdown(), 5)
    assert not kernel.is_alive()


async def test_snippet_file_is_removed_on_shutdown(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    k = BashKernel()
    await k.start(tmp_path, _env(tmp_path), run_dir)
    await run(k, "echo hi")
    assert list(run_dir.iterdir())
    await k.shutdown()
    assert list(run_dir.iterdir()) == []


async def test_missing_bash_is_a_backend_error(tmp_path: Path) -> None:
    from coderunner.errors import BackendError

    with pytest.raises(BackendError):
        await BashKernel(bash=str(tmp_path / "no-bash")).start(tmp_path, _env(tmp_path), tmp_path)
