"""The coderunner command line."""

from __future__ import annotations

import subprocess
import sys

import coderunner


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coderunner.cli", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def test_version() -> None:
    out = _run("--version")
    assert out.stdout.strip() == f"coderunner {coderunner.__version__}"


def test_exec_prints_streams_and_returns_status() -> None:
    out = _run("exec", "import sys; print('hi'); print('oops', file=sys.stderr); sys.exit(3)")
    assert (out.returncode, out.stdout, out.stderr) == (3, "hi\n", "oops\nSystemExit: 3\n")


def test_exec_reads_stdin_and_shows_tracebacks() -> None:
    out = _run("exec", "-", stdin="1/0\n")
    assert out.returncode == 1
    assert "ZeroDivisionError" in out.stderr


def test_exec_bash_and_javascript() -> None:
    assert _run("exec", "-l", "bash", "echo $((6*7)); exit 4").returncode == 4
    out = _run("exec", "-l", "js", "console.log(6*7)")
    assert (out.returncode, out.stdout) == (0, "42\n")


def test_exec_unknown_language_is_a_clear_error() -> None:
    out = _run("exec", "-l", "cobol", "x")
    assert out.returncode == 2
    assert "Unsupported language 'cobol'" in out.stderr
