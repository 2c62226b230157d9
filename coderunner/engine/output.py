r"""Output collection with caps: keeps head and tail in memory, spills the full text to a file.

For most kernels the cap is applied here, in the engine, as text arrives. The Python kernel
applies it at the source instead (see :mod:`coderunner.engine.python_hooks`): it passes on only
the first ``limit`` characters, writes the full text to :attr:`StreamBuffer.spill_path` itself
and reports the total and the tail, which :meth:`StreamBuffer.kernel_spill` and
:meth:`StreamBuffer.kernel_end` take in. The result looks the same either way.

Text is also made safe to serialise here: lone surrogates (``"\ud800"``), which no UTF-8
encoder accepts, become ``\uXXXX`` escapes, and :attr:`CappedSink.warnings` says so.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from coderunner.models import ErrorInfo, Output

__all__ = ["CappedSink", "StreamBuffer", "escape_surrogates"]

log = logging.getLogger(__name__)

# The spill file is for humans and for re-reading; past this it stops growing so a
# runaway print loop cannot fill the disk.
MAX_SPILL_BYTES = 256 * 1024 * 1024
MAX_OUTPUTS = 200

_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogates(text: str) -> bool:
    # isascii() is O(1) in CPython, so ordinary output pays nothing for the check.
    return not text.isascii() and _SURROGATE.search(text) is not None


def escape_surrogates(value: Any) -> tuple[Any, bool]:
    r"""``value`` (a string, or JSON-like data) with lone surrogates as ``\uXXXX`` escapes, and whether any were.

    A lone surrogate cannot be encoded as UTF-8, so text holding one breaks every JSON or
    HTTP encoder downstream. Other text is returned as is (the same object).
    """
    if isinstance(value, str):
        if _has_surrogates(value):
            return value.encode("utf-8", "backslashreplace").decode("utf-8"), True
        return value, False
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key, k_changed = escape_surrogates(key)
            out[key], v_changed = escape_surrogates(item)
            changed = changed or k_changed or v_changed
        return (out, True) if changed else (value, False)
    if isinstance(value, list):
        items = [escape_surrogates(item) for item in value]
        if any(c for _, c in items):
            return [item for item, _ in items], True
        return value, False
    return value, False


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
        # Set when the kernel applies the cap itself (Python): it writes the spill file, never we.
        self._kernel_caps = False
        self._by_kernel = False
        self._kernel_saved = False
        self._kernel_done = False

    @property
    def limit(self) -> int:
        """The cap, in characters."""
        return self._limit

    @property
    def tail_limit(self) -> int:
        """How many characters of the end are kept when the stream is cut."""
        return self._tail_limit

    @property
    def spill_path(self) -> Path:
        """Where the full text goes when the stream is cut."""
        return self._spill_path

    @property
    def total_chars(self) -> int:
        """Characters written so far (as the kernel counted them, when it applies the cap)."""
        return self._total

    @property
    def truncated(self) -> bool:
        """True once the stream has exceeded its cap."""
        return self._total > self._limit or self._by_kernel

    def kernel_applies_cap(self) -> None:
        """The kernel caps this stream itself and owns :attr:`spill_path`; it passes on at most :attr:`limit`.

        Should more arrive all the same, it is cut here in memory only: two writers would garble the file.
        """
        self._kernel_caps = True

    def kernel_spill(self, saved: bool) -> None:
        """The kernel passed the cap and writes the full text to :attr:`spill_path` itself.

        Args:
            saved: False when the kernel could not open the file (the cut still applies).
        """
        self._by_kernel = True
        self._kernel_saved = saved

    def kernel_end(self, total: int, tail: str) -> None:
        """The kernel finished a cut stream: ``total`` characters in all, ending with ``tail``."""
        self._by_kernel = True
        self._kernel_done = True
        self._total = max(total, self._total)
        self._tail = deque([tail])
        self._tail_len = len(tail)

    def write(self, text: str) -> None:
        """Append text."""
        if not text:
            return
        before = self._total
        self._total += len(text)
        if self._total > self._limit and self._spill is None and not self._spill_full and not self._kernel_caps:
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
        if not self.truncated:
            return None
        saved = self._kernel_saved if self._by_kernel else bool(self._spill_bytes)
        return self._display_path if saved else None

    def _where(self) -> str:
        return f"; full output in {self._display_path}" if self.spill_file() else ""

    def _tail_text(self) -> str:
        tail = "".join(self._tail)
        return tail[-self._tail_limit :] if len(tail) > self._tail_limit else tail

    def text(self) -> str:
        """The capped text: everything, or head + a marker saying what was cut + tail."""
        if not self.truncated:
            return "".join(self._head) + "".join(self._tail)
        head = "".join(self._head)
        if self._by_kernel and not self._kernel_done:
            # The kernel stopped (killed, or died) before it could report how much followed.
            rest = "".join(self._tail)
            return f"{head}{rest}\n[... output truncated here{self._where()} ...]\n"
        tail = self._tail_text()
        dropped = self._total - len(head) - len(tail)
        return f"{head}\n[... {dropped} characters truncated{self._where()} ...]\n{tail}"

    def live_ending(self, forwarded: int) -> str:
        """What a live viewer that was sent the first ``forwarded`` characters still needs to see.

        Live callbacks get text only up to the cap (so a flood is not relayed in full either); at
        the end they get the tail, with a marker when something between was left out.
        """
        if not self.truncated:
            return ""
        if self._by_kernel and not self._kernel_done:
            return f"\n[... output truncated here{self._where()} ...]\n"
        missing = self._total - forwarded
        tail = self._tail_text()
        if missing <= len(tail):
            return tail[len(tail) - missing :] if missing > 0 else ""
        return f"\n[... {missing - len(tail)} characters truncated{self._where()} ...]\n{tail}"


class CappedSink:
    """The :class:`~coderunner.engine.base.OutputSink` the engine hands to kernels.

    Live callbacks receive stdout and stderr as they arrive, up to the cap; the rest of a cut
    stream (its tail, after a marker) is sent to them when the sink is closed.
    """

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
        self._forwarded = {"stdout": 0, "stderr": 0}
        self._replaced: dict[str, None] = {}  # where lone surrogates were escaped, in order of discovery
        self._closed = False

    def stream(self, name: str) -> StreamBuffer:
        """The buffer of ``"stdout"`` or ``"stderr"``."""
        return self.out if name == "stdout" else self.err

    def kernel_options(self) -> dict[str, Any]:
        """The caps for a kernel that applies them itself (see :mod:`~coderunner.engine.python_hooks`).

        From then on the kernel owns the spill files of this execution.
        """
        self.out.kernel_applies_cap()
        self.err.kernel_applies_cap()
        return {
            "limit": self.out.limit,
            "tail": self.out.tail_limit,
            "stdout": os.path.abspath(self.out.spill_path),
            "stderr": os.path.abspath(self.err.spill_path),
        }

    def stdout(self, text: str) -> None:
        """Append to stdout and forward to the live callback."""
        self._write("stdout", text, self._on_stdout)

    def stderr(self, text: str) -> None:
        """Append to stderr and forward to the live callback."""
        self._write("stderr", text, self._on_stderr)

    def _write(self, name: str, text: str, callback: Callable[[str], None] | None) -> None:
        text, changed = escape_surrogates(text)
        if changed:
            self.note_replaced(name)
        buf = self.stream(name)
        buf.write(text)
        if callback is not None:
            sent = self._forwarded[name]
            room = buf.limit - sent
            if room > 0:
                part = text[:room]
                self._forwarded[name] = sent + len(part)
                self._forward(callback, part)

    def display(
        self, kind: Literal["display_data", "execute_result"], data: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        """Record a rich output, up to :data:`MAX_OUTPUTS` per execution."""
        if len(self.outputs) >= MAX_OUTPUTS:
            self.dropped_outputs += 1
            return
        data, changed = escape_surrogates(data)
        metadata, meta_changed = escape_surrogates(metadata)
        if changed or meta_changed:
            self.note_replaced("a rich output")
        self.outputs.append(Output(type=kind, data=data, metadata=metadata))

    def clean_error(self, error: ErrorInfo | None) -> ErrorInfo | None:
        r"""``error`` with lone surrogates escaped (noted for :attr:`warnings`), so the result can be serialised.

        Kernels report errors beside the sink (node's ``throw new Error("\ud800")`` arrives as is).
        """
        if error is None:
            return None
        (name, value, traceback), changed = escape_surrogates([error.name, error.value, error.traceback])
        if not changed:
            return error
        self.note_replaced("the error message")
        return ErrorInfo(name=name, value=value, traceback=traceback)

    def note_replaced(self, where: str) -> None:
        """Record that lone surrogates were escaped in ``where`` ("stdout", "stderr", "a rich output", ...)."""
        self._replaced[where] = None

    @property
    def warnings(self) -> list[str]:
        """What the caller should know about the output: where text had to be changed to be sendable."""
        return [
            f"{where} contained lone surrogate code points, which are not valid Unicode text; "
            "each is shown as its \\uXXXX escape"
            for where in self._replaced
        ]

    @staticmethod
    def _forward(callback: Callable[[str], None] | None, text: str) -> None:
        if callback is None or not text:
            return
        try:
            callback(text)
        except Exception:  # a broken user callback must not break the execution it watches
            log.exception("output callback failed")

    def close(self) -> None:
        """Close spill files and send live callbacks the end of any stream that was cut."""
        self.out.close()
        self.err.close()
        if self._closed:
            return
        self._closed = True
        self._forward(self._on_stdout, self.out.live_ending(self._forwarded["stdout"]))
        self._forward(self._on_stderr, self.err.live_ending(self._forwarded["stderr"]))
