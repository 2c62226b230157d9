"""Output caps bound memory where output is produced (the Python kernel), and lone surrogates never lose output.

Real kernels throughout: the engine's CappedSink fed by a real ipykernel, or a whole InProcess runner.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from coderunner import CodeRunner
from coderunner.engine.output import MAX_OUTPUTS, CappedSink, StreamBuffer
from coderunner.engine.python import PythonKernel

pytestmark = pytest.mark.timeout(180)

MB = 1 << 20
LINE = 1_000_000  # characters per line of the big floods: 7 digits, padding, newline


def _line(i: int) -> str:
    return f"{i:07d}" + "x" * (LINE - 8) + "\n"


FLOOD = "pad = 'x' * {pad}\nfor i in range({n}):\n    print(f'{{i:07d}}' + pad)"


def _kernel_env(tmp: Path) -> dict[str, str]:
    # ipykernel relays fd 1/2 only outside pytest (it checks PYTEST_CURRENT_TEST): start it as a real
    # session would, so subprocess output takes the same path as in production.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["HOME"] = str(tmp)
    return env


@pytest.fixture
async def kernel(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PythonKernel]:
    tmp = tmp_path_factory.mktemp("pyk")
    (tmp / "work").mkdir()
    (tmp / "run").mkdir()
    k = PythonKernel()
    await k.start(tmp / "work", _kernel_env(tmp), tmp / "run")
    yield k
    await k.shutdown()


_count = 0


async def run(kernel: PythonKernel, code: str, tmp: Path, limit: int = 100_000) -> tuple[Any, CappedSink]:
    global _count
    _count += 1
    sink = CappedSink(limit=limit, spill_dir=tmp / "out", spill_display_dir="out", exec_id=f"x{_count}")
    reply = await asyncio.wait_for(kernel.execute(code, sink), 120)
    sink.close()
    return reply, sink


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads peak memory from /proc")


def _assert_spill_is(path: Path, lines: Iterator[str]) -> None:
    """The file holds exactly ``lines``, read a line's worth at a time (never the whole file in memory)."""
    with open(path, encoding="utf-8") as fh:
        for i, expected in enumerate(lines):
            got = fh.read(len(expected))
            assert got == expected, f"spill file differs at line {i}"
        assert fh.read(1) == "", "spill file has more than was printed"


# -- the flood: memory stays bounded, the result looks as it always did --------------------------------


@linux_only
def test_python_flood_keeps_kernel_and_engine_memory_bounded(tmp_path: Path) -> None:
    n = 250  # 250 MB: as much as the spill file keeps (MAX_SPILL_BYTES), so it must hold all of it
    me = psutil.Process()
    with CodeRunner(backend="inprocess", pool_size=0, runtime_dir=str(tmp_path)) as runner:
        pid = int(runner.execute("import os; print(os.getpid())").stdout)
        kernel_before = psutil.Process(pid).memory_info().rss
        engine_before = me.memory_info().rss
        _reset_peak(os.getpid())  # InProcess: the engine runs in this process
        result = runner.execute(FLOOD.format(pad=LINE - 8, n=n), timeout=170)
        engine_peak = _peak_rss(os.getpid())
        kernel_peak = result.peak_memory_bytes
        assert kernel_peak is not None
        assert kernel_peak - kernel_before < 150 * MB, f"kernel grew by {(kernel_peak - kernel_before) // MB} MB"
        assert engine_peak - engine_before < 150 * MB, f"engine grew by {(engine_peak - engine_before) // MB} MB"

        assert result.status == "ok"
        assert result.truncated is True
        limit = runner.settings.max_output_chars
        first, last = _line(0), _line(n - 1)
        assert result.stdout.startswith(first[: limit // 2] + "\n[... ")
        assert result.stdout.endswith("]\n" + last[-(limit - limit // 2) :])
        dropped = n * LINE - limit
        assert f"[... {dropped} characters truncated; full output in {result.stdout_file} ...]" in result.stdout
        assert result.stdout_file is not None
        workdir = Path(runner.get_session_info().working_dir)
        _assert_spill_is(workdir / result.stdout_file, (_line(i) for i in range(n)))

        assert runner.execute("print('still fine')").stdout == "still fine\n"
        assert psutil.Process(pid).memory_info().rss - kernel_before < 150 * MB  # nothing kept after the cell


def _host_side(text_parts: list[str], limit: int, display: str, tmp: Path) -> tuple[str, bool, str | None]:
    """What the engine-side cap (the only one before) makes of the same writes."""
    buf = StreamBuffer(limit, tmp / "host-side", display)
    for part in text_parts:
        buf.write(part)
    buf.close()
    return buf.text(), buf.truncated, buf.spill_file()


@pytest.mark.parametrize(
    ("code", "parts"),
    [
        ("import sys; sys.stdout.write('y' * 999)", ["y" * 999]),
        ("import sys; sys.stdout.write('y' * 1000)", ["y" * 1000]),
        ("import sys; sys.stdout.write('y' * 1001)", ["y" * 1001]),
        ("import sys; sys.stdout.write('abcdefghij' * 100_000)", ["abcdefghij" * 100_000]),
        ("import sys\nfor i in range(3000): sys.stdout.write(f'{i}\\n')", [f"{i}\n" for i in range(3000)]),
        (
            "import sys; sys.stdout.write('z' * 600); sys.stdout.write('w' * 600); sys.stdout.write('v' * 10)",
            ["z" * 600, "w" * 600, "v" * 10],
        ),
        ("print('é' * 5000)", ["é" * 5000 + "\n"]),
    ],
    ids=["under", "exactly", "one-over", "one-big-write", "many-small", "crossing", "non-ascii"],
)
async def test_kernel_cap_gives_the_same_result_as_the_engine_side_cap(
    kernel: PythonKernel, tmp_path: Path, code: str, parts: list[str]
) -> None:
    limit = 1000
    _, sink = await run(kernel, code, tmp_path, limit=limit)
    display = f"out/x{_count}.stdout"
    text, truncated, spill = _host_side(parts, limit, display, tmp_path)
    assert (sink.out.text(), sink.out.truncated, sink.out.spill_file()) == (text, truncated, spill)
    if truncated:
        assert (tmp_path / display).read_text(encoding="utf-8") == "".join(parts)


async def test_stdout_and_stderr_are_capped_separately(kernel: PythonKernel, tmp_path: Path) -> None:
    code = "import sys\nfor i in range(2000):\n    sys.stdout.write(f'o{i} ')\n    sys.stderr.write(f'e{i} ')"
    _, sink = await run(kernel, code, tmp_path, limit=1000)
    for buf, name, tag in ((sink.out, "stdout", "o"), (sink.err, "stderr", "e")):
        full = "".join(f"{tag}{i} " for i in range(2000))
        assert buf.truncated and buf.spill_file() == f"out/x{_count}.{name}"
        assert buf.text() == _host_side([full], 1000, f"out/x{_count}.{name}", tmp_path)[0]
        assert (tmp_path / f"out/x{_count}.{name}").read_text() == full


@linux_only
@pytest.mark.parametrize(
    ("code", "size"),
    [
        # fd 1 of a child process: relayed by ipykernel's pipe watcher into sys.stdout
        ("import subprocess; subprocess.run('yes | head -c 60000000', shell=True)", 60_000_000),
        ("import os; os.system('yes | head -c 60000000')", 60_000_000),
        # !cmd runs on a pty (newlines become \r\n); IPython's own loop kept and rescanned all of it
        ("!yes | head -c 10000000", None),
    ],
    ids=["subprocess.run", "os.system", "bang"],
)
async def test_subprocess_floods_are_capped_and_stay_out_of_the_engines_stdout(
    capfd: pytest.CaptureFixture[str], kernel: PythonKernel, tmp_path: Path, code: str, size: int | None
) -> None:
    # capfd first: the kernel then inherits its descriptors, so we see what it writes to them.
    assert kernel.pid is not None
    capfd.readouterr()
    before = psutil.Process(kernel.pid).memory_info().rss
    _reset_peak(kernel.pid)
    reply, sink = await run(kernel, code, tmp_path)
    assert reply.error is None
    assert _peak_rss(kernel.pid) - before < 25 * MB
    assert sink.out.truncated and sink.out.spill_file() is not None
    spilled = (tmp_path / sink.out.spill_file()).stat().st_size
    assert spilled == size if size is not None else spilled >= 10_000_000
    assert len(sink.out.text()) < 100_200
    # ipykernel used to copy every relayed byte to the descriptor the kernel inherited: ours.
    leaked = capfd.readouterr()
    assert "y\ny\ny\n" not in leaked.out and "y\ny\ny\n" not in leaked.err


async def test_forked_children_are_capped_with_the_parent(kernel: PythonKernel, tmp_path: Path) -> None:
    code = (
        "import multiprocessing, sys\n"
        "def work(k):\n    sys.stdout.write(f'<{k}>' + str(k) * 200_000 + '\\n')\n    sys.stdout.flush()\n"
        "children = [multiprocessing.get_context('fork').Process(target=work, args=(k,)) for k in range(3)]\n"
        "for c in children: c.start()\n"
        "for c in children: c.join()\n"
        # ipykernel relays a child's output on its IO thread, a moment after the child exits
        "import time; time.sleep(1)\n"
        "print('parent done')"
    )
    reply, sink = await run(kernel, code, tmp_path)
    assert reply.error is None
    assert sink.out.truncated and sink.out.spill_file() is not None
    assert sink.out.text().endswith("parent done\n")
    full = (tmp_path / sink.out.spill_file()).read_text()
    for k in range(3):  # each child's block whole, exactly once; the parent's line last
        assert full.count(f"<{k}>" + str(k) * 200_000 + "\n") == 1
    assert full.endswith("parent done\n") and len(full) == 3 * 200_004 + len("parent done\n")


async def test_subprocess_given_sys_stdout_reaches_the_result(kernel: PythonKernel, tmp_path: Path) -> None:
    code = "import subprocess, sys\nsubprocess.run(['echo', 'to sys.stdout'], stdout=sys.stdout)"
    reply, sink = await run(kernel, code, tmp_path)
    assert reply.error is None
    assert sink.out.text() == "to sys.stdout\n"


async def test_bang_command_keeps_its_exit_status(kernel: PythonKernel, tmp_path: Path) -> None:
    _, sink = await run(kernel, "!echo hi; exit 3", tmp_path)
    assert sink.out.text() == "hi\r\n"
    _, sink = await run(kernel, "print(_exit_code)", tmp_path)
    assert sink.out.text() == "3\n"


async def test_kernel_killed_mid_flood_still_reports_a_cut(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "run").mkdir()
    k = PythonKernel()
    await k.start(tmp_path / "work", _kernel_env(tmp_path), tmp_path / "run")
    try:
        code = (
            "import os, signal, sys, time\nsys.stdout.write('a' * 300_000)\nsys.stdout.flush()\ntime.sleep(0.5)\n"
            "os.kill(os.getpid(), signal.SIGKILL)"
        )
        reply, sink = await run(k, code, tmp_path)
    finally:
        await k.shutdown()
    assert reply.died
    assert sink.out.truncated and sink.out.spill_file() is not None
    assert (
        sink.out.text()
        == "a" * 100_000 + f"\n[... output truncated here; full output in {sink.out.spill_file()} ...]\n"
    )


def test_live_callback_gets_head_then_tail_not_the_whole_flood(tmp_path: Path) -> None:
    with CodeRunner(backend="inprocess", pool_size=0, runtime_dir=str(tmp_path), max_output_chars=1000) as runner:
        for language, code in [
            ("python", "import sys\nfor i in range(100_000): sys.stdout.write(f'{i:06d}\\n')"),
            ("bash", "for i in $(seq 100000); do printf '%06d\\n' $i; done"),
        ]:
            chunks: list[str] = []
            result = runner.execute(code, language, on_stdout=chunks.append)
            streamed = "".join(chunks)
            assert result.truncated
            assert len(streamed) < 2500, f"{language}: {len(streamed)} characters streamed"
            assert streamed.startswith(result.stdout[:500])
            assert streamed.endswith(result.stdout[-500:])
            assert f"characters truncated; full output in {result.stdout_file}" in streamed


def test_display_flood_is_still_limited(tmp_path: Path) -> None:
    with CodeRunner(backend="inprocess", pool_size=0, runtime_dir=str(tmp_path)) as runner:
        result = runner.execute("from IPython.display import display\nfor i in range(500): display(i)")
        assert len(result.outputs) == MAX_OUTPUTS
        assert f"{500 - MAX_OUTPUTS} more rich outputs were dropped" in result.stderr


# -- lone surrogates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "where"),
    [
        ('print("before")\nprint("a\\ud800b")\nprint("after")', "before\na\\ud800b\nafter\n", "", "stdout"),
        ('import sys\nsys.stderr.write("e\\udfffe\\n")\nprint("out")', "out\n", "e\\udfffe\n", "stderr"),
        ('print("x\\udcff")', "x\\udcff\n", "", "stdout"),  # a surrogateescape byte: no longer a silent U+FFFD
    ],
    ids=["stdout", "stderr", "escaped-byte"],
)
async def test_lone_surrogate_in_a_stream_keeps_the_output(
    kernel: PythonKernel, tmp_path: Path, code: str, stdout: str, stderr: str, where: str
) -> None:
    reply, sink = await run(kernel, code, tmp_path)
    assert reply.error is None
    assert (sink.out.text(), sink.err.text()) == (stdout, stderr)
    assert len(sink.warnings) == 1 and sink.warnings[0].startswith(f"{where} contained lone surrogate")


async def test_lone_surrogate_in_rich_output_and_errors(kernel: PythonKernel, tmp_path: Path) -> None:
    code = (
        "from IPython.display import display\n"
        "display({'text/plain': 't\\ud800'}, raw=True)\n"
        "class A:\n    def __repr__(self): return 'r\\udbff'\n"
        "A()"
    )
    reply, sink = await run(kernel, code, tmp_path)
    assert reply.error is None
    assert [o.data["text/plain"] for o in sink.outputs] == ["t\\ud800", "r\\udbff"]
    assert sink.warnings and sink.warnings[0].startswith("a rich output contained lone surrogate")

    reply, sink = await run(kernel, "raise ValueError('v\\ud800')", tmp_path)
    assert reply.error is not None and (reply.error.name, reply.error.value) == ("ValueError", "v\\ud800")
    assert "v\\ud800" in reply.error.traceback
    assert any(w.startswith("the error message contained lone surrogate") for w in sink.warnings)

    _, sink = await run(kernel, "print('next')", tmp_path)
    assert sink.out.text() == "next\n" and sink.warnings == []


def test_lone_surrogates_in_every_language_keep_the_output_and_the_result_serialises(tmp_path: Path) -> None:
    with CodeRunner(backend="inprocess", pool_size=0, runtime_dir=str(tmp_path)) as runner:
        python = runner.execute('print("before")\nprint("a\\ud800b")\nprint("after")')
        assert python.stdout == "before\na\\ud800b\nafter\n"
        # bash output is bytes: invalid UTF-8 is decoded as U+FFFD, never as a surrogate
        bash = runner.execute("printf 'a\\xffb\\n'; printf 'c\\xed\\xa0\\x80d\\n' >&2", "bash")
        assert bash.stdout == "a\ufffdb\n" and bash.stderr == "c\ufffd\ufffd\ufffdd\n"
        # node writes a lone surrogate as U+FFFD itself; its inspect() escapes one in a value
        node = runner.execute('console.log("a\\ud800b"); process.stderr.write("e\\ud800\\n"); "v\\ud800"', "javascript")
        assert (node.stdout, node.stderr) == ("a\ufffdb\n", "e\ufffd\n")
        assert node.text == "'v\\ud800'"
        for result in (python, bash, node):
            result.model_dump_json()


def test_lone_surrogate_warning_reaches_the_result(tmp_path: Path) -> None:
    with CodeRunner(backend="inprocess", pool_size=0, runtime_dir=str(tmp_path)) as runner:
        result = runner.execute('print("a\\ud800b")')
        assert result.stdout == "a\\ud800b\n"
        assert any("lone surrogate" in w for w in result.warnings)


def test_lone_surrogate_in_a_javascript_error_serialises(tmp_path: Path) -> None:
    with CodeRunner(backend="inprocess", pool_size=0, runtime_dir=str(tmp_path)) as runner:
        result = runner.execute('throw new Error("m\\ud800")', "javascript")
        result.model_dump_json()
        assert result.error is not None and result.error.value == "m\\ud800"
        assert any(w.startswith("the error message contained lone surrogate") for w in result.warnings)


# -- the engine-side pieces ----------------------------------------------------------------------------


def test_stream_buffer_takes_the_kernels_cut(tmp_path: Path) -> None:
    buf = StreamBuffer(100, tmp_path / "o", "out/o")
    buf.write("h" * 50 + "p" * 50)  # what the kernel passes on: exactly the cap
    assert not buf.truncated
    buf.kernel_spill(saved=True)
    assert buf.truncated and buf.spill_file() == "out/o"
    assert buf.text() == "h" * 50 + "p" * 50 + "\n[... output truncated here; full output in out/o ...]\n"
    buf.kernel_end(total=1000, tail="t" * 50)
    assert buf.text() == "h" * 50 + "\n[... 900 characters truncated; full output in out/o ...]\n" + "t" * 50
    assert buf.live_ending(forwarded=100) == "\n[... 850 characters truncated; full output in out/o ...]\n" + "t" * 50
    assert not (tmp_path / "o").exists()  # the kernel writes it, not the engine

    unsaved = StreamBuffer(100, tmp_path / "u", "out/u")
    unsaved.kernel_spill(saved=False)
    unsaved.kernel_end(total=130, tail="t" * 50)
    assert unsaved.spill_file() is None and "[... 80 characters truncated ...]" in unsaved.text()


def test_live_ending_of_a_short_overflow_sends_only_what_is_missing(tmp_path: Path) -> None:
    seen: list[str] = []
    sink = CappedSink(limit=100, spill_dir=tmp_path, spill_display_dir="d", exec_id="e", on_stdout=seen.append)
    sink.stdout("a" * 90)
    sink.stdout("b" * 20)  # 10 over the cap: the live view gets them at the end, no marker
    sink.close()
    assert "".join(seen) == "a" * 90 + "b" * 20
    assert "characters truncated" in sink.out.text()


def test_sink_escapes_lone_surrogates_from_any_kernel(tmp_path: Path) -> None:
    sink = CappedSink(limit=1000, spill_dir=tmp_path, spill_display_dir="d", exec_id="e")
    sink.stdout("ok ")
    sink.stdout("a\ud800")
    sink.display("execute_result", {"text/plain": "v\udfff", "image/png": "iVBOR"}, {"k\ud801": 1})
    assert sink.out.text() == "ok a\\ud800"
    assert sink.outputs[0].data == {"text/plain": "v\\udfff", "image/png": "iVBOR"}
    assert sink.outputs[0].metadata == {"k\\ud801": 1}
    assert [w.split(" contained")[0] for w in sink.warnings] == ["stdout", "a rich output"]


def test_sink_cleans_an_error_reported_beside_it(tmp_path: Path) -> None:
    from coderunner.models import ErrorInfo

    sink = CappedSink(limit=1000, spill_dir=tmp_path, spill_display_dir="d", exec_id="e")
    plain = ErrorInfo(name="Error", value="fine", traceback="")
    assert sink.clean_error(plain) is plain and sink.clean_error(None) is None and sink.warnings == []
    cleaned = sink.clean_error(ErrorInfo(name="Error", value="m\ud800", traceback="at m\ud800"))
    assert cleaned is not None and (cleaned.value, cleaned.traceback) == ("m\\ud800", "at m\\ud800")
    assert sink.warnings[0].startswith("the error message contained lone surrogate")
