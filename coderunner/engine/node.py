"""The JavaScript kernel: one persistent ``node`` process running our driver, ``node_driver.js``.

Channels. Commands and replies travel as JSON lines over a socketpair whose child end is
passed to node as an extra fd; user output goes to node's real stdout and stderr pipes, and
stdin is ``/dev/null``. Keeping the protocol off the user's streams means no output, however
odd, can be mistaken for a reply. To know when an execution's output has all been read, the
driver writes a per-execution token to stdout and to stderr once the snippet has finished; the
readers below cut it out of the stream (it may arrive mid-line or split across reads).

Environment:
    CODERUNNER_NODE: Path of the ``node`` executable (default: ``node`` found on ``PATH``).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from coderunner.engine.base import Kernel, KernelReply, OutputSink
from coderunner.errors import BackendError, BackendUnavailableError
from coderunner.models import ErrorInfo

__all__ = ["NodeKernel", "find_node"]

log = logging.getLogger(__name__)

_DRIVER = Path(__file__).with_name("node_driver.js")
_START_TIMEOUT = 30.0
# How often a wait re-checks that node is still running. asyncio's Process.wait() only returns
# once the output pipes are closed too, which never happens while a process started by the
# user's code holds them, so we poll the return code (set as soon as node itself exits).
_EXIT_POLL = 0.05
# After node died, how long to keep reading the output it left in the pipes.
_DRAIN_AFTER_DEATH = 0.5
_TERM_GRACE = 0.5
_KILL_WAIT = 2.0
_READ_CHUNK = 1 << 18
# One reply line holds a util.inspect() text or a stack: small, but never fail on a big one.
_CONTROL_LIMIT = 64 << 20
# Output written between executions (by timers) is kept for the next execution, up to this much.
_PENDING_LIMIT = 64 << 10
_TOKEN_ID_LEN = 8

_INSTALL_HINT = (
    "Node.js was not found, so JavaScript cannot run. Install Node.js 18 or newer "
    "(e.g. `apt-get install nodejs`, `brew install node`, or https://nodejs.org/) "
    "or set CODERUNNER_NODE to the path of the node executable."
)


def find_node(explicit: str | None = None) -> str:
    """Locate the ``node`` executable: argument > ``CODERUNNER_NODE`` > ``PATH``.

    Raises:
        BackendUnavailableError: When no usable ``node`` is found.
    """
    wanted = explicit or os.environ.get("CODERUNNER_NODE")
    if wanted:
        found = shutil.which(wanted)
        if found is None:
            raise BackendUnavailableError(f"{_INSTALL_HINT} (CODERUNNER_NODE={wanted!r} is not an executable)")
        return found
    found = shutil.which("node")
    if found is None:
        raise BackendUnavailableError(_INSTALL_HINT)
    return found


class _StreamDemux:
    """Splits one output pipe into user text, sent to the current sink, and end-of-execution tokens.

    Tokens are ``prefix + 8 hex digits``. The prefix starts with an ASCII control character and
    carries a per-kernel secret, so user output does not contain it by accident.
    """

    def __init__(self, prefix: bytes, write: Callable[[OutputSink, str], None]) -> None:
        self._prefix = prefix
        self._token_len = len(prefix) + _TOKEN_ID_LEN
        self._write = write
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = b""  # the start of a token whose end has not been read yet
        self._sink: OutputSink | None = None
        self._expected: dict[bytes, asyncio.Future[None]] = {}
        self._pending: list[str] = []
        self._pending_size = 0
        self._dropped = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def attach(self, sink: OutputSink, token: bytes) -> asyncio.Future[None]:
        """Route output to ``sink`` until ``token`` is read; the future completes then."""
        self._sink = sink
        self.flush_pending()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._expected[token] = done
        return done

    def detach(self) -> None:
        """Stop routing to the sink; a token still expected is forgotten (dropped when it comes)."""
        self._sink = None
        self._expected.clear()

    def pending_text(self) -> str:
        """Output received while no sink was attached (e.g. node's startup errors)."""
        return "".join(self._pending)

    def flush_pending(self) -> None:
        """Hand output that arrived between executions to the attached sink."""
        if self._sink is None or not (self._pending or self._dropped):
            return
        text = "".join(self._pending)
        if self._dropped:
            text += f"\n[coderunner: {self._dropped} more characters written between executions were dropped]\n"
        self._pending, self._pending_size, self._dropped = [], 0, 0
        self._emit_text(text)

    def feed(self, data: bytes) -> None:
        """Take one chunk read from the pipe."""
        buf = self._held + data if self._held else data
        self._held = b""
        start = 0
        while True:
            i = buf.find(self._prefix, start)
            if i < 0:
                break
            end = i + self._token_len
            if end > len(buf):  # the token's end is still in the pipe
                self._emit(buf[start:i])
                self._held = buf[i:]
                return
            self._emit(buf[start:i])
            self._token(buf[i:end])
            start = end
        # The chunk may end with the first bytes of a token: hold them until the next read. The
        # prefix's first byte occurs nowhere else in it, so only its last occurrence can start one.
        keep = 0
        j = buf.rfind(self._prefix[:1], max(start, len(buf) - len(self._prefix) + 1))
        if j >= 0 and self._prefix.startswith(buf[j:]):
            keep = len(buf) - j
        self._emit(buf[start : len(buf) - keep])
        if keep:
            self._held = buf[len(buf) - keep :]

    def close(self) -> None:
        """The pipe reached end of file."""
        self._emit(self._held)
        self._held = b""
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._emit_text(tail)
        if not self.closed.done():
            self.closed.set_result(None)

    def _token(self, token: bytes) -> None:
        done = self._expected.pop(token, None)
        # An unknown token belongs to an execution that was cancelled: drop it silently.
        if done is not None and not done.done():
            done.set_result(None)

    def _emit(self, data: bytes) -> None:
        if data:
            text = self._decoder.decode(data)
            if text:
                self._emit_text(text)

    def _emit_text(self, text: str) -> None:
        sink = self._sink
        if sink is None:
            room = _PENDING_LIMIT - self._pending_size
            if room > 0:
                self._pending.append(text[:room])
                self._pending_size += min(len(text), room)
            self._dropped += max(len(text) - max(room, 0), 0)
            return
        try:
            self._write(sink, text)
        except Exception:
            # A broken sink must not stop us reading the pipe: node would block on a full pipe.
            log.exception("output sink failed")


class NodeKernel(Kernel):
    """One persistent ``node`` process per instance; variables persist between executions.

    Args:
        node: Path of the ``node`` executable; defaults to ``CODERUNNER_NODE``, then ``PATH``.

    Limitations: an interrupt stops synchronous code run directly by a snippet and any pending
    await, but not a busy loop inside a timer callback or after an ``await`` (Node cannot break
    into those); the session then restarts the interpreter. Variables declared with
    ``let``/``const`` inside a snippet that uses top-level ``await`` persist as well (Node's REPL
    hoists them), except on a Node build without its REPL helpers, where they stay local.
    Output written between executions (by timers) is handed to the next execution's sink.
    """

    language: ClassVar[str] = "javascript"

    def __init__(self, node: str | None = None) -> None:
        self._node = node
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._control_closed: asyncio.Future[None] | None = None
        self._out: _StreamDemux | None = None
        self._err: _StreamDemux | None = None
        self._prefix = ""
        self._seq = 0
        self._executing = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The node process id, once started."""
        return self._proc.pid if self._proc is not None else None

    def is_alive(self) -> bool:
        """True while the node process runs."""
        return self._proc is not None and self._proc.returncode is None and not self._closed

    async def start(self, cwd: Path, env: Mapping[str, str], runtime_dir: Path) -> None:
        """Start node with the driver in ``cwd`` with exactly ``env`` and wait until it is ready.

        ``runtime_dir`` is not used: the control channel is an anonymous socketpair.

        Raises:
            BackendUnavailableError: When node is not installed.
            BackendError: When node does not start or the driver does not answer.
        """
        node = find_node(self._node)
        loop = asyncio.get_running_loop()
        self._prefix = f"\x1e\x1fcoderunner:{secrets.token_hex(8)}:"
        prefix = self._prefix.encode()
        self._out = _StreamDemux(prefix, lambda sink, text: sink.stdout(text))
        self._err = _StreamDemux(prefix, lambda sink, text: sink.stderr(text))
        self._control_closed = loop.create_future()
        ready = loop.create_future()
        self._replies["ready"] = ready

        parent, child = socket.socketpair()
        try:
            # --expose-internals gives the driver Node's own REPL helpers (top-level await).
            self._proc = await asyncio.create_subprocess_exec(
                node,
                "--expose-internals",
                str(_DRIVER),
                str(child.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(cwd),
                env=dict(env),
                pass_fds=(child.fileno(),),
                # Its own process group, so shutdown() also reaches what the user's code started.
                start_new_session=True,
                limit=_READ_CHUNK,
            )
        except (OSError, RuntimeError) as exc:
            # RuntimeError: node was forked but asyncio could not start the thread that waits for it
            # (at the process limit); the engine kills it by its tag.
            parent.close()
            raise BackendError(f"Could not start node ({node}) in {cwd}: {exc}") from exc
        finally:
            child.close()  # node has its copy; ours would keep the channel open after node dies
        try:
            reader, self._writer = await asyncio.open_unix_connection(sock=parent, limit=_CONTROL_LIMIT)
        except OSError as exc:
            parent.close()
            await self.shutdown()
            raise BackendError(f"Could not connect to the node driver: {exc}") from exc
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._tasks = [
            loop.create_task(_pump(self._proc.stdout, self._out)),
            loop.create_task(_pump(self._proc.stderr, self._err)),
            loop.create_task(self._read_control(reader)),
        ]
        try:
            ok = await asyncio.wait_for(self._wait_for(ready), timeout=_START_TIMEOUT)
        except asyncio.TimeoutError:
            ok = False
        finally:
            self._replies.pop("ready", None)
        if not ok:
            detail = _brief(self._err.pending_text()) or f"exit status {self._proc.returncode}"
            await self.shutdown()
            raise BackendError(f"The JavaScript kernel (node) did not start: {detail}")

    async def configure(self, cwd: Path, env: Mapping[str, str]) -> None:
        """Change node's directory and environment, and make ``require`` resolve from ``cwd``.

        Raises:
            BackendError: When node refused (e.g. ``cwd`` does not exist) or died.
        """
        msg = await self._request({"op": "configure", "cwd": str(cwd), "env": dict(env)})
        if msg is None:
            raise BackendError("The JavaScript kernel died while being configured.")
        if msg.get("status") != "ok":
            err = msg.get("error") or {}
            raise BackendError(f"Could not prepare the JavaScript kernel: {err.get('message', 'unknown error')}")

    async def execute(self, code: str, sink: OutputSink) -> KernelReply:
        """Run ``code``, streaming its output into ``sink``; the last expression's value becomes a result."""
        proc, out, err = self._proc, self._out, self._err
        if proc is None or out is None or err is None or self._closed:
            raise BackendError("The JavaScript kernel is not started.")
        if proc.returncode is not None:
            return self._died()
        exec_id = self._next_id()
        token = self._prefix + exec_id
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._replies[exec_id] = reply
        out_done = out.attach(sink, token.encode())
        err_done = err.attach(sink, token.encode())
        self._executing = True
        try:
            sent = await self._send({"op": "exec", "id": exec_id, "code": code, "token": token})
            if not sent or not await self._wait_for(reply, out_done, err_done):
                # Keep what node wrote before dying: it often says why.
                await asyncio.wait({out.closed, err.closed}, timeout=_DRAIN_AFTER_DEATH)
                return self._died()
        finally:
            self._executing = False
            self._replies.pop(exec_id, None)
            out.detach()
            err.detach()
        return _reply_from(reply.result(), sink)

    async def interrupt(self) -> None:
        """Send SIGINT to node: the running snippet stops, the context and its variables stay."""
        proc = self._proc
        if proc is None or proc.returncode is not None or not self._executing:
            return  # idle: nothing to stop (and a stray SIGINT could hit the next execution)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGINT)

    async def shutdown(self) -> None:
        """Kill node's process group (SIGTERM, then SIGKILL) and close the pipes. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        try:
            if proc is not None:
                await _kill_group(proc)
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._writer is not None:
                self._writer.close()
            if proc is not None:
                # Close our ends of stdout/stderr now, even if a process that escaped the group
                # still holds the other ends.
                transport = getattr(proc, "_transport", None)
                if transport is not None:
                    transport.close()
            for fut in self._replies.values():
                fut.cancel()
            self._replies.clear()
        except Exception:  # shutdown must never raise; log what went wrong
            log.exception("error while shutting down the JavaScript kernel")

    # -- internals ------------------------------------------------------------------------------

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._seq:0{_TOKEN_ID_LEN}x}"

    def _died(self) -> KernelReply:
        proc = self._proc
        return KernelReply(exit_code=1, died=True, returncode=proc.returncode if proc is not None else None)

    async def _request(self, command: dict[str, Any]) -> dict[str, Any] | None:
        """Send a command and wait for its reply; None when node died first."""
        proc = self._proc
        if proc is None or self._closed:
            raise BackendError("The JavaScript kernel is not started.")
        req_id = self._next_id()
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[req_id] = reply
        try:
            if not await self._send({**command, "id": req_id}) or not await self._wait_for(reply):
                return None
            return reply.result()
        finally:
            self._replies.pop(req_id, None)

    async def _send(self, command: dict[str, Any]) -> bool:
        writer = self._writer
        if writer is None:
            return False
        try:
            writer.write(json.dumps(command).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            return False  # node is gone; the caller reports the death
        return True

    async def _wait_for(self, *futures: asyncio.Future[Any]) -> bool:
        """Wait until every future is done; False as soon as node has died instead."""
        proc, closed = self._proc, self._control_closed
        assert proc is not None and closed is not None
        pending: set[asyncio.Future[Any]] = {f for f in futures if not f.done()}
        while pending:
            if proc.returncode is not None:
                return False
            if closed.done():
                # The driver closed its channel only by exiting: no reply can come any more.
                # Give the child watcher a moment to record the exit status.
                for _ in range(int(1 / _EXIT_POLL)):
                    if proc.returncode is not None:
                        break
                    await asyncio.sleep(_EXIT_POLL / 5)
                return False
            done, _ = await asyncio.wait(pending | {closed}, timeout=_EXIT_POLL, return_when=asyncio.FIRST_COMPLETED)
            pending -= done
        return True

    async def _read_control(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.warning("node driver sent a line that is not JSON: %r", line[:200])
                    continue
                fut = self._replies.get(str(msg.get("id")))
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (OSError, ValueError) as exc:  # ValueError: a line longer than _CONTROL_LIMIT
            log.warning("node control channel failed: %s", exc)
        finally:
            closed = self._control_closed
            if closed is not None and not closed.done():
                closed.set_result(None)


def _brief(text: str, lines: int = 3, chars: int = 600) -> str:
    """The start of what node wrote before failing (a native crash prints a long stack after the cause)."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][:lines]
    brief = "\n".join(kept)
    return brief if len(brief) <= chars else brief[:chars] + "..."


async def _pump(reader: asyncio.StreamReader, demux: _StreamDemux) -> None:
    """Read one of node's output pipes until end of file."""
    try:
        while True:
            data = await reader.read(_READ_CHUNK)
            if not data:
                break
            demux.feed(data)
    finally:
        demux.close()


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM node's process group, SIGKILL it after a short grace, and wait for node to exit."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    for _ in range(int(_TERM_GRACE / _EXIT_POLL)):
        if proc.returncode is not None:
            break
        await asyncio.sleep(_EXIT_POLL)
    # Always: children the user's code started may ignore SIGTERM even if node obeyed it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for _ in range(int(_KILL_WAIT / _EXIT_POLL)):
        if proc.returncode is not None:
            break
        await asyncio.sleep(_EXIT_POLL)


def _reply_from(msg: dict[str, Any], sink: OutputSink) -> KernelReply:
    """Turn the driver's reply into a KernelReply; a completion value goes to ``sink``."""
    count = msg.get("count")
    count = count if isinstance(count, int) else None
    status = msg.get("status")
    if status == "ok":
        value = msg.get("value")
        if isinstance(value, str):
            sink.display("execute_result", {"text/plain": value}, {})
        return KernelReply(exit_code=0, execution_count=count)
    if status == "interrupted":
        return KernelReply(
            exit_code=130,
            interrupted=True,
            execution_count=count,
            error=ErrorInfo(name="KeyboardInterrupt", value="interrupted"),
        )
    err = msg.get("error") or {}
    return KernelReply(
        exit_code=1,
        execution_count=count,
        error=ErrorInfo(
            name=str(err.get("name") or "Error"),
            value=str(err.get("message", "")),
            traceback=str(err.get("stack", "")),
        ),
    )
