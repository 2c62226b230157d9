"""The interface every language kernel of the engine implements (python, bash, javascript).

A kernel is one long-lived interpreter process that keeps state between
executions. It only knows how to run code and report what happened; the
policy around it (timeouts, restarts after death, output caps, CPU figures,
file tracking) lives once in :mod:`coderunner.engine.session`.

All methods run on the engine's event loop thread.
"""

from __future__ import annotations

import abc
import contextlib
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from coderunner.errors import ConfigurationError
from coderunner.models import ErrorInfo

__all__ = ["Kernel", "KernelReply", "NullSink", "OutputSink", "ipc_base", "ipc_dir", "ipc_leftovers"]


class OutputSink(Protocol):
    """Receives output as it is produced, in order. Implementations cap and spill it."""

    def stdout(self, text: str) -> None:
        """Append text written to standard output."""

    def stderr(self, text: str) -> None:
        """Append text written to standard error."""

    def display(
        self, kind: Literal["display_data", "execute_result"], data: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        """Record a rich output (MIME bundle)."""


class NullSink:
    """An output sink that drops everything (for the engine's own code run in a kernel)."""

    def stdout(self, text: str) -> None:
        """Drop stdout."""

    def stderr(self, text: str) -> None:
        """Drop stderr."""

    def display(self, kind: Any, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        """Drop a rich output."""


@dataclass
class KernelReply:
    """How one execution ended, as seen by the kernel.

    Attributes:
        exit_code: 0 on success, 1 for an uncaught error, a shell's own status for bash,
            130 after an interrupt.
        error: The user's error, if any (name, message, plain-text traceback).
        execution_count: The interpreter's counter, when it has one.
        died: True when the interpreter process exited during the execution.
        returncode: The process's exit status when it died (negative: killed by that signal).
        interrupted: True when the execution ended because of :meth:`Kernel.interrupt`.
    """

    exit_code: int = 0
    error: ErrorInfo | None = None
    execution_count: int | None = None
    died: bool = False
    returncode: int | None = None
    interrupted: bool = False


class Kernel(abc.ABC):
    """One persistent interpreter for one language.

    Contract:
      * :meth:`start` returns once the interpreter is ready to execute.
      * :meth:`execute` runs one piece of code to completion and returns a
        :class:`KernelReply`; it never raises for errors in the user's code.
        If the process dies mid-way it returns ``KernelReply(died=True, ...)``
        promptly (it must notice death by itself, not hang); called on a kernel
        whose process has already exited, it returns that at once, with the
        exit status (the session learns so how a kernel died between calls).
      * :meth:`interrupt` asks the running execution to stop, keeping state
        (like Ctrl-C); the pending :meth:`execute` then returns soon with
        ``interrupted=True``, and the kernel accepts the next execution.
      * If it does not return within a grace period, the caller cancels the
        :meth:`execute` task (it must tolerate ``asyncio.CancelledError``) and
        calls :meth:`shutdown`, then starts a fresh kernel.
      * :meth:`shutdown` kills the process and everything it started; it is
        idempotent and never raises.
    """

    language: ClassVar[str]

    tag: str | None = None
    """Set by the engine before :meth:`start`: the value of ``CODERUNNER_KERNEL_TAG`` in the environment it
    starts the kernel with, inherited by every process the kernel starts (see :mod:`coderunner.engine.processes`)."""
    started: float | None = None
    """Set by the engine after :meth:`start`: the interpreter's :func:`~coderunner.engine.processes.start_mark`
    (everything that carries its tag started then or later)."""

    @abc.abstractmethod
    async def start(self, cwd: Path, env: Mapping[str, str], runtime_dir: Path) -> None:
        """Start the interpreter in ``cwd`` with exactly ``env``; ``runtime_dir`` holds sockets/control files."""

    @abc.abstractmethod
    async def configure(self, cwd: Path, env: Mapping[str, str]) -> None:
        """Point an already-started (pooled) interpreter at a session: change to ``cwd``, set ``env`` entries."""

    @abc.abstractmethod
    async def execute(self, code: str, sink: OutputSink) -> KernelReply:
        """Run ``code``, streaming output to ``sink``, and report how it ended."""

    @abc.abstractmethod
    async def interrupt(self) -> None:
        """Interrupt the running execution, keeping the interpreter's state."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Stop the interpreter and all its child processes. Idempotent; never raises."""

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """The interpreter's process id (used for CPU and memory figures), once started."""

    @abc.abstractmethod
    def is_alive(self) -> bool:
        """True while the interpreter process is running."""


# A unix socket's path must fit in sockaddr_un.sun_path (108 bytes with its NUL on Linux, 104 on macOS), and
# jupyter_client appends "-<port>" to the ipc base: keep the base well below.
_MAX_IPC_BASE = 90


def _short_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"coderunner-ipc-{os.getuid()}"


def ipc_leftovers(engine_name: str) -> list[Path]:
    """The sockets an engine of this name left in :func:`ipc_dir` (a crashed engine's, for the orphan reaper)."""
    short = _short_dir()
    return list(short.glob(f"{engine_name}-*")) if short.is_dir() else []


def ipc_dir() -> Path:
    """A short private directory for ipc sockets whose runtime directory's path is too long for them.

    ``<tmp>/coderunner-ipc-<uid>``, mode 0700; refused if it is not ours or not a plain directory (a planted
    link or another user's directory would let them see or take over the sockets).

    Raises:
        ConfigurationError: The directory exists but is not a private directory of this user.
    """
    path = _short_dir()
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigurationError(
            f"{path} is not a private directory of this user (for kernel sockets): remove it, or set "
            "CODERUNNER_RUNTIME_DIR to a shorter path (under about 60 characters)."
        )
    return path


def ipc_base(runtime_dir: Path, name: str) -> Path:
    """Where a kernel's ipc sockets go: in its engine's runtime directory, or in :func:`ipc_dir` when too long.

    In the short directory the name starts with the engine directory's name, so the orphan reaper can find
    what a crashed engine left there.
    """
    base = runtime_dir / name
    if len(os.fsencode(base)) <= _MAX_IPC_BASE:
        return base
    return ipc_dir() / f"{runtime_dir.name}-{name}"
