"""The Python kernel: an IPython kernel (ipykernel) driven over jupyter_client with the ipc transport."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import write_connection_file

from coderunner._core import strip_ansi
from coderunner.engine import python_hooks
from coderunner.engine.base import Kernel, KernelReply, NullSink, OutputSink, ipc_base
from coderunner.engine.forkserver import ForkedProcess, ForkServer
from coderunner.engine.output import MAX_SPILL_BYTES, CappedSink, escape_surrogates
from coderunner.errors import BackendError
from coderunner.models import ErrorInfo

__all__ = ["PythonKernel"]

# How often the message loop checks that the kernel process is still alive. A message
# arriving ends the wait at once, so this only bounds how late a death is noticed.
_LIVENESS_POLL = 0.1
_START_TIMEOUT = 60.0
# How long the readiness check waits for the first IOPub message after a kernel_info reply before it asks again:
# until the kernel has seen our subscription, what it publishes is lost (ZMQ's "slow joiner").
_IOPUB_SETTLE = 0.05
# Variables read by the interpreter at start-up: a kernel whose environment sets them differently from the fork
# server's would not be the interpreter it asked for, so it is spawned instead.
_STARTUP_VARS = ("PYTHON", "IPYTHONDIR", "JUPYTER_", "HOME")
# Set by jupyter_client for kernels it launches; a kernel that finds it polls that parent and exits when it goes.
_PARENT_VARS = ("JPY_PARENT_PID", "JPY_INTERRUPT_EVENT")

_zmq_context: zmq.asyncio.Context | None = None


def _context() -> zmq.asyncio.Context:
    """One ZMQ context for every kernel client of the process.

    Its sockets retry a connection every 10 ms, not ZMQ's default 100: a spawned kernel binds its sockets a
    moment after the client connects, and the default interval would add up to 100 ms to every start.

    Its threads are started here, with a socket made and closed at once (libzmq starts them with the first
    socket): libzmq aborts the whole process when it cannot start a thread, and it would otherwise try the
    first time a kernel starts, which may be while a fork bomb holds every slot of the process limit.
    """
    global _zmq_context
    if _zmq_context is None:
        ctx = zmq.asyncio.Context()
        ctx.setsockopt(zmq.RECONNECT_IVL, 10)
        zmq.Socket(ctx, zmq.PAIR).close(linger=0)
        _zmq_context = ctx
    return _zmq_context


def start_zmq_threads() -> None:
    """Start the threads of the process's ZMQ context now, while threads can still start (see ``_context``)."""
    _context()


# Arguments for ipykernel: no history database (it lives in ~/.ipython and is shared
# by every kernel, which makes parallel kernels contend on one SQLite file); and no 0.5 ms sleep
# in every execute_request (ipykernel's way to let output go out before the reply: this engine
# reads IOPub up to the request's idle status first, which comes after everything it printed).
_KERNEL_ARGS = [
    "--HistoryManager.enabled=False",
    "--HistoryManager.hist_file=:memory:",
    "--Kernel._execute_sleep=0",
]
# Forked kernels also get parent_handle 1: no parent polling (the fork server is their parent, and its end must
# not end them; it kills its kernels itself when the engine goes), and no console banner.
_FORKED_ARGS = [*_KERNEL_ARGS, "--IPKernelApp.parent_handle=1"]


# IPython warns "To exit: use 'exit'..." on sys.exit(); for a script runner that is noise.
# Then the output caps and the packing fallback go into the kernel (python_hooks), as source:
# the kernel's interpreter may not have coderunner installed.
_HOOKS_SOURCE = Path(python_hooks.__file__).read_text(encoding="utf-8")
_SETUP_CODE = f"""
import warnings as __cr_w
__cr_w.filterwarnings("ignore", message="To exit: use", category=UserWarning)
import sys as __cr_sys, types as __cr_types
__cr_m = __cr_sys.modules["_coderunner_hooks"] = __cr_types.ModuleType("_coderunner_hooks")
exec(compile({_HOOKS_SOURCE!r}, {python_hooks.__file__!r}, "exec"), __cr_m.__dict__)
__cr_m.install(get_ipython(), {MAX_SPILL_BYTES})
del __cr_w, __cr_sys, __cr_types, __cr_m
"""
# For a kernel forked from a server that loaded the hooks already (forkserver_program._load_hooks).
_FORKED_SETUP_CODE = f"""
import warnings as __cr_w
__cr_w.filterwarnings("ignore", message="To exit: use", category=UserWarning)
import sys as __cr_sys
__cr_sys.modules["_coderunner_hooks"].install(get_ipython(), {MAX_SPILL_BYTES})
del __cr_w, __cr_sys
"""


def make_fork_server(env: Mapping[str, str], on_start: Callable[[int], None] | None = None) -> ForkServer:
    """A fork server for this module's kernels (this interpreter, the kernels' usual arguments prepared)."""
    # The server imports debugpy, which otherwise warns about frozen modules on stderr (as kernels' env says too).
    server_env = {**env, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    return ForkServer(sys.executable, server_env, on_start=on_start, kernel_args=_FORKED_ARGS)


class PythonKernel(Kernel):
    """One ipykernel process per instance: forked from ``forkserver`` when it is given and can, else spawned."""

    language: ClassVar[str] = "python"

    def __init__(self, python: str | None = None, *, forkserver: ForkServer | None = None) -> None:
        self._python = python or sys.executable
        self._forkserver = forkserver
        self._proc: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._kc: Any = None
        self._files: list[Path] = []
        self._interrupted = False
        self._closed = False
        self._prepare: dict[str, Any] | None = None  # a pooled kernel's session, sent with the next execution
        self.forked = False
        """True when the kernel was forked from the fork server (False: spawned)."""

    @property
    def pid(self) -> int | None:
        """The kernel process id."""
        return self._proc.pid if self._proc is not None else None

    def is_alive(self) -> bool:
        """True while the kernel process runs."""
        return self._proc is not None and self._proc.poll() is None

    def _returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def _can_fork(self, env: Mapping[str, str]) -> bool:
        server = self._forkserver
        if server is None or server.python != self._python:
            return False
        # Fork only a kernel the server's interpreter would have been: same start-up variables (PYTHONPATH...).
        ours = {k: v for k, v in env.items() if k.startswith(_STARTUP_VARS)}
        theirs = {k: v for k, v in server.env.items() if k.startswith(_STARTUP_VARS)}
        return ours == theirs

    async def start(self, cwd: Path, env: Mapping[str, str], runtime_dir: Path) -> None:
        """Start ipykernel in ``cwd`` with ``env`` (forked or spawned) and wait until it answers."""
        tag = secrets.token_hex(4)
        connection_file = runtime_dir / f"py-{tag}.json"
        # ipc endpoints are file paths; an absolute one keeps them out of the cwd.
        ip = str(ipc_base(runtime_dir, f"py-{tag}"))
        kernel_env = {k: v for k, v in env.items() if k not in _PARENT_VARS}
        # Plots from matplotlib come back as image/png display data.
        kernel_env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        kernel_env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        try:
            _, info = write_connection_file(
                str(connection_file), ip=ip, transport="ipc", key=secrets.token_hex(32).encode()
            )
            self._files = [connection_file] + [
                Path(f"{ip}-{info[name]}")  # type: ignore[literal-required,unused-ignore]
                for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
            ]
            argv = ["-f", str(connection_file), *_KERNEL_ARGS]
            if self._can_fork(kernel_env):
                assert self._forkserver is not None
                self._proc = await self._forkserver.fork(
                    argv=["-f", str(connection_file), *_FORKED_ARGS],
                    cwd=cwd,
                    env=kernel_env,
                    tag=self.tag,
                    setup={"max_spill": MAX_SPILL_BYTES},
                )
                self.forked = True
            else:
                # Like jupyter_client: its own session (group), and a parent it watches so it ends with us.
                self._proc = subprocess.Popen(
                    [self._python, "-m", "ipykernel_launcher", *argv],
                    cwd=str(cwd),
                    env={**kernel_env, "JPY_PARENT_PID": str(os.getpid())},
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            kc = AsyncKernelClient(context=_context())
            kc.load_connection_info(info)
            # Shell and IOPub only: input is never allowed, interrupts are signals, and liveness is the process
            # itself (the heartbeat channel is a thread per kernel, started and joined for nothing).
            kc.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
            self._kc = kc
            await self._wait_ready(_START_TIMEOUT)
        except asyncio.CancelledError:
            await self.shutdown()
            raise
        except Exception as exc:  # any failure to start is an engine failure, not user error
            await self.shutdown()
            raise BackendError(f"The Python kernel did not start: {exc}") from exc
        if isinstance(self._proc, ForkedProcess) and self._proc.set_up:
            return  # the child installed the hooks before it started
        hooks_loaded = self.forked and self._forkserver is not None and self._forkserver.hooks_loaded
        reply = await self.execute(_FORKED_SETUP_CODE if hooks_loaded else _SETUP_CODE, NullSink(), silent=True)
        if reply.error is not None or reply.died:
            await self.shutdown()
            raise BackendError(f"The Python kernel could not be prepared: {reply.error or 'it exited'}")

    async def _wait_ready(self, timeout: float) -> None:
        """Return once the kernel answers on its shell channel and we hear what it publishes on IOPub.

        jupyter_client's ``wait_for_ready`` does this too, then waits 0.2 s for IOPub to fall quiet; stale
        messages do no harm here (every read matches its request's id), so that wait is left out.
        """
        kc = self._kc
        deadline = time.monotonic() + timeout
        while True:
            msg_id = kc.kernel_info()
            answered = False
            while time.monotonic() < deadline:
                try:
                    msg = await kc.get_shell_msg(timeout=_LIVENESS_POLL)
                except queue.Empty:
                    if not self.is_alive():
                        raise BackendError(f"it exited (status {self._returncode()})") from None
                    continue
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    answered = True
                    break
            if not answered:
                raise BackendError(f"it did not answer within {timeout:.0f} s")
            try:
                await kc.get_iopub_msg(timeout=_IOPUB_SETTLE)
                return
            except queue.Empty:
                continue  # not subscribed yet: the next kernel_info's status messages will tell

    async def configure(self, cwd: Path, env: Mapping[str, str]) -> None:
        """Change the kernel's directory and environment (for kernels taken from the warm pool).

        The change travels with the next execution (the hooks make it before the code runs), which saves a new
        session one round trip to its kernel; only execute requests reach the kernel's code, so none can see
        the pool's directory meanwhile.
        """
        self._prepare = {"cwd": str(cwd), "env": dict(env)}

    async def execute(self, code: str, sink: OutputSink, silent: bool = False) -> KernelReply:
        """Run ``code`` and stream its messages into ``sink``."""
        kc = self._kc
        if kc is None:
            raise BackendError("The Python kernel is not started.")
        self._interrupted = False
        capped = sink if isinstance(sink, CappedSink) else None
        # The caps travel in the request's metadata: no extra round trip (see python_hooks).
        content = {
            "code": code,
            "silent": silent,
            "store_history": not silent,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        metadata: dict[str, Any] = {}
        if capped is not None:
            metadata[python_hooks.OPTIONS_KEY] = capped.kernel_options()
        if self._prepare is not None:
            metadata[python_hooks.PREPARE_KEY], self._prepare = self._prepare, None
        request = kc.session.msg("execute_request", content, metadata=metadata or None)
        kc.shell_channel.send(request)
        msg_id = request["header"]["msg_id"]
        reply = KernelReply()
        # Read iopub until the kernel goes idle for this request; that is when all output is in.
        while True:
            try:
                msg = await kc.get_iopub_msg(timeout=_LIVENESS_POLL)
            except queue.Empty:
                if not self.is_alive():
                    return await self._died()
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            mtype = msg["header"]["msg_type"]
            content = msg["content"]
            if capped is not None and msg.get("metadata", {}).get(python_hooks.REPLACED_KEY):
                capped.note_replaced(_replaced_where(mtype, content))
            if mtype == "stream":
                (sink.stdout if content.get("name") == "stdout" else sink.stderr)(content.get("text", ""))
            elif mtype in ("display_data", "execute_result", "update_display_data"):
                kind: Literal["display_data", "execute_result"] = (
                    "execute_result" if mtype == "execute_result" else "display_data"
                )
                sink.display(kind, dict(content.get("data", {})), dict(content.get("metadata", {})))
                if mtype == "execute_result":
                    reply.execution_count = content.get("execution_count")
            elif mtype == "error":
                reply.error = _error_info(content)
            elif mtype == python_hooks.MSG_TYPE:
                if capped is not None:
                    _kernel_output(capped, content)
            elif mtype == "status" and content.get("execution_state") == "idle":
                break
        shell = await self._shell_reply(msg_id)
        if shell is None:
            return await self._died()
        if capped is not None and shell.get("metadata", {}).get(python_hooks.REPLACED_KEY):
            capped.note_replaced("the error message")
        content = shell["content"]
        reply.execution_count = content.get("execution_count", reply.execution_count)
        if content.get("status") == "error":
            reply.error = reply.error or _error_info(content)
            reply.exit_code = _exit_code_for(reply.error)
            if reply.error.name == "SystemExit":
                # sys.exit(n) is not a crash: report its status quietly, as a script run would.
                reply.error = None if reply.exit_code == 0 else ErrorInfo(name="SystemExit", value=reply.error.value)
        elif content.get("status") == "aborted":
            reply.error = ErrorInfo(name="Aborted", value="the kernel aborted this execution")
            reply.exit_code = 1
        if self._interrupted:
            reply.interrupted = True
            reply.exit_code = 130
        return reply

    async def _shell_reply(self, msg_id: str) -> dict[str, Any] | None:
        while True:
            try:
                msg: dict[str, Any] = await self._kc.get_shell_msg(timeout=_LIVENESS_POLL)
            except queue.Empty:
                if not self.is_alive():
                    return None
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg

    async def _died(self) -> KernelReply:
        proc = self._proc
        rc = await proc.wait_status() if isinstance(proc, ForkedProcess) else self._returncode()
        return KernelReply(exit_code=1, died=True, returncode=rc, error=None)

    async def interrupt(self) -> None:
        """Send SIGINT to the kernel's process group (KeyboardInterrupt in the user's code), as jupyter_client does."""
        self._interrupted = True
        pid = self.pid
        if pid is not None and self.is_alive():
            try:
                os.killpg(pid, signal.SIGINT)
            except OSError:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGINT)

    async def shutdown(self) -> None:
        """Kill the kernel's process group and remove its sockets and connection file."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc is not None:
            # The kernel leads its own process group, so this also reaches `!cmd &` children.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)
            # A SIGKILLed kernel is gone within a few ms; waiting here (not blocking the loop) reaps a spawned one.
            for _ in range(400):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.005)
            if isinstance(proc, ForkedProcess):
                proc.close()
        if self._kc is not None:
            with contextlib.suppress(Exception):
                self._kc.stop_channels()
        for path in self._files:
            with contextlib.suppress(OSError):
                path.unlink()


def _replaced_where(mtype: str, content: Mapping[str, Any]) -> str:
    """Where a message's escaped text shows up in the result, for the warning."""
    if mtype == "stream":
        return "stderr" if content.get("name") == "stderr" else "stdout"
    if mtype in ("display_data", "execute_result", "update_display_data"):
        return "a rich output"
    return "the error message"


def _kernel_output(sink: CappedSink, content: Mapping[str, Any]) -> None:
    """Take in a report of the kernel's own output cap (python_hooks)."""
    name = content.get("name")
    if name not in ("stdout", "stderr"):
        return
    buf = sink.stream(str(name))
    event = content.get("event")
    if event == "spill":
        buf.kernel_spill(bool(content.get("saved")))
    elif event == "end":
        if content.get("replaced"):
            sink.note_replaced(str(name))
        total, tail = content.get("total"), content.get("tail")
        if isinstance(total, int) and isinstance(tail, str):
            buf.kernel_end(total, tail)


def _error_info(content: Mapping[str, Any]) -> ErrorInfo:
    tb = content.get("traceback") or []
    # The kernel escapes lone surrogates before sending; this keeps the result encodable regardless.
    name, _ = escape_surrogates(str(content.get("ename", "Error")))
    value, _ = escape_surrogates(strip_ansi(str(content.get("evalue", ""))))
    traceback, _ = escape_surrogates(strip_ansi("\n".join(str(line) for line in tb)))
    return ErrorInfo(name=name, value=value, traceback=traceback)


def _exit_code_for(error: ErrorInfo | None) -> int:
    if error is None:
        return 0
    if error.name == "SystemExit":
        # sys.exit(3) inside a kernel is caught by IPython; report the status the script asked for.
        value = error.value.strip()
        if value in ("", "None"):
            return 0
        try:
            return int(value)
        except ValueError:
            return 1
    return 1
