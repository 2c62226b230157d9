"""The bash kernel: one persistent ``bash --noprofile --norc`` driven over a private control pipe.

How it works:

* bash runs a small loop (:data:`_LOOP`). It reads commands from a pipe that it
  moves to fd 250 at startup; the user's code gets ``/dev/null`` as stdin and
  runs with fd 250 closed, so it can neither read nor eat the control channel.
* Each execution writes the code to a file in the runtime directory and sends
  ``x`` on the control pipe; bash runs ``source FILE`` at top level (so
  ``declare``, ``cd`` and ``export`` persist exactly as if typed), then reads a
  fresh random end marker from the pipe and prints it, with ``$?``, on both
  stdout and stderr. The marker is only sent ahead on the pipe, never stored in
  a variable while user code runs, so ``set`` cannot print it.
* Python reads both pipes concurrently and forwards text to the sink until each
  marker has been seen; the marker may arrive mid-line, since user output need
  not end with a newline.
* Interrupts send SIGINT to the process group. A non-interactive bash dies on
  SIGINT unless it traps it, so the loop installs a trap that returns from the
  sourced snippet; when the interrupt lands inside a function, the trap also
  installs a DEBUG trap that returns from every enclosing frame of user code.

Known limits, all from bash's non-interactive rules: ``exit``, a failure under
``set -e`` and an unset variable under ``set -u`` end the shell; the kernel then
reports ``died=True`` with the shell's status and the session starts a new one.
A snippet that replaces the INT trap or ignores SIGINT cannot be interrupted. A
DEBUG trap of the user's own is cleared after an interrupt or while ``set -x`` is on.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from coderunner.engine.base import Kernel, KernelReply, OutputSink
from coderunner.errors import BackendError, BackendUnavailableError
from coderunner.models import ErrorInfo

__all__ = ["BashKernel"]

log = logging.getLogger(__name__)

_START_TIMEOUT = 10.0
# After SIGTERM, how long the shell gets before the whole group is SIGKILLed.
_TERM_GRACE = 0.2
_READ_SIZE = 1 << 16
# How long a shell whose pipes both reached EOF gets to exit before it is killed.
_EOF_GRACE = 1.0
# After the shell died, read at most this much of what is left in the pipes: a background job
# that inherited them may keep writing forever.
_DRAIN_LIMIT = 1 << 24
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Fixed high descriptors (rather than bash's {var} allocation, which starts at 10) so that
# scripts using small fd numbers such as 3-9 or 10 never collide with the control pipe.
# 250: control channel; 251/252: the shell's original stdout/stderr, where the end markers
# go even if the user redirected fd 1 or 2 with `exec`.
_CTL_FD = 250
_OUT_FD = 251
_ERR_FD = 252

# True in the user's code: the sourced snippet and any function it calls. In the loop itself
# (bash -c) BASH_SOURCE is empty; the loop's one helper function is excluded by name.
_IN_USER_CODE = r"(( ${#BASH_SOURCE[@]} )) && [[ ${FUNCNAME[0]-} != __cr_* ]]"

# Runs inside the INT trap. `return` inside a trap returns from the frame that was interrupted;
# the DEBUG trap (inherited by functions and sourced files only with -T) then returns from each
# enclosing frame before its next command, up to the snippet itself. errexit is suspended so that
# the 130 status does not kill the shell under `set -e`, and xtrace so that the unwinding is not
# traced; the loop restores both.
_ON_INT = rf"""if [[ -o xtrace ]]; then builtin set +x; __cr_xi=1; fi
if {_IN_USER_CODE}; then
__cr_int=1 __cr_dbg=1
if [[ -o errexit ]]; then builtin set +e; __cr_e=1; fi
if [[ ! -o functrace ]]; then builtin set -T; __cr_T=1; fi
builtin trap "$__cr_on_debug" DEBUG
return 130
fi"""
_ON_DEBUG = rf"if {_IN_USER_CODE}; then return 130; fi"
# `set -x` must survive from one execution to the next, but the loop's own commands should not
# be traced. Turning xtrace back on just before `source` would trace that line (and leak the
# snippet's path), so a DEBUG trap turns it on right before the snippet's first command.
_ON_XTRACE = rf"""if {_IN_USER_CODE}; then
builtin trap - DEBUG
if [[ -n $__cr_T ]]; then builtin set +T; __cr_T=; fi
builtin set -x
fi"""

# The shell loop. Written to survive whatever the user's code turns on: `set -e` (every test is
# in an if/&&/|| context), `set -u` (variables are always set), `set -x` (the loop's own commands
# run with xtrace off), custom IFS, and functions shadowing builtins (everything goes through
# `builtin`). `$?` carries over: the snippet starts with the previous snippet's status, as at a
# prompt (`__cr_status N && builtin :` sets it without tripping errexit). Even `:` and `set` go through
# `builtin`: the classic fork bomb defines a function named `:`, which a bare `while :` would run.
_LOOP = r"""exec {ctl}<&0 {out}>&1 {err}>&2 0</dev/null
__cr_f={path}
__cr_on_int={on_int}
__cr_on_debug={on_debug}
__cr_on_xtrace={on_xtrace}
__cr_status() {{ return "$1"; }}
__cr_xt= __cr_xi= __cr_int= __cr_dbg= __cr_e= __cr_T= __cr_rc=0 __cr_s=0 __cr_cmd= __cr_tok=
while builtin :; do
builtin trap "$__cr_on_int" INT
__cr_s=0; IFS= builtin read -r -u {ctl} __cr_cmd || __cr_s=$?
if (( __cr_s > 128 )); then continue; fi
if (( __cr_s != 0 )); then builtin exit 0; fi
__cr_int= __cr_dbg=
if [[ -n $__cr_xt ]]; then
__cr_dbg=1
if [[ ! -o functrace ]]; then builtin set -T; __cr_T=1; fi
builtin trap "$__cr_on_xtrace" DEBUG
fi
__cr_status "$__cr_rc" && builtin :
builtin source "$__cr_f" {ctl}<&-
{{ __cr_rc=$?; if [[ -o xtrace || -n $__cr_xi ]]; then builtin set +x; __cr_xt=1; else __cr_xt=; fi
__cr_xi=; }} 2>/dev/null
if [[ -n $__cr_dbg ]]; then builtin trap - DEBUG; fi
if [[ -n $__cr_T ]]; then builtin set +T; __cr_T=; fi
if [[ -n $__cr_e ]]; then builtin set -e; __cr_e=; fi
while builtin :; do
__cr_s=0; IFS= builtin read -r -u {ctl} __cr_tok || __cr_s=$?
if (( __cr_s <= 128 )); then break; fi
done
if (( __cr_s != 0 )); then builtin exit 0; fi
builtin printf '%s %d\n' "$__cr_tok" "$__cr_rc" >&{out}
builtin printf '%s\n' "$__cr_tok" >&{err}
__cr_tok=
done
"""


def _loop_script(snippet: Path) -> str:
    return _LOOP.format(
        ctl=_CTL_FD,
        out=_OUT_FD,
        err=_ERR_FD,
        path=shlex.quote(str(snippet)),
        on_int=shlex.quote(_ON_INT),
        on_debug=shlex.quote(_ON_DEBUG),
        on_xtrace=shlex.quote(_ON_XTRACE),
    )


def _partial_suffix(buf: bytearray, pattern: bytes) -> int:
    """Length of the longest end of ``buf`` that is the start of ``pattern`` (to hold back)."""
    if not pattern:
        return 0
    first = pattern[:1]
    i = buf.find(first, max(0, len(buf) - len(pattern) + 1))
    while i != -1:
        if pattern.startswith(buf[i:]):
            return len(buf) - i
        i = buf.find(first, i + 1)
    return 0


class _Stream:
    """One output pipe of the shell: bytes in, decoded text out to the sink, up to the end marker.

    Bytes that arrive after the marker (a background job writing) stay buffered and are
    passed to the next execution's sink.
    """

    def __init__(self, fd: int, rewrite: tuple[bytes, bytes] | None = None) -> None:
        self.fd = fd
        self.eof = False
        self.done = False
        self.status = b""
        self._buf = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._marker = b""
        self._emit: Callable[[str], None] | None = None
        self._rewrite = rewrite

    def begin(self, marker: bytes, emit: Callable[[str], None]) -> None:
        """Start looking for ``marker``; forward text before it to ``emit``."""
        self._marker = marker
        self._emit = emit
        self.done = False
        self.status = b""
        self._process()

    def feed(self, data: bytes) -> None:
        """Take bytes read from the pipe."""
        self._buf += data
        self._process()

    def finish(self) -> None:
        """Forward everything still held back (the shell is gone, no marker will come)."""
        self._send(len(self._buf))
        self._flush_decoder()
        self._emit = None

    def _process(self) -> None:
        if self.done or self._emit is None or not self._buf:
            return
        if self._rewrite is not None and self._rewrite[0] in self._buf:
            self._buf = self._buf.replace(*self._rewrite)
        i = self._buf.find(self._marker)
        if i < 0:
            keep = _partial_suffix(self._buf, self._marker)
            if self._rewrite is not None:
                keep = max(keep, _partial_suffix(self._buf, self._rewrite[0]))
            self._send(len(self._buf) - keep)
            return
        self._send(i)
        newline = self._buf.find(b"\n", len(self._marker))
        if newline < 0:
            return  # the rest of the marker line comes with the next read
        self.status = bytes(self._buf[len(self._marker) : newline])
        del self._buf[: newline + 1]
        # A multi-byte character cut by the marker can never be completed: flush it as U+FFFD.
        self._flush_decoder()
        self.done = True
        self._emit = None

    def _send(self, n: int) -> None:
        if n <= 0 or self._emit is None:
            return
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        text = self._decoder.decode(chunk)
        if text:
            self._emit(text)

    def _flush_decoder(self) -> None:
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        if text and self._emit is not None:
            self._emit(text)


def _sigint_ignored() -> bool:
    """True when this process ignores SIGINT (e.g. it was started in the background by a shell).

    An ignored signal is inherited across exec, and bash refuses to trap a signal that was
    ignored when it started, so interrupts would silently stop working.
    """
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def _restore_sigint() -> None:
    # Runs in the child between fork and exec; only needed (and only used) when SIGINT is ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class BashKernel(Kernel):
    """One persistent bash process per instance."""

    language: ClassVar[str] = "bash"

    def __init__(self, bash: str | None = None) -> None:
        self._bash = bash or shutil.which("bash") or "/bin/bash"
        self._proc: asyncio.subprocess.Process | None = None
        self._exit: asyncio.Future[int] | None = None
        self._ctl: int | None = None
        self._out: _Stream | None = None
        self._err: _Stream | None = None
        self._snippet: Path | None = None
        self._interrupted = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The bash process id (also its process group id)."""
        return self._proc.pid if self._proc is not None else None

    def is_alive(self) -> bool:
        """True while the bash process runs."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self, cwd: Path, env: Mapping[str, str], runtime_dir: Path) -> None:
        """Launch bash in ``cwd`` with exactly ``env`` and wait until its loop answers."""
        self._snippet = runtime_dir / f"bash-{secrets.token_hex(6)}.sh"
        ctl_r, ctl_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            # The control pipe goes in as stdin only for the first line of the loop, which moves
            # it to fd 250 and replaces stdin with /dev/null before any user code runs.
            self._proc = await asyncio.create_subprocess_exec(
                self._bash,
                "--noprofile",
                "--norc",
                "-c",
                _loop_script(self._snippet),
                "bash",
                stdin=ctl_r,
                stdout=out_w,
                stderr=err_w,
                cwd=str(cwd),
                env=dict(env),
                # Its own process group: interrupt and shutdown signal the group, reaching
                # every command the user started, and never the Python process.
                start_new_session=True,
                preexec_fn=_restore_sigint if _sigint_ignored() else None,
            )
        except FileNotFoundError as exc:
            for fd in (ctl_w, out_r, err_r):
                os.close(fd)
            # The same error covers a missing working directory; only a missing shell means
            # the engine itself is unavailable.
            if exc.filename == str(cwd):
                raise BackendError(f"The working directory for bash does not exist: {cwd}") from exc
            raise BackendUnavailableError(f"bash was not found ({self._bash}): {exc}") from exc
        except (OSError, RuntimeError) as exc:
            # RuntimeError: bash was forked but asyncio could not start the thread that waits for it
            # (at the process limit); the engine kills the shell by its tag.
            for fd in (ctl_w, out_r, err_r):
                os.close(fd)
            raise BackendError(f"bash did not start: {exc}") from exc
        finally:
            # The child holds its own copies; keeping ours open would hide EOF when it dies.
            for fd in (ctl_r, out_w, err_w):
                os.close(fd)
        self._ctl = ctl_w
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        self._out = _Stream(out_r)
        # Error messages name the sourced file ("/run/.../bash-1a2b.sh: line 3: ..."); show them
        # the way an interactive shell would ("bash: line 3: ...").
        self._err = _Stream(err_r, rewrite=(f"{self._snippet}: ".encode(), b"bash: "))
        self._exit = asyncio.ensure_future(self._proc.wait())
        try:
            reply = await asyncio.wait_for(self.execute(":", _NullSink()), _START_TIMEOUT)
        except asyncio.TimeoutError:
            await self.shutdown()
            raise BackendError(f"bash did not answer within {_START_TIMEOUT:g} s of starting") from None
        if reply.died or reply.exit_code != 0:
            await self.shutdown()
            raise BackendError(f"bash exited at startup (status {reply.returncode})")

    async def configure(self, cwd: Path, env: Mapping[str, str]) -> None:
        """Change the shell's directory and export ``env`` (for kernels taken from a warm pool)."""
        bad = [name for name in env if not _NAME.match(name)]
        if bad:
            raise BackendError(f"Not valid shell variable names, bash cannot export them: {', '.join(bad)}")
        code = f"builtin cd -- {shlex.quote(str(cwd))}"
        if env:
            # shlex.quote single-quotes: safe for quotes, spaces, newlines and `$`.
            code += " && builtin export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        sink = _NullSink()
        reply = await self.execute(code, sink)
        if reply.died or reply.exit_code != 0:
            raise BackendError(f"Could not prepare the bash kernel: {''.join(sink.errors).strip() or 'it died'}")

    async def execute(self, code: str, sink: OutputSink) -> KernelReply:
        """Run ``code`` in the shell, streaming stdout and stderr into ``sink``."""
        proc, exit_task, out, err = self._proc, self._exit, self._out, self._err
        if proc is None or exit_task is None or out is None or err is None or self._closed:
            raise BackendError("The bash kernel is not started.")
        self._interrupted = False
        if not self.is_alive():
            return await self._died()
        assert self._snippet is not None and self._ctl is not None
        if code and not code.endswith("\n"):
            # A heredoc delimiter on the last line is only recognised with its newline.
            code += "\n"
        try:
            data = code.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
            data = code.encode("utf-8", errors="replace")
        try:
            self._snippet.write_bytes(data)
        except OSError as exc:
            raise BackendError(f"Could not write the code for bash to {self._snippet}: {exc}") from exc
        token = b"\x1ecr" + secrets.token_hex(12).encode()

        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def check() -> None:
            if not finished.done() and all(s.done or s.eof for s in (out, err)):
                finished.set_result(None)

        def on_readable(stream: _Stream) -> None:
            try:
                data = os.read(stream.fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                stream.feed(data)
            else:
                stream.eof = True
                loop.remove_reader(stream.fd)
            check()

        out.begin(token, sink.stdout)
        err.begin(token, sink.stderr)
        try:
            # Command and marker in one write (well under PIPE_BUF, so atomic): bash reads the
            # marker line only after the snippet has returned.
            os.write(self._ctl, b"x\n" + token + b"\n")
        except OSError:  # EPIPE: the shell is gone
            return await self._died()
        for stream in (out, err):
            if not stream.eof:
                loop.add_reader(stream.fd, on_readable, stream)
        check()
        try:
            waiters: set[asyncio.Future[Any]] = {finished, exit_task}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for stream in (out, err):
                if not stream.eof:
                    loop.remove_reader(stream.fd)
            if not finished.done():
                finished.cancel()
        if not (out.done and err.done):
            return await self._died()
        if self._interrupted:
            return KernelReply(
                exit_code=130,
                interrupted=True,
                error=ErrorInfo(name="KeyboardInterrupt", value="interrupted"),
            )
        try:
            status = int(out.status)
        except ValueError:
            status = 1
        return KernelReply(exit_code=status)

    async def _died(self) -> KernelReply:
        """The shell exited mid-execution: collect what it wrote, then report its status."""
        assert self._exit is not None and self._out is not None and self._err is not None
        try:
            # Both pipes hit EOF or the exit was seen: either way the shell is gone or going.
            returncode = await asyncio.wait_for(asyncio.shield(self._exit), _EOF_GRACE)
        except asyncio.TimeoutError:
            # EOF on both pipes but still running: the user closed every descriptor the shell
            # reports on, so it can never answer again. Kill it rather than wait forever.
            assert self._proc is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            returncode = await self._exit
        budget = _DRAIN_LIMIT
        for stream in (self._out, self._err):
            while not stream.eof and budget > 0:
                try:
                    data = os.read(stream.fd, _READ_SIZE)
                except BlockingIOError:
                    break  # a background job still holds the pipe open; take what is there
                except OSError:
                    data = b""
                if not data:
                    stream.eof = True
                    break
                budget -= len(data)
                stream.feed(data)
            stream.finish()
        # A shell killed by signal N reports 128+N as its status, like bash does for its children.
        exit_code = returncode if returncode >= 0 else 128 - returncode
        return KernelReply(
            exit_code=exit_code,
            died=True,
            returncode=returncode,
            interrupted=self._interrupted,
        )

    async def interrupt(self) -> None:
        """Send SIGINT to the shell's process group: the foreground command and the snippet stop."""
        self._interrupted = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGINT)

    async def shutdown(self) -> None:
        """Kill the shell's process group (background jobs included) and close the pipes."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._kill()
        except Exception as exc:  # shutdown must never raise; it runs on every error path
            log.warning("error while stopping bash: %s", exc)
        finally:
            loop = asyncio.get_running_loop()
            for stream in (self._out, self._err):
                if stream is not None:
                    # An execute() still pending must not leave a reader on a closed descriptor.
                    loop.remove_reader(stream.fd)
                    with contextlib.suppress(OSError):
                        os.close(stream.fd)
            if self._ctl is not None:
                with contextlib.suppress(OSError):
                    os.close(self._ctl)
            self._ctl = None
            if self._snippet is not None:
                with contextlib.suppress(OSError):
                    self._snippet.unlink()

    async def _kill(self) -> None:
        proc, exit_task = self._proc, self._exit
        if proc is None or exit_task is None:
            return
        # Signal the group even when bash already died: its background jobs live on in it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(exit_task), _TERM_GRACE)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(exit_task), 2.0)


class _NullSink:
    """Discards output, keeping stderr for error messages."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def stdout(self, text: str) -> None:
        pass

    def stderr(self, text: str) -> None:
        self.errors.append(text)

    def display(self, kind: Any, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        pass
