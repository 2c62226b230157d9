r"""Code that runs inside the Python kernel: caps stdout and stderr where they are written, keeps messages sendable.

:class:`~coderunner.engine.python.PythonKernel` sends this module's source to every kernel it
starts and calls :func:`install` there, so the kernel's interpreter needs nothing but ipykernel
(it may be another Python than the engine's). It imports only the standard library at the top.

**Output caps.** ipykernel's ``sys.stdout``/``sys.stderr`` (``OutStream``) also receive what
subprocesses write to file descriptors 1 and 2. Each write goes through :class:`_StreamCap`:
the first ``limit`` characters of an execution are passed on as usual (the engine keeps its
head and tail); past that, text is appended to the spill file the engine named for the
execution, straight from the kernel, and only the last ``tail`` characters stay in memory.
So neither the kernel nor the engine holds more than about the cap, however much is printed.
The engine sends the settings with each execute_request, in its metadata (no extra round trip)::

    {"coderunner": {"limit": 100000, "tail": 50000, "stdout": "/abs/x.stdout", "stderr": "/abs/x.stderr"}}

and the kernel reports back on iopub with messages of type :data:`MSG_TYPE`, whose content is
``{"name": "stdout", "event": "spill", "saved": bool}`` when a stream first passes its cap
(so a kernel killed mid-flood still leaves a truncated result), and
``{"name": ..., "event": "end", "total": int | None, "tail": str | None, "replaced": bool}``
at the end of an execution that was cut or had text replaced.

**Unsendable text.** A lone surrogate (``"\ud800"``) cannot be encoded as UTF-8, and ipykernel
then drops the whole message (every line printed in the same 0.2 s, a display, an error and
even the execute_reply). Streams escape such code points as they are written; any other
message that fails to pack for that reason is sent again with them escaped (``\ud800``) and
``"coderunner_replaced": true`` in its metadata.

**A pooled kernel's session.** A kernel taken from the warm pool learns its session's working
directory and environment from the session's first execute_request (metadata key
:data:`PREPARE_KEY`: ``{"cwd": "/abs/dir", "env": {...}}``), applied before that code runs.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import io
import json
import os
import re
import threading
from typing import IO, Any

__all__ = ["MSG_TYPE", "PREPARE_KEY", "REPLACED_KEY", "escape_surrogates", "install"]

MSG_TYPE = "coderunner_output"
"""The iopub message type the kernel uses to report a cut or a replacement to the engine."""
REPLACED_KEY = "coderunner_replaced"
"""Metadata key set on a message whose text had lone surrogates escaped."""
OPTIONS_KEY = "coderunner"
"""The execute_request metadata key carrying the per-execution caps."""
PREPARE_KEY = "coderunner_prepare"
"""The execute_request metadata key carrying a pooled kernel's session: ``{"cwd": ..., "env": {...}}``."""

_SURROGATE = re.compile("[\ud800-\udfff]")
# Big writes go to the spill file in slices, so a 300 MB string is never copied whole.
_CHUNK = 1 << 20
_PTY_READ = 1 << 16
# After an interrupt, how long ``!cmd`` gets to print its last words before it is killed (IPython's value).
_TERMINATE_GRACE = 0.2


def escape_surrogates(text: str) -> str:
    r"""``text`` with each lone surrogate replaced by its ``\uXXXX`` escape (other text untouched)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _has_surrogates(text: str) -> bool:
    # isascii() is O(1) in CPython: the common case costs nothing.
    return not text.isascii() and _SURROGATE.search(text) is not None


def _clean(obj: Any) -> Any:
    """A copy of a JSON-like value with lone surrogates escaped in every string (keys too)."""
    if isinstance(obj, str):
        return escape_surrogates(obj) if _has_surrogates(obj) else obj
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _contains_surrogates(obj: Any) -> bool:
    if isinstance(obj, str):
        return _has_surrogates(obj)
    if isinstance(obj, dict):
        return any(_contains_surrogates(k) or _contains_surrogates(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return any(_contains_surrogates(v) for v in obj)
    return False


class _Unsendable(Exception):
    """A message part holds lone surrogates: escape them and pack again."""


class _State:
    """One stream during one execution (or between executions, with no spill path)."""

    __slots__ = (
        "file",
        "kept",
        "limit",
        "over",
        "parent",
        "path",
        "replaced",
        "saved",
        "spilled",
        "tail",
        "tail_len",
        "tail_limit",
        "total",
    )

    def __init__(
        self, limit: int | None, tail_limit: int = 0, path: str | None = None, parent: dict[str, Any] | None = None
    ) -> None:
        self.limit = limit
        self.tail_limit = tail_limit
        self.path = path
        self.parent = parent
        self.total = 0
        self.over = False
        self.replaced = False
        # What was passed on while under the cap: written to the spill file first if the cap is passed.
        self.kept: list[str] | None = [] if path else None
        self.file: IO[str] | None = None
        self.saved = False
        self.spilled = 0
        self.tail: collections.deque[str] = collections.deque()
        self.tail_len = 0


class _StreamCap:
    """Wraps one ipykernel ``OutStream``: installed as its ``write``."""

    def __init__(self, stream: Any, max_spill: int) -> None:
        self.name: str = stream.name
        self._stream = stream
        self._write = stream.write  # the original bound method
        self._max_spill = max_spill
        self._lock = threading.RLock()  # RLock: a signal handler may print while we hold it
        self._state = _State(None)
        self._forked = False
        self._attached = False
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # A forked child (multiprocessing) must not touch our spill file: ipykernel pipes its output
        # to this process, where _route_children passes it through write() like our own.
        self._forked = True
        # Text this process had not sent yet is copied into the child, which would send it again.
        # Replaced, not emptied: the lock guarding it may have been held by another thread at fork.
        stream = self._stream
        if hasattr(stream, "_buffer_lock"):
            stream._buffer_lock = threading.RLock()
        if hasattr(stream, "_buffers"):  # ipykernel 7: one buffer per parent message
            stream._buffers = collections.defaultdict(io.StringIO)
        elif hasattr(stream, "_buffer"):  # ipykernel 6
            stream._buffer = io.StringIO()

    def attach(self) -> None:
        """Route the stream's writes through :meth:`write`.

        Set on the instance, where ``print()``, ``writelines()`` and ipykernel's thread relaying
        fd 1 and 2 all look it up. Not done during the cell that installs us: IPython's ``_tee``
        puts the stream's previous ``write`` back at the end of a cell.
        """
        if not self._attached:
            self._stream.write = self.write
            self._attached = True

    def begin(self, options: dict[str, Any] | None, parent: dict[str, Any]) -> None:
        """Start counting for a new execution; no options means no cap (the engine did not ask)."""
        self.attach()
        state = _State(None)
        if options is not None:
            try:
                limit, tail, path = int(options["limit"]), int(options["tail"]), options.get(self.name)
            except (KeyError, TypeError, ValueError):
                pass  # not from our engine: run uncapped rather than fail the execution
            else:
                state = _State(max(limit, 1), max(tail, 0), path if isinstance(path, str) and path else None, parent)
        with self._lock:
            self._state = state

    def write(self, text: str) -> int | None:
        """``OutStream.write`` with the cap applied."""
        if not isinstance(text, str) or self._forked:
            return self._write(text)  # type: ignore[no-any-return]
        n = len(text)
        with self._lock:
            st = self._state
            if _has_surrogates(text):
                text = escape_surrogates(text)
                st.replaced = True
            if st.limit is None:
                self._write(text)
                return n
            if not st.over:
                room = st.limit - st.total
                if len(text) <= room:
                    st.total += len(text)
                    if st.kept is not None:
                        st.kept.append(text)
                    self._write(text)
                    return n
                if room > 0:
                    self._write(text[:room])
                    if st.kept is not None:
                        st.kept.append(text[:room])
                self._start_spill(st)
                st.total += room
                self._take(st, text, room)
            else:
                self._take(st, text, 0)
        return n

    def _start_spill(self, st: _State) -> None:
        st.over = True
        kept, st.kept = st.kept or [], None
        if st.path is not None:
            try:
                os.makedirs(os.path.dirname(st.path), exist_ok=True)
                st.file = open(st.path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
            except OSError:
                st.file = None  # the cap still applies; only the full copy is missing
            st.saved = st.file is not None
            for chunk in kept:
                self._spill(st, chunk, 0)
            self._send(st, {"name": self.name, "event": "spill", "saved": st.saved})
        for chunk in kept:  # the end of what was passed on may belong to the tail
            self._keep_tail(st, chunk, 0)

    def _take(self, st: _State, text: str, start: int) -> None:
        """Text past the cap: to the spill file, and into the bounded tail."""
        st.total += len(text) - start
        self._spill(st, text, start)
        self._keep_tail(st, text, start)

    def _keep_tail(self, st: _State, text: str, start: int) -> None:
        if len(text) - start >= st.tail_limit:
            st.tail.clear()
            st.tail.append(text[len(text) - st.tail_limit :] if st.tail_limit else "")
            st.tail_len = st.tail_limit
            return
        piece = text[start:] if start else text
        st.tail.append(piece)
        st.tail_len += len(piece)
        while st.tail and st.tail_len - len(st.tail[0]) >= st.tail_limit:
            st.tail_len -= len(st.tail.popleft())

    def _spill(self, st: _State, text: str, start: int) -> None:
        f = st.file
        if f is None:
            return
        room = self._max_spill - st.spilled
        end = min(len(text), start + max(room, 0))
        try:
            for i in range(start, end, _CHUNK):
                f.write(text[i : min(i + _CHUNK, end)])
            st.spilled += end - start
            if end < len(text):
                f.write(f"\n[coderunner: output file stopped at {self._max_spill} bytes]\n")
                f.close()
                st.file = None
        except OSError:  # disk full: keep what is there, stop writing
            st.file = None
            with contextlib.suppress(OSError):
                f.close()

    def end(self) -> None:
        """Finish the execution: close the spill file and tell the engine the total and the tail."""
        with self._lock:
            st = self._state
            self._state = _State(st.limit, st.tail_limit)  # between executions: capped, nothing saved
        if st.file is not None:
            with contextlib.suppress(OSError):
                st.file.close()
        if not (st.over or st.replaced) or st.parent is None:
            return
        if st.over:
            # What was passed on before the cut must reach the engine before the tail does.
            self._stream.flush()
        tail = "".join(st.tail)[-st.tail_limit :] if st.tail_limit else ""
        content = {
            "name": self.name,
            "event": "end",
            "total": st.total if st.over else None,
            "tail": tail if st.over else None,
            "replaced": st.replaced,
        }
        self._send(st, content)

    def _send(self, st: _State, content: dict[str, Any]) -> None:
        stream = self._stream
        session, pub = stream.session, stream.pub_thread
        if pub is None or st.parent is None:
            return
        parent = {"header": st.parent}
        # Sent from the IO thread, like OutStream's own messages, so it queues after them.
        pub.schedule(lambda: session.send(pub, MSG_TYPE, content, parent=parent, ident=b"coderunner"))


def _strict_packer(default: Any) -> Any:
    """The packer ipykernel uses, minus its ``surrogateescape``: every lone surrogate makes it fail."""
    try:
        import orjson
    except ImportError:
        return lambda obj: json.dumps(obj, default=default, ensure_ascii=False, allow_nan=False).encode("utf-8")
    option = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
    return lambda obj: orjson.dumps(obj, default=default, option=option)


def _install_packing(session: Any) -> None:
    """Make a message with lone surrogates sendable: escape them and flag the message."""
    from jupyter_client import session as jsession  # the kernel's own jupyter_client
    from jupyter_client.jsonutil import json_default

    if session.pack not in (jsession.json_packer, jsession.orjson_packer):
        return  # a custom packer (msgpack, pickle) is the user's business
    original_pack = session.pack
    strict = _strict_packer(json_default)

    def pack(obj: Any) -> bytes:
        try:
            return strict(obj)  # type: ignore[no-any-return]
        except Exception:  # any failure: find out whether surrogates were the reason
            if _contains_surrogates(obj):
                raise _Unsendable from None
            return original_pack(obj)  # type: ignore[no-any-return]

    original_serialize = session.serialize

    def serialize(msg: dict[str, Any], ident: Any = None) -> Any:
        try:
            return original_serialize(msg, ident)
        except _Unsendable:
            clean = dict(msg)
            clean["content"] = _clean(msg.get("content"))
            clean["metadata"] = {**_clean(msg.get("metadata") or {}), REPLACED_KEY: True}
            return original_serialize(clean, ident)

    session.pack = pack
    session.serialize = serialize


def _redirect_echo(stream: Any) -> None:
    """Keep what subprocesses write to fd 1 and 2 out of the engine's own output.

    ipykernel relays those descriptors (a pipe) to the stream, and also copies every byte to the
    descriptor the kernel started with: the engine's stdout, i.e. the host program's terminal or
    a container's log, uncapped. That copy now goes to /dev/null. ``fileno()`` returned the same
    descriptor, so ``subprocess.run(cmd, stdout=sys.stdout)`` printed there instead of to the
    user: it now returns the relayed descriptor, whose output reaches the user through the cap.
    """
    copy = getattr(stream, "_original_stdstream_copy", None)
    relayed = getattr(stream, "_original_stdstream_fd", None)
    if not isinstance(copy, int) or not isinstance(relayed, int) or not getattr(stream, "_should_watch", False):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, copy)
    finally:
        os.close(devnull)
    stream.fileno = lambda: relayed


def _system(cmd: str) -> int:
    """``!cmd`` as IPython runs it (a shell on a pty, via pexpect), reading the output in chunks.

    IPython's own loop keeps all output in pexpect's buffer and rescans it on every read, so
    ``!yes | head -c 100000000`` takes an hour and several times its size in memory; here each
    chunk is written to ``sys.stdout`` (the cap) and dropped. Returns the exit status, or minus
    the signal that ended the command, like IPython's.
    """
    import codecs
    import sys

    import pexpect  # type: ignore[import-untyped]
    from IPython.utils.encoding import DEFAULT_ENCODING

    shell = pexpect.which(os.environ.get("SHELL", "sh")) or "/bin/sh"
    child = pexpect.spawn(shell, args=["-c", cmd])
    decoder = codecs.getincrementaldecoder(DEFAULT_ENCODING)("replace")

    def relay(deadline: float | None) -> None:
        # Until end of file, or until the deadline (after an interrupt) passes.
        import time

        while deadline is None or time.monotonic() < deadline:
            try:
                data = child.read_nonblocking(_PTY_READ, timeout=0.05)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                break
            sys.stdout.write(decoder.decode(data))
        sys.stdout.write(decoder.decode(b"", final=True))

    try:
        relay(None)
    except KeyboardInterrupt:
        import time

        child.sendline(chr(3))  # ^C to the command, then what it prints on its way out
        try:
            relay(time.monotonic() + _TERMINATE_GRACE)
        except KeyboardInterrupt:
            pass  # impatient users press it more than once
        finally:
            child.terminate(force=True)
    child.isalive()  # sets exitstatus
    if child.exitstatus is None:
        return -child.signalstatus if child.signalstatus is not None else 0
    return -(child.exitstatus - 128) if child.exitstatus > 128 else int(child.exitstatus)


def _route_children(caps: list[_StreamCap], session: Any) -> None:
    """Send what forked children print through the caps, as if this process had printed it.

    ipykernel has a forked child (``multiprocessing`` with fork) send its stream messages over a
    pipe to this process's IO thread, which relays them to the engine as they are, uncapped.
    """
    if not caps:
        return
    pub = caps[0]._stream.pub_thread
    pipe_in, original = getattr(pub, "_pipe_in", None), getattr(pub, "_handle_pipe_msg", None)
    if pipe_in is None or original is None:
        return
    by_name = {cap.name: cap for cap in caps}

    def handle(msg: list[Any]) -> None:
        parts = [bytes(part) for part in msg]
        cap, text = None, None
        if parts and parts[0] == getattr(pub, "_pipe_uuid", None) and b"<IDS|MSG>" in parts:
            i = parts.index(b"<IDS|MSG>")
            try:
                if session.unpack(parts[i + 2]).get("msg_type") == "stream":
                    content = session.unpack(parts[i + 5])
                    cap, text = by_name.get(content.get("name")), content.get("text")
            except (IndexError, ValueError, TypeError, AttributeError):
                cap = None
        if cap is not None and isinstance(text, str):
            cap.write(text)  # on the IO thread: OutStream.write is safe here, and flushes in order
        else:
            original(msg)

    pub.schedule(lambda: pipe_in.on_recv(handle))  # the stream belongs to the IO thread


def _enter_session(prepare: dict[str, Any], parent: dict[str, Any]) -> None:
    """Move a kernel taken from the warm pool into its session: working directory and environment.

    The engine sends this with the session's first execution rather than as an execution of its own (one round
    trip less per new session). Should it fail, the execution raises instead of running its code elsewhere.
    """
    import sys

    try:
        pool_dir = os.getcwd()
        os.chdir(prepare["cwd"])
        if sys.path and sys.path[0] == pool_dir:  # as `python -m ipykernel_launcher` started there would have it
            sys.path[0] = prepare["cwd"]
        env = prepare.get("env") or {}
        os.environ.update({str(k): str(v) for k, v in env.items()})
    except Exception as exc:
        message = (
            f"coderunner could not move this interpreter into its session ({exc}); "
            "close the session and open a new one."
        )
        parent.setdefault("content", {})["code"] = f"raise RuntimeError({message!r})"


def _swallow_interrupt(signum: int, frame: Any) -> None:
    """SIGINT while no user code runs: dropped (the engine sends it again while the code still runs)."""


class _InterruptGuard:
    """SIGINT raises KeyboardInterrupt only while the user's code runs, not in the kernel's own work around it.

    ipykernel raises it anywhere in the execute_request handler. One that lands after the code ended (the
    engine sends the interrupt again while no reply came, and a loaded machine is slow to reply) cuts the
    handler before it sends execute_reply: the engine waits out its grace and restarts the interpreter, and
    the session's state is lost. One that lands before the code starts makes ipykernel drop the request.
    So the handler runs with :func:`_swallow_interrupt`, and IPython's ``pre_execute``/``post_execute``
    events switch to ``default_int_handler`` around the code. Top-level ``await`` code runs under
    ipykernel's own SIGINT handler (which cancels it), installed and removed by ipykernel: left alone.
    """

    def __init__(self, shell: Any) -> None:
        import signal
        import threading

        self._signal = signal
        self._threading = threading
        shell.events.register("pre_execute", self._code_starts)
        shell.events.register("post_execute", self._code_ended)

    def _main(self) -> bool:
        # Handlers can only be set in the main thread; a subshell's requests run elsewhere and are left as they are.
        return self._threading.current_thread() is self._threading.main_thread()

    def enter(self) -> Any:
        """Swallow interrupts from here on; returns the handler to put back in :meth:`leave`."""
        if not self._main():
            return None
        return self._signal.signal(self._signal.SIGINT, _swallow_interrupt)

    def leave(self, outside: Any) -> None:
        """Put back the handler ipykernel had installed for the request."""
        if outside is not None and self._main():
            self._signal.signal(self._signal.SIGINT, outside)

    def _code_starts(self) -> None:
        if self._main() and self._signal.getsignal(self._signal.SIGINT) is _swallow_interrupt:
            self._signal.signal(self._signal.SIGINT, self._signal.default_int_handler)

    def _code_ended(self) -> None:
        if self._main() and self._signal.getsignal(self._signal.SIGINT) is self._signal.default_int_handler:
            self._signal.signal(self._signal.SIGINT, _swallow_interrupt)


def install(shell: Any, max_spill: int) -> None:
    """Install the caps and the packing fallback in the running kernel (``get_ipython()``)."""
    import sys

    from ipykernel.iostream import OutStream

    kernel = shell.kernel
    _install_packing(kernel.session)
    caps = []
    streams: list[Any] = [sys.stdout, sys.stderr]
    for stream in streams:
        if isinstance(stream, OutStream):
            caps.append(_StreamCap(stream, max_spill))
            _redirect_echo(stream)
    _route_children(caps, kernel.session)
    if os.name == "posix":
        from ipykernel import zmqshell

        if hasattr(zmqshell, "system"):
            zmqshell.system = _system  # what ZMQInteractiveShell.system_piped (``!cmd``) calls
    # IPython 9 also keeps every output of every cell (all printed text too) in
    # history_manager.outputs, for %notebook. Our kernels run without history, so that only
    # grows: do not copy stream text there, and forget the rest after each execution.
    if hasattr(shell, "_tee"):
        shell._tee = lambda channel: contextlib.nullcontext()
    history_outputs = getattr(getattr(shell, "history_manager", None), "outputs", None)
    handler = kernel.shell_handlers["execute_request"]
    guard = _InterruptGuard(shell)

    async def execute_request(stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        outside = guard.enter()
        try:
            await _execute_request(stream, ident, parent)
        finally:
            guard.leave(outside)

    async def _execute_request(stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        metadata = parent.get("metadata") or {}
        prepare = metadata.get(PREPARE_KEY)
        if isinstance(prepare, dict):
            _enter_session(prepare, parent)
        options = metadata.get(OPTIONS_KEY)
        for cap in caps:
            cap.begin(options if isinstance(options, dict) else None, parent["header"])
        try:
            result = handler(stream, ident, parent)
            if inspect.isawaitable(result):
                await result
        finally:
            for cap in caps:
                cap.end()
            if isinstance(history_outputs, dict):
                history_outputs.clear()

    kernel.shell_handlers["execute_request"] = execute_request
