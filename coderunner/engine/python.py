"""The Python kernel: an IPython kernel (ipykernel) driven over jupyter_client with the ipc transport."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import secrets
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from jupyter_client.manager import AsyncKernelManager

from coderunner._core import strip_ansi
from coderunner.engine import python_hooks
from coderunner.engine.base import Kernel, KernelReply, NullSink, OutputSink, ipc_base
from coderunner.engine.output import MAX_SPILL_BYTES, CappedSink, escape_surrogates
from coderunner.errors import BackendError
from coderunner.models import ErrorInfo

__all__ = ["PythonKernel"]

# How often the message loop checks that the kernel process is still alive. A message
# arriving ends the wait at once, so this only bounds how late a death is noticed.
_LIVENESS_POLL = 0.1
_START_TIMEOUT = 60.0

# Arguments for ipykernel: no history database (it lives in ~/.ipython and is shared
# by every kernel, which makes parallel kernels contend on one SQLite file).
_KERNEL_ARGS = ["--HistoryManager.enabled=False", "--HistoryManager.hist_file=:memory:"]


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


class PythonKernel(Kernel):
    """One ipykernel process per instance."""

    language: ClassVar[str] = "python"

    def __init__(self, python: str | None = None) -> None:
        self._python = python or sys.executable
        self._km: AsyncKernelManager | None = None
        self._kc: Any = None
        self._pid: int | None = None
        self._interrupted = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The kernel process id."""
        return self._pid

    def _process(self) -> Any:
        km = self._km
        provisioner = getattr(km, "provisioner", None) if km is not None else None
        return getattr(provisioner, "process", None)

    def is_alive(self) -> bool:
        """True while the kernel process runs."""
        proc = self._process()
        return proc is not None and proc.poll() is None

    def _returncode(self) -> int | None:
        proc = self._process()
        return None if proc is None else proc.poll()

    async def start(self, cwd: Path, env: Mapping[str, str], runtime_dir: Path) -> None:
        """Launch ipykernel in ``cwd`` with ``env`` and wait until it answers."""
        tag = secrets.token_hex(4)
        km = AsyncKernelManager(
            transport="ipc",
            # ipc endpoints are file paths; an absolute one keeps them out of the cwd.
            ip=str(ipc_base(runtime_dir, f"py-{tag}")),
            connection_file=str(runtime_dir / f"py-{tag}.json"),
        )
        kernel_env = dict(env)
        # Plots from matplotlib come back as image/png display data.
        kernel_env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        kernel_env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        self._km = km
        try:
            await km.start_kernel(
                cwd=str(cwd),
                env=kernel_env,
                extra_arguments=_KERNEL_ARGS,
            )
            proc = self._process()
            self._pid = proc.pid if proc is not None else None
            kc = km.client()
            kc.start_channels()
            self._kc = kc
            await kc.wait_for_ready(timeout=_START_TIMEOUT)
        except asyncio.CancelledError:
            await self.shutdown()
            raise
        except Exception as exc:  # any failure to start is an engine failure, not user error
            await self.shutdown()
            raise BackendError(f"The Python kernel did not start: {exc}") from exc
        reply = await self.execute(_SETUP_CODE, NullSink(), silent=True)
        if reply.error is not None:
            await self.shutdown()
            raise BackendError(f"The Python kernel could not be prepared: {reply.error}")

    async def configure(self, cwd: Path, env: Mapping[str, str]) -> None:
        """Change the kernel's directory and environment (for kernels taken from the warm pool)."""
        code = (
            "import os as __cr_os, sys as __cr_sys\n"
            f"__cr_os.chdir({str(cwd)!r})\n"
            f"__cr_os.environ.update({json.dumps(dict(env))})\n"
            "del __cr_os, __cr_sys\n"
        )
        reply = await self.execute(code, NullSink(), silent=True)
        if reply.died or reply.error is not None:
            raise BackendError(f"Could not prepare the Python kernel: {reply.error or 'it died'}")

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
        metadata = {python_hooks.OPTIONS_KEY: capped.kernel_options()} if capped is not None else None
        request = kc.session.msg("execute_request", content, metadata=metadata)
        kc.shell_channel.send(request)
        msg_id = request["header"]["msg_id"]
        reply = KernelReply()
        # Read iopub until the kernel goes idle for this request; that is when all output is in.
        while True:
            try:
                msg = await kc.get_iopub_msg(timeout=_LIVENESS_POLL)
            except queue.Empty:
                if not self.is_alive():
                    return self._died()
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
            return self._died()
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

    def _died(self) -> KernelReply:
        rc = self._returncode()
        return KernelReply(
            exit_code=1,
            died=True,
            returncode=rc,
            error=None,
        )

    async def interrupt(self) -> None:
        """Send SIGINT to the kernel (KeyboardInterrupt in the user's code)."""
        self._interrupted = True
        if self._km is not None and self.is_alive():
            with contextlib.suppress(Exception):
                await self._km.interrupt_kernel()

    async def shutdown(self) -> None:
        """Kill the kernel's process group and remove its sockets and connection file."""
        if self._closed:
            return
        self._closed = True
        pid = self._pid
        if pid is not None:
            # The kernel leads its own process group, so this also reaches `!cmd &` children.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            # jupyter_client's wait below polls every 100 ms; a SIGKILLed kernel is gone within a few ms, so
            # reaping it here first saves most of that on every close (measured: close 122 ms median before).
            proc = self._process()
            for _ in range(200):
                if proc is None or proc.poll() is not None:
                    break
                await asyncio.sleep(0.005)
        if self._kc is not None:
            with contextlib.suppress(Exception):
                self._kc.stop_channels()
        km = self._km
        if km is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(km.shutdown_kernel(now=True), timeout=5)
            with contextlib.suppress(Exception):
                cleanup = km.cleanup_resources()
                if asyncio.iscoroutine(cleanup):  # a coroutine on the async manager
                    await cleanup
        proc = self._process()
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(timeout=2)


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
