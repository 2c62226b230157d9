"""Output collection with caps: keeps head and tail in memory, spills the full text to a file."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from coderunner.models import Output

__all__ = ["CappedSink", "StreamBuffer"]

log = logging.getLogger(__name__)

# The spill file is for humans and for re-reading; past this it stops growing so a
# runaway print loop cannot fill the disk.
MAX_SPILL_BYTES = 256 * 1024 * 1024
MAX_OUTPUTS = 200


class StreamBuffer:
    """One output stream capped at ``limit`` characters: the head and tail are kept.

    When the stream grows past the cap, everything (from the start) is written to
    ``spill_path`` so that nothing is lost, and :meth:`text` returns
    ``head + marker + tail``.
    """

    def __init__(self, limit: int, spill_path: Path, display_path: str) -> None:
        self._limit = max(limit, 2)
        self._head_limit = self._limit // 2
        self._tail_limit = self._limit - self._head_limit
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self._total = 0
        self._spill_path = spill_path
        self._display_path = display_path
        self._spill: IO[str] | None = None
        self._spill_bytes = 0
        self._spill_full = False

    @property
    def total_chars(self) -> int:
        """Characters written so far."""
        return self._total

    @property
    def truncated(self) -> bool:
        """True once the stream has exceeded its cap."""
        return self._total > self._limit

    def write(self, text: str) -> None:
        """Append text."""
        if not text:
            return
        before = self._total
        self._total += len(text)
        if self._total > self._limit and self._spill is None and not self._spill_full:
            self._open_spill()
        if self._spill is not None:
            self._write_spill(text)
        if before < self._head_limit:
            room = self._head_limit - before
            self._head.append(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
            if not text:
                return
        self._tail.append(text)
        self._tail_len += len(text)
        # Trim whole chunks from the left while the tail is over its share.
        while self._tail and self._tail_len - len(self._tail[0]) >= self._tail_limit:
            self._tail_len -= len(self._tail.popleft())

    def _open_spill(self) -> None:
        try:
            self._spill_path.parent.mkdir(parents=True, exist_ok=True)
            self._spill = open(self._spill_path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:  # the cap still applies; only the full copy is missing
            log.warning("cannot write full output to %s: %s", self._spill_path, exc)
            self._spill_full = True
            return
        # Everything so far is still in memory (we spill as soon as the cap is crossed).
        for chunk in (*self._head, *self._tail):
            self._write_spill(chunk)

    def _write_spill(self, text: str) -> None:
        assert self._spill is not None
        if self._spill_bytes >= MAX_SPILL_BYTES:
            if not self._spill_full:
                self._spill.write(f"\n[coderunner: output file stopped at {MAX_SPILL_BYTES} bytes]\n")
                self._spill_full = True
            return
        self._spill.write(text)
        self._spill_bytes += len(text)

    def close(self) -> None:
        """Close the spill file, if any."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def spill_file(self) -> str | None:
        """The session-relative path of the full output, when the stream was truncated and saved."""
        return self._display_path if self.truncated and self._spill_bytes else None

    def text(self) -> str:
        """The capped text: everything, or head + a marker saying what was cut + tail."""
        if not self.truncated:
            return "".join(self._head) + "".join(self._tail)
        head = "".join(self._head)
        tail = "".join(self._tail)
        if len(tail) > self._tail_limit:
            tail = tail[-self._tail_limit :]
        dropped = self._total - len(head) - len(tail)
        where = f"; full output in {self._display_path}" if self.spill_file() else ""
        return f"{head}\n[... {dropped} characters truncated{where} ...]\n{tail}"


class CappedSink:
    """The :class:`~coderunner.engine.base.OutputSink` the engine hands to kernels."""

    def __init__(
        self,
        *,
        limit: int,
        spill_dir: Path,
        spill_display_dir: str,
        exec_id: str,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> None:
        self.out = StreamBuffer(limit, spill_dir / f"{exec_id}.stdout", f"{spill_display_dir}/{exec_id}.stdout")
        self.err = StreamBuffer(limit, spill_dir / f"{exec_id}.stderr", f"{spill_display_dir}/{exec_id}.stderr")
        self.outputs: list[Output] = []
        self.dropped_outputs = 0
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr

    def stdout(self, text: str) -> None:
        """Append to stdout and forward to the live callback."""
        self.out.write(text)
        self._forward(self._on_stdout, text)

    def stderr(self, text: str) -> None:
        """Append to stderr and forward to the live callback."""
        self.err.write(text)
        self._forward(self._on_stderr, text)

    def display(
        self, kind: Literal["display_data", "execute_result"], data: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        """Record a rich output, up to :data:`MAX_OUTPUTS` per execution."""
        if len(self.outputs) >= MAX_OUTPUTS:
            self.dropped_outputs += 1
            return
        self.outputs.append(Output(type=kind, data=data, metadata=metadata))

    @staticmethod
    def _forward(callback: Callable[[str], None] | None, text: str) -> None:
        if callback is None:
            return
        try:
            callback(text)
        except Exception:  # a broken user callback must not break the execution it watches
            log.exception("output callback failed")

    def close(self) -> None:
        """Close spill files."""
        self.out.close()
        self.err.close()
