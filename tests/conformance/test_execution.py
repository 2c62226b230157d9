"""Conformance: what every backend must do when running code (state, streams, errors, limits)."""

from __future__ import annotations

import base64
import re
import threading
import time

import pytest

from coderunner import CodeRunner, ConfigurationError, InvalidRequestError, Session

ANSI = re.compile(r"\x1b\[")

STATE = {
    "python": ("x = 41", "print(x + 1)", "42\n"),
    "bash": ('x=41; greet() { echo "hi $1"; }', "echo $((x + 1)); greet you", "42\nhi you\n"),
    "javascript": (
        "var x = 41; function greet(n) { return `hi ${n}`; }",
        "console.log(x + 1); console.log(greet('you'))",
        "42\nhi you\n",
    ),
}


@pytest.mark.parametrize("language", list(STATE))
def test_state_persists_between_calls(runner: Session, language: str) -> None:
    setup, use, expected = STATE[language]
    assert runner.execute(setup, language).status == "ok"
    result = runner.execute(use, language)
    assert result.status == "ok", result
    assert result.stdout == expected


@pytest.mark.parametrize("language", list(STATE))
def test_sessions_are_isolated(shared_runner: CodeRunner, language: str) -> None:
    with shared_runner.session() as a, shared_runner.session() as b:
        a.execute(STATE[language][0], language)
        probe = {"python": "print(x)", "bash": 'echo "[${x:-unset}]"', "javascript": "console.log(typeof x)"}[language]
        other = b.execute(probe, language)
        if language == "python":
            assert other.status == "error" and other.error is not None and other.error.name == "NameError"
        elif language == "bash":
            assert other.stdout == "[unset]\n"
        else:
            assert other.stdout == "undefined\n"


def test_bash_cd_export_and_functions_persist(runner: Session) -> None:
    runner.execute("mkdir -p sub && cd sub && export FOO='a b \"c\"'", "bash")
    result = runner.execute('basename "$PWD"; echo "$FOO"', "bash")
    assert result.stdout == 'sub\na b "c"\n'


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "import sys; print('out'); print('err', file=sys.stderr)"),
        ("bash", "echo out; echo err >&2"),
        ("javascript", "console.log('out'); console.error('err')"),
    ],
)
def test_stdout_and_stderr_are_separate(used_session: Session, language: str, code: str) -> None:
    result = used_session.execute(code, language)
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


@pytest.mark.parametrize(
    ("language", "code", "exit_code"),
    [
        ("python", "print('fine')", 0),
        ("python", "raise ValueError('bad')", 1),
        ("python", "import sys; sys.exit(3)", 3),
        ("python", "import sys; sys.exit(0)", 0),
        ("bash", "true", 0),
        ("bash", "false", 1),
        ("bash", "(exit 7)", 7),
        ("bash", "ls /definitely/not/here", 2),
        ("javascript", "1 + 1", 0),
        ("javascript", "throw new TypeError('nope')", 1),
    ],
)
def test_exit_codes(used_session: Session, language: str, code: str, exit_code: int) -> None:
    result = used_session.execute(code, language)
    assert result.exit_code == exit_code, result
    assert result.status == ("ok" if exit_code == 0 else "error")


def test_python_traceback_is_data_without_ansi(used_session: Session) -> None:
    result = used_session.execute("def f():\n    return 1 / 0\nf()")
    assert result.status == "error"
    assert result.error is not None
    assert result.error.name == "ZeroDivisionError"
    assert result.error.value == "division by zero"
    assert "f()" in result.error.traceback and "ZeroDivisionError" in result.error.traceback
    assert not ANSI.search(result.error.traceback)
    # Not retried: a side effect before the error happens exactly once.
    used_session.execute("count = 0")
    used_session.execute("count += 1\nraise RuntimeError('once')")
    assert used_session.execute("print(count)").stdout == "1\n"


def test_javascript_error_has_name_message_and_stack(used_session: Session) -> None:
    result = used_session.execute("function boom() { throw new RangeError('too far') }\nboom()", "javascript")
    assert result.status == "error"
    assert result.error is not None
    assert (result.error.name, result.error.value) == ("RangeError", "too far")
    assert "boom" in result.error.traceback


def test_last_expression_value_is_a_rich_output(used_session: Session) -> None:
    assert used_session.execute("6 * 7").text == "42"
    assert used_session.execute("6 * 7", "javascript").text == "42"


def test_matplotlib_plot_comes_back_as_png(runner: Session) -> None:
    pytest.importorskip("matplotlib")
    result = runner.execute("import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.show()")
    assert result.status == "ok", result
    pngs = [o.png for o in result.outputs if o.png]
    assert len(pngs) == 1
    assert base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n")


def test_pil_image_and_html_display(used_session: Session) -> None:
    pytest.importorskip("PIL")
    result = used_session.execute(
        "from PIL import Image\nfrom IPython.display import HTML, display\n"
        "display(Image.new('RGB', (8, 8), 'red'))\ndisplay(HTML('<b>bold</b>'))"
    )
    assert result.status == "ok", result
    assert "image/png" in result.outputs[0].mime_types
    assert result.outputs[1].html == "<b>bold</b>"
    assert result["outputs"][0]["data"]["image/png"]


@pytest.mark.parametrize(
    ("language", "setup", "loop", "check"),
    [
        ("python", "kept = 'yes'", "while True:\n    pass", "print(kept)"),
        ("python", "kept = 'yes'", "import time\ntime.sleep(1000)", "print(kept)"),
        ("bash", "kept=yes", "while true; do :; done", "echo $kept"),
        ("bash", "kept=yes", "sleep 1000", "echo $kept"),
        ("javascript", "var kept = 'yes'", "while (true) {}", "console.log(kept)"),
        ("javascript", "var kept = 'yes'", "await new Promise(() => {})", "console.log(kept)"),
    ],
)
def test_timeout_interrupts_and_keeps_state(runner: Session, language: str, setup: str, loop: str, check: str) -> None:
    runner.execute(setup, language)
    result = runner.execute(loop, language, timeout=1)
    assert result.status == "timeout"
    assert result.exit_code == 124
    assert result.error is not None and "time limit" in result.error.value
    assert result.state_lost is False, (result.error, result.warnings)
    checked = runner.execute(check, language)
    assert checked.stdout == "yes\n", checked


def test_timeout_that_ignores_interrupt_restarts_and_says_so(runner: Session) -> None:
    runner.execute("kept = 1")
    result = runner.execute(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)",
        timeout=1,
    )
    assert result.status == "timeout"
    assert result.state_lost is True
    assert result.error is not None and "lost" in result.error.value
    after = runner.execute("print('alive')")
    assert after.stdout == "alive\n"
    assert runner.execute("kept").status == "error"  # the restart really dropped the state


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "import os; os._exit(9)"),
        ("python", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
        ("bash", "kill -9 $$"),
        ("javascript", "process.exit(5)"),
    ],
)
def test_interpreter_death_is_reported_and_next_call_works(runner: Session, language: str, code: str) -> None:
    result = runner.execute(code, language)
    assert result.status == "error"
    assert result.state_lost is True
    assert result.error is not None and result.error.name == "InterpreterDied"
    assert "lost" in result.error.value
    again = runner.execute(
        {"python": "print('ok')", "bash": "echo ok", "javascript": "console.log('ok')"}[language], language
    )
    assert again.stdout == "ok\n"


def test_output_flood_is_capped_with_head_tail_and_full_file(runner: Session, shared_runner: CodeRunner) -> None:
    limit = shared_runner.settings.max_output_chars
    result = runner.execute("import sys\nfor i in range(1_000_000):\n    sys.stdout.write(f'{i:09d}\\n')")
    assert result.status == "ok"
    assert result.truncated is True
    assert result.stdout.startswith("000000000\n")
    assert result.stdout.endswith("000999999\n")
    assert "characters truncated" in result.stdout
    assert len(result.stdout) < limit + 500
    assert result.stdout_file is not None
    full = runner.download_file(result.stdout_file)
    assert len(full) == 10_000_000
    assert runner.execute("print('still fine')").stdout == "still fine\n"


@pytest.mark.parametrize(
    ("language", "code"),
    [("bash", "yes | head -c 10000000"), ("javascript", "process.stdout.write('y'.repeat(10_000_000))")],
)
def test_output_flood_other_languages(runner: Session, language: str, code: str) -> None:
    result = runner.execute(code, language)
    assert result.truncated is True
    assert result.stdout_file is not None


def test_unknown_language_and_empty_code_are_clear_errors(used_session: Session) -> None:
    with pytest.raises(ConfigurationError, match="python, bash, javascript"):
        used_session.execute("print(1)", "cobol")
    with pytest.raises(InvalidRequestError, match="empty"):
        used_session.execute("   ")
    with pytest.raises(InvalidRequestError, match="timeout"):
        used_session.execute("print(1)", timeout=-1)


@pytest.mark.parametrize("alias", ["py", "python3", "sh", "shell", "js", "node"])
def test_language_aliases(used_session: Session, alias: str) -> None:
    code = {"py": "print(1)", "python3": "print(1)", "sh": "echo 1", "shell": "echo 1"}.get(alias, "console.log(1)")
    result = used_session.execute(code, alias)
    assert result.stdout == "1\n"
    assert result.language in ("python", "bash", "javascript")


def test_ipython_shell_escapes_work(used_session: Session) -> None:
    assert "hello" in used_session.execute("!echo hello").stdout
    assert used_session.execute("%%bash\necho $((2 + 3))").stdout == "5\n"


def test_languages_share_the_session_directory(runner: Session) -> None:
    runner.execute("open('from_py.txt', 'w').write('py')")
    assert runner.execute("cat from_py.txt", "bash").stdout == "py"
    runner.execute("echo sh > from_sh.txt", "bash")
    result = runner.execute("console.log(require('fs').readFileSync('from_sh.txt', 'utf8').trim())", "javascript")
    assert result.stdout == "sh\n"


def test_session_env_reaches_every_language(shared_runner: CodeRunner) -> None:
    with shared_runner.session(env={"CR_TEST_VAR": "v a l"}) as s:
        assert s.execute("import os; print(os.environ['CR_TEST_VAR'])").stdout == "v a l\n"
        assert s.execute('echo "$CR_TEST_VAR"', "bash").stdout == "v a l\n"
        assert s.execute("console.log(process.env.CR_TEST_VAR)", "javascript").stdout == "v a l\n"


def test_cpu_time_is_cpu_not_wall(runner: Session, backend_name: str) -> None:
    busy = runner.execute("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass")
    idle = runner.execute("import time; time.sleep(0.5)")
    assert busy.cpu_time is not None and idle.cpu_time is not None
    assert busy.cpu_time >= 0.25
    assert idle.execution_time >= 0.5
    # gVisor charges the process for the Sentry's work on its behalf (each execution's messages, timers), and
    # under host contention for time it waited runnable: an idle half second reads 0.05-0.3 s of CPU there
    # (runc: 0.00-0.02). Still plainly not wall time.
    limit = 0.5 * idle.execution_time if backend_name == "docker-runsc" else 0.2
    assert idle.cpu_time < limit, (idle.cpu_time, idle.execution_time)


def test_files_created_and_modified_are_reported(runner: Session) -> None:
    runner.write_file("existing.txt", "old")
    result = runner.execute("open('new.txt', 'w').write('n')\nopen('existing.txt', 'a').write('er')")
    assert result.files_created == ["new.txt"]
    assert result.files_modified == ["existing.txt"]


def test_concurrent_calls_into_one_session_are_serialised(runner: Session) -> None:
    runner.execute("events = []")
    code = "import time\nevents.append('start')\ntime.sleep(0.2)\nevents.append('end')"
    threads = [threading.Thread(target=runner.execute, args=(code,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runner.execute("print(events)").stdout == str(["start", "end"] * 3) + "\n"


def test_different_sessions_run_in_parallel(shared_runner: CodeRunner) -> None:
    # Two sessions sleep at the same time. No shared files: a backend may give each session its own
    # filesystem (Docker does), so overlap is shown by wall time, with a wide margin: run one after
    # the other they would take 4 s, in parallel about 2 s.
    with shared_runner.session() as a, shared_runner.session() as b:
        for session in (a, b):
            session.execute("import time")  # interpreters started: only the sleeps are timed
        results: dict[str, str] = {}

        def run(name: str, session: Session) -> None:
            results[name] = session.execute("time.sleep(2); print('done')", timeout=30).stdout

        threads = [threading.Thread(target=run, args=(name, s)) for name, s in (("a", a), ("b", b))]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        assert results == {"a": "done\n", "b": "done\n"}
        assert elapsed < 3.6, f"the sessions ran one after the other ({elapsed:.2f} s)"


def test_streaming_callbacks_see_output_as_it_comes(runner: Session) -> None:
    chunks: list[str] = []
    errs: list[str] = []
    result = runner.execute(
        "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
        "print('e', file=sys.stderr)",
        on_stdout=chunks.append,
        on_stderr=errs.append,
    )
    assert "".join(chunks) == result.stdout == "0\n1\n2\n"
    assert len(chunks) >= 2  # delivered in pieces, not once at the end
    assert "".join(errs) == "e\n"
