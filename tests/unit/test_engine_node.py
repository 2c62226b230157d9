"""NodeKernel against the real ``node`` (no mocks): persistence, streams, values, errors, interrupts, death."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coderunner.engine.base import KernelReply
from coderunner.engine.node import NodeKernel, _StreamDemux
from coderunner.errors import BackendError, BackendUnavailableError

pytestmark = [
    pytest.mark.skipif(
        shutil.which(os.environ.get("CODERUNNER_NODE") or "node") is None,
        reason="Node.js is not installed (install it or set CODERUNNER_NODE)",
    ),
    pytest.mark.timeout(60),
]


class ListSink:
    """Collects what a kernel sends, in order."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.displays: list[tuple[str, dict[str, Any]]] = []

    def stdout(self, text: str) -> None:
        self.out.append(text)

    def stderr(self, text: str) -> None:
        self.err.append(text)

    def display(self, kind: Any, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.displays.append((kind, data))

    @property
    def stdout_text(self) -> str:
        return "".join(self.out)

    @property
    def stderr_text(self) -> str:
        return "".join(self.err)

    @property
    def value(self) -> str | None:
        results = [d["text/plain"] for kind, d in self.displays if kind == "execute_result"]
        return results[-1] if results else None


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}


@pytest.fixture
async def kernel(tmp_path: Path) -> AsyncIterator[NodeKernel]:
    k = NodeKernel()
    await k.start(tmp_path, _env(), tmp_path)
    try:
        yield k
    finally:
        await k.shutdown()


async def run(kernel: NodeKernel, code: str) -> tuple[KernelReply, ListSink]:
    sink = ListSink()
    reply = await kernel.execute(code, sink)
    return reply, sink


async def ok(kernel: NodeKernel, code: str) -> ListSink:
    reply, sink = await run(kernel, code)
    assert reply.exit_code == 0 and reply.error is None, (reply, sink.stderr_text)
    return sink


# -- state ----------------------------------------------------------------------------------------


async def test_variables_functions_and_lexicals_persist(kernel: NodeKernel) -> None:
    await ok(kernel, "var a = 1; function twice(x) { return 2 * x }; let b = 10; const c = 100; class K {}")
    sink = await ok(kernel, "twice(a) + b + c + (new K() instanceof K ? 1000 : 0)")
    assert sink.value == "1112"


async def test_redeclaring_let_const_and_class_works_like_a_notebook(kernel: NodeKernel) -> None:
    await ok(kernel, "let x = 1; const y = 2; class K { static v = 1 }")
    await ok(kernel, "let x = 10; const y = 20; class K { static v = 2 }")
    assert (await ok(kernel, "[x, y, K.v]")).value == "[ 10, 20, 2 ]"


async def test_redeclaration_inside_one_snippet_is_still_an_error(kernel: NodeKernel) -> None:
    reply, _ = await run(kernel, "let q = 1; let q = 2")
    assert reply.exit_code == 1 and reply.error is not None and reply.error.name == "SyntaxError"


async def test_execution_count_increases(kernel: NodeKernel) -> None:
    first, _ = await run(kernel, "1")
    second, _ = await run(kernel, "2")
    assert first.execution_count is not None and second.execution_count == first.execution_count + 1


# -- globals and require --------------------------------------------------------------------------


async def test_usual_globals_are_available(kernel: NodeKernel) -> None:
    names = [
        "console", "require", "process", "Buffer", "setTimeout", "setInterval", "clearTimeout",
        "URL", "TextEncoder", "fetch", "structuredClone", "queueMicrotask", "AbortController",
    ]  # fmt: skip
    sink = await ok(kernel, f"{names}.filter(n => typeof globalThis[n] === 'undefined')")
    assert sink.value == "[]"


async def test_require_builtin_and_node_errors_are_real_errors(kernel: NodeKernel) -> None:
    sink = await ok(
        kernel,
        "const fs = require('fs');\n"
        "try { fs.readFileSync('missing.txt') } catch (e) { console.log(e instanceof Error, e.code) }\n"
        "typeof fs.readFileSync",
    )
    assert sink.stdout_text == "true ENOENT\n"
    assert sink.value == "'function'"


async def test_require_module_from_cwd_node_modules(tmp_path: Path) -> None:
    pkg = tmp_path / "node_modules" / "tiny"
    pkg.mkdir(parents=True)
    (pkg / "index.js").write_text("module.exports = { greet: (n) => `hello ${n}` };\n")
    (tmp_path / "local.js").write_text("module.exports = 42;\n")
    k = NodeKernel()
    await k.start(tmp_path, _env(), tmp_path)
    try:
        sink = await ok(k, "[require('tiny').greet('js'), require('./local.js')]")
        assert sink.value == "[ 'hello js', 42 ]"
    finally:
        await k.shutdown()


# -- output ---------------------------------------------------------------------------------------


async def test_stdout_and_stderr_are_kept_apart(kernel: NodeKernel) -> None:
    sink = await ok(
        kernel,
        "console.log('out1'); console.error('err1'); console.info('out2'); console.warn('err2');\n"
        "process.stdout.write('out3\\n'); process.stderr.write('err3\\n');",
    )
    assert sink.stdout_text == "out1\nout2\nout3\n"
    assert sink.stderr_text == "err1\nerr2\nerr3\n"


async def test_output_without_trailing_newline_and_lookalike_markers(kernel: NodeKernel) -> None:
    sink = await ok(kernel, "process.stdout.write('no newline \\x1e\\x1fcoderunner:fake'); undefined")
    assert sink.stdout_text == "no newline \x1e\x1fcoderunner:fake"


async def test_unicode_output(kernel: NodeKernel) -> None:
    sink = await ok(kernel, "console.log('héllo wörld ☃ 😀 中文'); process.stdout.write('é'.repeat(300000))")
    text = sink.stdout_text
    assert text.startswith("héllo wörld ☃ 😀 中文\n")
    # 600 kB of two-byte characters crosses many read boundaries: none may be mangled.
    assert text[len("héllo wörld ☃ 😀 中文\n") :] == "é" * 300000


async def test_ten_megabytes_of_output_reach_the_sink(kernel: NodeKernel) -> None:
    sink = await ok(
        kernel, "process.stdout.write('x'.repeat(10_000_000)); process.stderr.write('y'.repeat(2_000_000)); 0"
    )
    assert len(sink.stdout_text) == 10_000_000 and set(sink.stdout_text) == {"x"}
    assert len(sink.stderr_text) == 2_000_000
    assert sink.value == "0"
    assert (await ok(kernel, "console.log('after')")).stdout_text == "after\n"


async def test_output_is_streamed_while_running(kernel: NodeKernel) -> None:
    sink = ListSink()
    task = asyncio.ensure_future(
        kernel.execute("console.log('first'); await new Promise(r => setTimeout(r, 400)); console.log('second')", sink)
    )
    deadline = time.monotonic() + 5
    while not sink.out and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert sink.stdout_text == "first\n" and not task.done()
    reply = await task
    assert reply.exit_code == 0 and sink.stdout_text == "first\nsecond\n"


# -- values and errors ----------------------------------------------------------------------------


async def test_last_expression_value_is_an_execute_result(kernel: NodeKernel) -> None:
    sink = await ok(kernel, "const o = {a: 1, b: 'two', c: [1, 2, 3]}; o")
    assert sink.displays == [("execute_result", {"text/plain": "{ a: 1, b: 'two', c: [ 1, 2, 3 ] }"})]
    assert (await ok(kernel, "undefined")).displays == []
    assert (await ok(kernel, "console.log('x')")).displays == []  # console.log returns undefined


async def test_thrown_error_has_name_message_and_stack(kernel: NodeKernel) -> None:
    reply, _ = await run(kernel, "function boom() { throw new TypeError('bad thing') }\nboom()")
    assert reply.exit_code == 1 and not reply.died
    assert reply.error is not None
    assert (reply.error.name, reply.error.value) == ("TypeError", "bad thing")
    assert "at boom (<cell" in reply.error.traceback
    assert "node_driver.js" not in reply.error.traceback and "node:vm" not in reply.error.traceback


async def test_throwing_a_non_error_value(kernel: NodeKernel) -> None:
    reply, _ = await run(kernel, "throw 5")
    assert reply.exit_code == 1 and reply.error is not None
    assert (reply.error.name, reply.error.value) == ("Error", "5")


async def test_rejected_promise_is_an_error(kernel: NodeKernel) -> None:
    reply, _ = await run(kernel, "Promise.reject(new RangeError('nope'))")
    assert reply.error is not None and (reply.error.name, reply.error.value) == ("RangeError", "nope")
    reply, _ = await run(kernel, "await Promise.reject(new Error('awaited'))")
    assert reply.error is not None and reply.error.value == "awaited"


async def test_syntax_error(kernel: NodeKernel) -> None:
    reply, _ = await run(kernel, "foo(")
    assert reply.exit_code == 1 and reply.error is not None and reply.error.name == "SyntaxError"


async def test_errors_from_timers_do_not_kill_the_driver(kernel: NodeKernel) -> None:
    # The snippet outlives the timer, so the report lands in this execution's stderr.
    sink = await ok(
        kernel,
        "setTimeout(() => { throw new Error('from a timer') }, 0); Promise.reject(new Error('loose'));\n"
        "await new Promise(r => setTimeout(r, 100))",
    )
    assert "Uncaught Error: from a timer" in sink.stderr_text
    assert "Uncaught (in promise) Error: loose" in sink.stderr_text
    # A later failure, after the snippet ended, must not kill the driver either.
    await ok(kernel, "setTimeout(() => { throw new Error('after the end') }, 0)")
    await asyncio.sleep(0.1)
    assert (await ok(kernel, "1 + 1")).value == "2"
    assert kernel.is_alive()


# -- await --------------------------------------------------------------------------------------


async def test_top_level_await(kernel: NodeKernel) -> None:
    sink = await ok(kernel, "await new Promise(r => setTimeout(r, 50)); console.log('done'); let t = 7; t * 6")
    assert sink.stdout_text == "done\n" and sink.value == "42"
    # Node's REPL helper hoists the declaration, so it persists too.
    assert (await ok(kernel, "t")).value == "7"


async def test_promise_completion_value_is_awaited(kernel: NodeKernel) -> None:
    assert (await ok(kernel, "new Promise(r => setTimeout(() => r('later'), 20))")).value == "'later'"


# -- interrupt ------------------------------------------------------------------------------------


async def _interrupt_after(kernel: NodeKernel, code: str, delay: float = 0.3) -> KernelReply:
    task = asyncio.ensure_future(kernel.execute(code, ListSink()))
    await asyncio.sleep(delay)
    assert not task.done()
    await kernel.interrupt()
    return await asyncio.wait_for(task, timeout=5)


async def test_interrupt_busy_loop_keeps_state(kernel: NodeKernel) -> None:
    await ok(kernel, "let kept = 'still here'")
    reply = await _interrupt_after(kernel, "while (true) {}")
    assert reply.interrupted and reply.exit_code == 130 and not reply.died
    assert reply.error is not None and reply.error.name == "KeyboardInterrupt"
    assert (await ok(kernel, "kept")).value == "'still here'"


async def test_interrupt_pending_await_keeps_state(kernel: NodeKernel) -> None:
    await ok(kernel, "var counter = 41")
    reply = await _interrupt_after(kernel, "counter++; await new Promise(() => {})")
    assert reply.interrupted and reply.exit_code == 130
    assert (await ok(kernel, "counter + 0")).value == "42"


async def test_interrupt_when_idle_is_harmless(kernel: NodeKernel) -> None:
    await kernel.interrupt()
    assert (await ok(kernel, "'fine'")).value == "'fine'"


async def test_cancelled_execute_does_not_confuse_the_next_one(kernel: NodeKernel) -> None:
    task = asyncio.ensure_future(kernel.execute("await new Promise(r => setTimeout(r, 300)); 'stale'", ListSink()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sink = await ok(kernel, "console.log('fresh'); 'new value'")
    assert "fresh\n" in sink.stdout_text and sink.value == "'new value'"


# -- death ----------------------------------------------------------------------------------------


async def test_process_exit_is_reported_as_death(kernel: NodeKernel) -> None:
    started = time.monotonic()
    reply, sink = await run(kernel, "console.log('bye'); process.exit(3)")
    assert reply.died and reply.returncode == 3
    assert sink.stdout_text == "bye\n"  # what it wrote before dying is kept
    assert time.monotonic() - started < 3
    assert not kernel.is_alive()
    again, _ = await run(kernel, "1")
    assert again.died


async def test_sigkill_is_reported_even_when_a_child_holds_the_pipes(kernel: NodeKernel) -> None:
    started = time.monotonic()
    reply, _ = await run(
        kernel,
        "require('child_process').spawn('sleep', ['30'], {stdio: 'inherit'});\nprocess.kill(process.pid, 'SIGKILL')",
    )
    assert reply.died and reply.returncode == -9
    assert time.monotonic() - started < 3


# -- lifecycle ----------------------------------------------------------------------------------


async def test_configure_changes_cwd_env_and_require(kernel: NodeKernel, tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "node_modules" / "only-here").mkdir(parents=True)
    (other / "node_modules" / "only-here" / "index.js").write_text("module.exports = 'found';\n")
    await kernel.configure(other, {"CR_TEST_VAR": "v1"})
    sink = await ok(
        kernel, "console.log(JSON.stringify([process.cwd(), process.env.CR_TEST_VAR, require('only-here')]))"
    )
    assert json.loads(sink.stdout_text) == [str(other), "v1", "found"]


async def test_start_uses_exactly_the_given_env(tmp_path: Path) -> None:
    k = NodeKernel()
    await k.start(tmp_path, _env(ONLY_THIS="1"), tmp_path)
    try:
        assert (await ok(k, "Object.keys(process.env).sort()")).value == "[ 'ONLY_THIS', 'PATH' ]"
        assert (await ok(k, "process.cwd()")).value == f"'{tmp_path}'"
    finally:
        await k.shutdown()


async def test_pid_alive_and_idempotent_shutdown(tmp_path: Path) -> None:
    k = NodeKernel()
    await k.start(tmp_path, _env(), tmp_path)
    pid = k.pid
    assert pid is not None and k.is_alive()
    assert (await ok(k, "process.pid")).value == str(pid)
    await k.shutdown()
    await k.shutdown()
    assert not k.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_stdin_is_not_the_control_channel(kernel: NodeKernel) -> None:
    sink = await ok(kernel, "require('fs').readFileSync(0, 'utf8').length")
    assert sink.value == "0"


async def test_missing_node_raises_backend_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERUNNER_NODE", str(tmp_path / "no-such-node"))
    with pytest.raises(BackendUnavailableError, match=r"Install Node\.js"):
        await NodeKernel().start(tmp_path, _env(), tmp_path)


async def test_start_failures_raise_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="Could not start node"):
        await NodeKernel().start(tmp_path / "missing-dir", _env(), tmp_path)
    with pytest.raises(BackendError, match="did not start"):
        await NodeKernel(node="false").start(tmp_path, _env(), tmp_path)  # exits at once


# -- the token splitter ---------------------------------------------------------------------------


async def test_demux_finds_tokens_split_anywhere() -> None:
    prefix = b"\x1e\x1fcoderunner:abc:"
    token = prefix + b"00000001"
    data = "héllo\x1e".encode() + token + b"tail"
    for cut in range(len(data) + 1):
        sink = ListSink()
        demux = _StreamDemux(prefix, lambda s, t: s.stdout(t))
        done = demux.attach(sink, token)
        demux.feed(data[:cut])
        demux.feed(data[cut:])
        assert done.done(), cut
        assert sink.stdout_text == "héllo\x1etail", cut


async def test_demux_drops_stale_tokens_and_keeps_idle_output() -> None:
    prefix = b"\x1e\x1fcoderunner:abc:"
    demux = _StreamDemux(prefix, lambda s, t: s.stdout(t))
    demux.feed(b"between " + prefix + b"00000001")  # no sink; a token nobody waits for
    sink = ListSink()
    done = demux.attach(sink, prefix + b"00000002")
    demux.feed(b"now" + prefix + b"00000002")
    assert done.done() and sink.stdout_text == "between now"
