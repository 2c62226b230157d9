"""The interface every language kernel of the engine implements (python, bash, javascript).

A kernel is one long-lived interpreter process that keeps state between
executions. It only knows how to run code and report what happened; the
policy around it (timeouts, restarts after death, output caps, CPU figures,
file tracking) lives once in :mod:`coderunner.engine.session`.

All methods run on the engine's event loop thread.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from coderunner.models import ErrorInfo

__all__ = ["Kernel", "KernelReply", "NullSink", "OutputSink"]


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
