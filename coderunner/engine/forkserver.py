"""The engine's side of the Python kernel fork server (:mod:`coderunner.engine.forkserver_program`).

One :class:`ForkServer` per engine and interpreter: started on the first Python kernel, it forks every later one
in a few milliseconds instead of the half second a fresh interpreter needs to import and initialise ipykernel.
Each forked kernel is a separate process (its own namespace, directory, environment, pid and CPU/memory
figures), a child of the server, and leads its own process group like a spawned kernel. If the server dies it
is started again on the next fork; kernels it forked keep running (they are watched by pid file descriptor,
not as the server's children).

When forking is not possible (no ``os.fork``, as on Windows, or macOS where forking a process that has loaded
system frameworks is unsafe) or is switched off (``CODERUNNER_KERNEL_START=spawn``), kernels are spawned;
:func:`fork_supported` says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from coderunner.engine.processes import pid_signature, same_process
from coderunner.errors import BackendError

__all__ = ["ForkServer", "ForkedProcess", "fork_supported"]

log = logging.getLogger(__name__)

_PROGRAM = Path(__file__).with_name("forkserver_program.py")
_START_TIMEOUT = 60.0
_FORK_TIMEOUT = 60.0
# Exit statuses kept for kernels that ended (read once by their kernel); bounded in case nobody reads them.
_MAX_STATUSES = 4096


def fork_supported() -> bool:
    """True where kernels can be forked from a fork server: Linux (and other non-macOS POSIX systems)."""
    return hasattr(os, "fork") and sys.platform != "darwin" and sys.platform != "win32"


class ForkedProcess:
    """A kernel forked by the server: ``Popen``-like enough for the kernel (``pid``, ``poll``).

    Watched through a pid file descriptor where the system has them (it cannot be fooled by a reused pid), else
    by pid and start time; the exit status comes from the server, which is the process's parent.
    """

    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid = pid
        self._server = server
        self._pidfd: int | None = None
        self._signature: float | None = None
        self.returncode: int | None = None
        self.set_up = False
        """True when the child installed coderunner's kernel hooks itself (``fork(setup=...)``)."""
        try:
            self._pidfd = os.pidfd_open(pid)  # type: ignore[attr-defined,unused-ignore]
        except (AttributeError, OSError):  # no pidfd (old kernel, gVisor, not Linux): pid + start time
            self._signature = pid_signature(pid)

    def _ended(self) -> bool:
        if self._server.status_of(self.pid) is not None:
            return True
        if self._pidfd is not None:
            readable, _, _ = select.select([self._pidfd], [], [], 0)
            return bool(readable)
        try:
            proc = psutil.Process(self.pid)
            return bool(not same_process(self.pid, self._signature) or proc.status() == psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return True

    def poll(self) -> int | None:
        """None while the process runs; else its exit status (negative: killed by that signal; -9 if unknown)."""
        if self.returncode is not None:
            return self.returncode
        if not self._ended():
            return None
        status = self._server.take_status(self.pid)
        # Ended, but the server has not said how yet (or is gone): SIGKILL is the usual cause and the safe guess.
        self.returncode = status if status is not None else -signal.SIGKILL
        return self.returncode

    async def wait_status(self, timeout: float = 0.5) -> int | None:
        """The exit status once the process ended, waiting up to ``timeout`` for the server to report it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.returncode is None and self._server.status_of(self.pid) is None:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.005)
        return self.poll()

    def close(self) -> None:
        """Release the pid file descriptor."""
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None


class ForkServer:
    """One running :mod:`~coderunner.engine.forkserver_program`, forking kernels on request.

    Args:
        python: The interpreter that runs the server and so every kernel it forks.
        env: The server's own environment. Its ``CODERUNNER_KERNEL_TAG`` (the engine's tag for the server)
            should have the length of a kernel's tag: children overwrite it in place (see the program).
        on_start: Called with the server's pid each time one starts (the engine records it for clean-up).
        kernel_args: The arguments (besides ``-f``) that most kernels will get: the server prepares an app
            configured with them once, and children given exactly these only do the per-kernel part.
    """

    def __init__(
        self,
        python: str,
        env: Mapping[str, str],
        on_start: Any = None,
        kernel_args: Sequence[str] = (),
    ) -> None:
        self._python = python
        self._env = dict(env)
        self._on_start = on_start
        self._kernel_args = list(kernel_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._bound: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._statuses: dict[int, int] = {}
        self._next_id = 0
        self._start_lock = asyncio.Lock()
        self._closed = False
        self.version = ""
        """The ipykernel version the running server imported."""
        self.prepared = False
        """True when the server prepared the kernel app for ``kernel_args`` (children then skip that part)."""
        self.hooks_loaded = False
        """True when the server loaded coderunner's kernel hooks (children then only install them)."""
        self.shell_built = False
        """True when the server built the kernels' interactive shell (each child adopts it)."""

    @property
    def python(self) -> str:
        """The interpreter of the server and of every kernel it forks."""
        return self._python

    @property
    def env(self) -> Mapping[str, str]:
        """The server's environment (kernels whose start-up variables differ are spawned instead)."""
        return self._env

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def status_of(self, pid: int) -> int | None:
        """The exit status the server reported for ``pid``, if it did."""
        return self._statuses.get(pid)

    def take_status(self, pid: int) -> int | None:
        """Like :meth:`status_of`, and forget it."""
        return self._statuses.pop(pid, None)

    async def _ensure_started(self) -> None:
        async with self._start_lock:
            if self._closed:
                raise BackendError("The Python fork server is closed.")
            if self._proc is not None and self._proc.poll() is None:
                return
            if self._proc is not None:
                log.warning("the Python fork server exited (status %s); starting a new one", self._proc.returncode)
                await self._stop_reader()
            await self._start()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._proc = subprocess.Popen(
            [self._python, "-u", str(_PROGRAM), *self._kernel_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._env,
            cwd="/",
            # Its own session: a terminal's Ctrl-C does not reach it, and its group is killed as one.
            start_new_session=True,
            close_fds=True,
        )
        if self._on_start is not None:
            self._on_start(self._proc.pid)
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._reader = asyncio.ensure_future(self._read(self._proc))
        try:
            hello = await asyncio.wait_for(asyncio.shield(self._ready), _START_TIMEOUT)
        except asyncio.TimeoutError:
            self._kill()
            raise BackendError(f"The Python fork server did not start within {_START_TIMEOUT:.0f} s.") from None
        if hello.get("event") != "ready":
            self._kill()
            raise BackendError(f"The Python fork server could not start: {hello.get('message', hello)}")
        self.version = str(hello.get("ipykernel", ""))
        self.prepared = bool(hello.get("prepared"))
        self.hooks_loaded = bool(hello.get("hooks"))
        self.shell_built = bool(hello.get("shell"))

    async def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        loop = asyncio.get_running_loop()
        buffer = b""
        readable = asyncio.Event()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    break
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    with contextlib.suppress(ValueError):
                        self._dispatch(json.loads(line))
        finally:
            loop.remove_reader(fd)
            self._server_gone(proc)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind in ("ready", "error") and self._ready is not None and not self._ready.done():
            self._ready.set_result(event)
        elif kind == "exit":
            if len(self._statuses) >= _MAX_STATUSES:
                self._statuses.pop(next(iter(self._statuses)))
            self._statuses[int(event["pid"])] = int(event["status"])
        elif kind in ("forked", "failed", "bound"):
            rid = event.get("id")
            table = self._bound if kind == "bound" else self._waiting
            future = table.pop(rid, None) if isinstance(rid, int) else None
            if kind == "failed" and future is None and isinstance(rid, int):
                future = self._bound.pop(rid, None)  # the child failed after the fork succeeded
            if future is not None and not future.done():
                future.set_result(event)

    def _server_gone(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(Exception):
            proc.wait(timeout=1)
        failure = {"event": "failed", "message": f"the fork server exited (status {proc.returncode})"}
        if self._ready is not None and not self._ready.done():
            self._ready.set_result({"event": "error", "message": failure["message"]})
        for table in (self._waiting, self._bound):
            for future in table.values():
                if not future.done():
                    future.set_result(failure)
            table.clear()

    async def fork(
        self,
        *,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        tag: str | None,
        setup: Mapping[str, Any] | None = None,
    ) -> ForkedProcess:
        """Fork a kernel running ``ipykernel`` with ``argv``; returns once its sockets are bound.

        ``setup`` (``{"max_spill": N}``) has the child install coderunner's kernel hooks before it starts; the
        returned process's ``set_up`` says whether it did.

        Raises:
            BackendError: The server could not be started, or the fork or the child's start failed.
        """
        await self._ensure_started()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        loop = asyncio.get_running_loop()
        self._next_id += 1
        rid = self._next_id
        forked: asyncio.Future[dict[str, Any]] = loop.create_future()
        bound: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[rid] = forked
        self._bound[rid] = bound
        request = {
            "op": "fork",
            "id": rid,
            "argv": list(argv),
            "cwd": str(cwd),
            "env": dict(env),
            "tag": tag,
            "setup": dict(setup) if setup is not None else None,
        }
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
        except OSError as exc:
            self._waiting.pop(rid, None)
            self._bound.pop(rid, None)
            raise BackendError(f"The Python fork server is not reachable: {exc}") from exc
        child: ForkedProcess | None = None
        try:
            answer = await asyncio.wait_for(forked, _FORK_TIMEOUT)
            if answer.get("event") != "forked":
                self._bound.pop(rid, None)
                raise BackendError(f"The Python kernel could not be forked: {answer.get('message', answer)}")
            child = ForkedProcess(int(answer["pid"]), self)
            started = await asyncio.wait_for(bound, _FORK_TIMEOUT)
            if started.get("event") != "bound":
                raise BackendError(f"The forked Python kernel did not start: {started.get('message', started)}")
            child.set_up = started.get("setup") is True
            return child
        except BaseException:
            self._waiting.pop(rid, None)
            self._bound.pop(rid, None)
            if child is not None:
                with contextlib.suppress(OSError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.close()
            raise

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            self._reader = None

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=2)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    async def close(self) -> None:
        """Stop the server (the kernels it forked are the engine's to kill). Idempotent."""
        # Killed first: the reader's last step waits for the server to exit, which must not take a second.
        self.kill_now()
        await self._stop_reader()

    def kill_now(self) -> None:
        """Synchronously kill the server (for exit handlers)."""
        self._closed = True
        self._kill()
        self._proc = None
