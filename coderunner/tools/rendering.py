"""Shaping runner output into model-facing text: :func:`format_execution_result` and the caps it applies.

Nothing here does I/O. Text is capped by keeping its head and tail (:func:`head_tail`), with a
budget per part (stdout matters most); what a cap cuts is named in a note, together with the
session file holding the full text when the runner, or the tool shell, saved one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coderunner import _core
from coderunner.models import ExecutionResult
from coderunner.tools.results import MAX_TOOL_TEXT_CHARS, ToolImage, ToolResult

__all__ = [
    "MAX_IMAGES",
    "RenderContext",
    "clean_b64",
    "format_execution_result",
    "head_tail",
    "streams_to_save",
]

MAX_IMAGES = 10
"""Images attached to one tool result; more are mentioned in the text only."""
_TRACEBACK_LINES = 25
_SPILL_DIR = ".coderunner/output"
_IMAGE_MIMES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class RenderContext:
    """What a renderer knows besides the arguments and the runner's return value."""

    max_chars: int = MAX_TOOL_TEXT_CHARS
    saved_files: Mapping[str, str] = field(default_factory=dict)
    """Stream name ('stdout'/'stderr') -> session path where the shell saved text the cap cuts."""
    save_failed: bool = False


def head_tail(text: str, limit: int) -> tuple[str, int]:
    """Cut ``text`` to ``limit`` characters keeping head and tail; returns (text, characters omitted)."""
    if len(text) <= limit:
        return text, 0
    limit = max(limit, 40)
    head = limit // 2
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[-tail:]}", omitted


def _budgets(max_chars: int) -> dict[str, int]:
    # stdout usually matters most; stderr and tracebacks are useful but repetitive.
    return {
        "stdout": max(200, int(max_chars * 0.55)),
        "stderr": max(200, int(max_chars * 0.2)),
        "traceback": max(200, int(max_chars * 0.1)),
        "rich": max(200, int(max_chars * 0.1)),
    }


def streams_to_save(result: ExecutionResult, max_chars: int) -> dict[str, str]:
    """Streams the tool cap will cut and the runner did not already save in full: stream -> new path."""
    budgets = _budgets(max_chars)
    token = uuid.uuid4().hex[:12]
    return {
        stream: f"{_SPILL_DIR}/tool-{token}.{stream}"
        for stream in ("stdout", "stderr")
        if len(getattr(result, stream)) > budgets[stream] and not getattr(result, f"{stream}_file")
    }


def clean_b64(data: Any) -> str | None:
    """``data`` as base64 text without whitespace, or None when it is not a non-empty string."""
    if not isinstance(data, str):
        return None
    cleaned = "".join(data.split())
    return cleaned or None


def format_execution_result(
    result: ExecutionResult,
    *,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
    saved_files: Mapping[str, str] | None = None,
    save_failed: bool = False,
) -> ToolResult:
    """Turn an :class:`ExecutionResult` into compact model-facing text plus separate images.

    The text holds stdout, stderr, the value of the last expression, an error summary
    (``Name: value`` and the last lines of the traceback), notes about truncation naming the
    file with the full output, references to images and files, and warnings. It is capped at
    ``max_chars`` (head and tail kept). PNG/JPEG images go to ``images``, never into the text.

    Args:
        result: The execution result.
        max_chars: Cap on the text.
        saved_files: Stream ('stdout'/'stderr') -> session path where the caller saved the full
            text of a stream this cap cuts (the runner's own ``stdout_file`` wins when set).
        save_failed: The caller tried to save a cut stream and could not.
    """
    budgets = _budgets(max_chars)
    saved = dict(saved_files or {})
    parts: list[str] = []
    notes: list[str] = []

    if result.status == "timeout":
        parts.append(f"Status: timeout (exit code {result.exit_code}). The execution was interrupted.")
    elif result.status == "cancelled":
        parts.append(f"Status: cancelled (exit code {result.exit_code}).")
    elif result.status == "error":
        parts.append(f"Status: error (exit code {result.exit_code}).")

    for stream in ("stdout", "stderr"):
        text: str = getattr(result, stream)
        if not text:
            continue
        shown, omitted = head_tail(text, budgets[stream])
        parts.append(f"{stream}:\n{shown.rstrip(chr(10))}")
        runner_file: str | None = getattr(result, f"{stream}_file")
        full_path = runner_file or saved.get(stream)
        if runner_file or omitted:
            where = (
                f"the full text is in the file '{full_path}' (read parts of it with code, e.g. open(path).read()[a:b])"
                if full_path
                else "the omitted part was not saved; print less, or write the output to a file and inspect it"
            )
            notes.append(f"Note: {stream} was truncated; {where}.")

    images: list[ToolImage] = []
    extra_images = 0
    rich_budget = budgets["rich"]
    for out in result.outputs:
        attached = False
        for mime in _IMAGE_MIMES:
            data = clean_b64(out.data.get(mime))
            if data is None:
                continue
            if len(images) < MAX_IMAGES:
                images.append(ToolImage(data=data, mime_type=mime))
                kib = len(data) * 3 / 4 / 1024
                parts.append(f"[image {len(images)}: {mime}, {kib:.1f} KiB, attached]")
            else:
                extra_images += 1
            attached = True
            break
        if attached:
            continue
        if out.svg is not None:
            parts.append(f"[SVG image, {len(out.svg)} characters; not attached. Save it as PNG to view it.]")
            continue
        label = "Result" if out.type == "execute_result" else "Output"
        body: str | None = out.text or out.markdown
        if body is None and "application/json" in out.data:
            body = json.dumps(out.json, ensure_ascii=False, default=str)
        if body is None and out.html is not None:
            body = f"[HTML output, {len(out.html)} characters, not shown]"
        if body is None:
            body = f"[output of type {', '.join(out.mime_types) or 'unknown'}, not shown]"
        shown, _ = head_tail(body, rich_budget)
        parts.append(f"{label}: {shown}" if "\n" not in shown else f"{label}:\n{shown}")
    if extra_images:
        notes.append(f"Note: {extra_images} more image(s) were produced but not attached.")

    if result.error is not None:
        summary = str(result.error)
        parts.append(f"Error: {summary}")
        tb = _core.strip_ansi(result.error.traceback or "").strip("\n")
        # IPython frames its tracebacks with a row of dashes: noise for a model.
        lines = [ln for ln in tb.splitlines() if ln.strip("- ")]
        if lines:
            tail = "\n".join(lines[-_TRACEBACK_LINES:])
            shown, _ = head_tail(tail, budgets["traceback"])
            head = "Traceback (last lines):" if len(lines) > _TRACEBACK_LINES else "Traceback:"
            parts.append(f"{head}\n{shown}")

    if result.files_created:
        parts.append(_file_line("Files created", result.files_created))
    if result.files_modified:
        parts.append(_file_line("Files modified", result.files_modified))
    if result.state_lost:
        notes.append("Warning: the interpreter was restarted, so variables and imports from earlier calls are gone.")
    notes.extend(f"Warning: {w}" for w in result.warnings)
    if save_failed:
        notes.append("Note: the full output could not be saved to a file.")

    if not parts and result.status == "ok":
        parts.append("Done (no output).")
    text, _ = head_tail("\n".join(parts + notes), max_chars)
    return ToolResult(text=text, is_error=result.status != "ok", images=images, execution=result)


def _file_line(label: str, paths: Sequence[str], limit: int = 50) -> str:
    shown = ", ".join(paths[:limit])
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{label}: {shown}{more}"
