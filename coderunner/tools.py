r"""The one list of agent tools (:class:`ToolSpec`) that every surface maps: OpenAI, LangChain, LlamaIndex, MCP, REST.

Each spec carries a name, a description written for a model, a pydantic model of its
arguments (whose JSON schema is the canonical one every adapter exports), and how to run
it on a :class:`~coderunner.client.CodeRunner` (``call``) or an
:class:`~coderunner.client.AsyncCodeRunner` (``acall``). Running a tool never raises:
errors in the user's code, coderunner errors and bad arguments all come back as a
:class:`ToolResult` with ``is_error=True`` and text a model can act on::

    from coderunner import CodeRunner
    from coderunner.tools import dispatch

    with CodeRunner() as runner:
        result = dispatch(runner, "execute_python_code", '{"code": "print(6 * 7)"}')
        result.text        # '42\n' plus notes, capped for a model's context
        result.images      # base64 PNG/JPEG images, for vision-capable adapters

How a tool runs is split into a pure plan (which runner method, which arguments) and a
pure renderer (result -> text); the sync and async shells only differ in ``await``.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import dataclasses
import inspect
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator

from coderunner import _core
from coderunner.errors import CodeRunnerError
from coderunner.models import ExecutionResult, FileInfo

if TYPE_CHECKING:
    from coderunner.client import AsyncCodeRunner, CodeRunner

__all__ = [
    "MAX_TOOL_TEXT_CHARS",
    "RenderContext",
    "ToolArgs",
    "ToolImage",
    "ToolResult",
    "ToolSpec",
    "adispatch",
    "default_runner",
    "dispatch",
    "error_result",
    "format_execution_result",
    "get_tool_spec",
    "get_tool_specs",
    "is_async_runner",
    "parse_arguments",
]

log = logging.getLogger(__name__)

MAX_TOOL_TEXT_CHARS = 20_000
"""Default cap on the text a tool hands a model (head and tail kept); the runner's own cap is larger."""
MAX_ARGUMENT_CHARS = 20_000_000
"""Raw tool-call arguments longer than this are refused before JSON parsing."""
MAX_IMAGES = 10
"""Images attached to one tool result; more are mentioned in the text only."""
MAX_LISTED_FILES = 500
_TRACEBACK_LINES = 25
_SPILL_DIR = ".coderunner/output"
_IMAGE_MIMES = ("image/png", "image/jpeg")
_TIME_LIMIT_NOTE = (
    "Each call has a time limit (300 seconds unless the runner is configured otherwise); code that runs "
    "longer is interrupted, but the session and its state are kept."
)

# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


class ToolImage(BaseModel):
    """An image a tool produced (a matplotlib figure, a displayed PIL image, an image file)."""

    model_config = ConfigDict(frozen=True)

    data: str = Field(description="The image, base64-encoded (no data: prefix, no line breaks).")
    mime_type: str = Field(description="'image/png' or 'image/jpeg'.")

    @property
    def data_url(self) -> str:
        """The image as a ``data:`` URL, the form OpenAI image inputs take."""
        return f"data:{self.mime_type};base64,{self.data}"

    def to_bytes(self) -> bytes:
        """The decoded image bytes."""
        return base64.b64decode(self.data)


class ToolResult(BaseModel):
    """What a tool call gives back to an agent: compact text for the model, an error flag, and images apart."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="Text for the model: output, error summary, notes; capped, never raw base64.")
    is_error: bool = Field(default=False, description="True when the call failed or the code raised/exited non-zero.")
    images: list[ToolImage] = Field(
        default_factory=list, description="Images to attach for vision-capable models (also mentioned in text)."
    )
    tool_name: str = Field(default="", description="The tool that produced this result.")
    execution: ExecutionResult | None = Field(
        default=None, description="The full execution result, for tools that ran code (not shown to the model)."
    )

    def __str__(self) -> str:
        return self.text


def error_result(text: str, tool_name: str = "") -> ToolResult:
    """Build an error :class:`ToolResult` with ``text`` for the model."""
    return ToolResult(text=text, is_error=True, tool_name=tool_name)


# --------------------------------------------------------------------------------------------------
# Argument models (their JSON schema is THE schema every adapter exports)
# --------------------------------------------------------------------------------------------------


def _clean_schema(schema: dict[str, Any], cls: type[Any] | None = None) -> None:
    """Make a model's JSON schema the canonical tool schema (called by pydantic, mutates in place).

    Titles are noise to a model, and the class docstring is not the tool description.
    ``X | None = None`` becomes plain ``X``: omitting an argument is how a model says "none",
    and a bare type is what every provider handles (OpenAI strict mode adds the null back).
    """
    schema.pop("title", None)
    schema.pop("description", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        any_of = prop.get("anyOf")
        if isinstance(any_of, list) and prop.get("default", ...) is None:
            non_null = [s for s in any_of if s != {"type": "null"}]
            if len(non_null) == 1:
                del prop["anyOf"]
                del prop["default"]
                prop.update(non_null[0])


def _drop_nulls(data: Any) -> Any:
    # OpenAI strict mode sends null for every optional argument the model leaves out.
    if isinstance(data, Mapping):
        return {k: v for k, v in data.items() if v is not None}
    return data


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown arguments are refused (so typos get a clear message)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_clean_schema)

    @model_validator(mode="before")
    @classmethod
    def _nulls_mean_omitted(cls, data: Any) -> Any:
        return _drop_nulls(data)


def _normalize_language_value(value: Any) -> Any:
    # Accept aliases a model may produce ("py", "sh", "node"); the schema still lists canonical names.
    if isinstance(value, str):
        try:
            return _core.normalize_language(value)
        except CodeRunnerError:
            return value
    return value


def _split_packages(value: Any) -> Any:
    # Models sometimes send "numpy pandas" or "numpy,pandas" instead of a list.
    if isinstance(value, str):
        return [p for p in value.replace(",", " ").split() if p]
    return value


Language = Annotated[Literal["python", "bash", "javascript"], BeforeValidator(_normalize_language_value)]
PackageLanguage = Annotated[Literal["python", "javascript"], BeforeValidator(_normalize_language_value)]

_LANGUAGE_DESCRIPTION = "python, bash or javascript."


class ExecutePythonCodeArgs(ToolArgs):
    code: str = Field(description="Python source code to run; may span many lines.")
    language: Language | None = Field(
        default=None,
        description="Leave unset to run Python. Set 'bash' or 'javascript' only to run that language instead.",
    )


class ExecuteBashCommandArgs(ToolArgs):
    command: str = Field(description="The bash command or script to run.")


class ExecuteCodeArgs(ToolArgs):
    code: str = Field(description="Source code to run; may span many lines.")
    language: Language = Field(default="python", description=f"Language of the code: {_LANGUAGE_DESCRIPTION}")


class WriteFileArgs(ToolArgs):
    path: str = Field(description="File path relative to the session's working directory, e.g. 'data/input.csv'.")
    content: str = Field(description="The complete text to write (UTF-8). An existing file is overwritten.")


class ReadFileArgs(ToolArgs):
    path: str = Field(description="File path relative to the session's working directory.")


class ListFilesArgs(ToolArgs):
    path: str = Field(default=".", description="Directory to list, relative to the working directory.")


class InstallPackagesArgs(ToolArgs):
    packages: Annotated[list[str], BeforeValidator(_split_packages)] = Field(
        description="Package names or requirement specifiers, e.g. ['pandas', 'scikit-learn==1.5.0']."
    )
    language: PackageLanguage = Field(
        default="python", description="'python' installs with pip, 'javascript' with npm."
    )


class StartSessionArgs(ToolArgs):
    language: Language = Field(
        default="python", description=f"Default language of the session: {_LANGUAGE_DESCRIPTION}"
    )


class CloseSessionArgs(ToolArgs):
    session_id: str = Field(description="Id of the session to close, as returned by start_session.")


_BROWSER_SESSION_DESCRIPTION = (
    "Browser session to act in (an id from browser_create_session). Leave unset to use the default browser "
    "session, which keeps its page between calls."
)


class BrowserCreateSessionArgs(ToolArgs):
    viewport_width: int = Field(default=1280, ge=100, le=4000, description="Page width in CSS pixels.")
    viewport_height: int = Field(default=800, ge=100, le=4000, description="Page height in CSS pixels.")


class BrowserNavigateArgs(ToolArgs):
    url: str = Field(description="The URL to open, e.g. 'https://example.com/page'.")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserClickArgs(ToolArgs):
    selector: str = Field(description="CSS selector of the element to click, e.g. '#submit' or 'a.next'.")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserFillArgs(ToolArgs):
    selector: str = Field(description="CSS selector of the input, textarea or select to fill, e.g. '#email'.")
    value: str = Field(description="The value to put in the field (replaces what it held).")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserTypeArgs(ToolArgs):
    selector: str = Field(description="CSS selector of the element to type into.")
    text: str = Field(description="The text to type, key by key (fires key events, unlike browser_fill).")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserScreenshotArgs(ToolArgs):
    full_page: bool = Field(default=False, description="Capture the whole page instead of only the visible part.")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class BrowserExtractContentArgs(ToolArgs):
    url: str | None = Field(default=None, description="Open this URL first. Leave unset to read the current page.")
    session_id: str | None = Field(default=None, description=_BROWSER_SESSION_DESCRIPTION)


class NavigateAndGetTextArgs(ToolArgs):
    url: str = Field(description="The URL of the page to read.")


_SESSION_ID_DESCRIPTION = "Run in this session (an id from start_session). Leave unset to use the default session."

_session_variants: dict[type[ToolArgs], type[ToolArgs]] = {}
_session_variants_lock = threading.Lock()


def _with_session_id(model: type[ToolArgs]) -> type[ToolArgs]:
    """Return ``model`` extended with an optional ``session_id`` argument (built once per model)."""
    with _session_variants_lock:
        variant = _session_variants.get(model)
        if variant is None:
            variant = create_model(
                model.__name__.replace("Args", "SessionArgs"),
                __base__=model,
                __module__=__name__,
                session_id=(str | None, Field(default=None, description=_SESSION_ID_DESCRIPTION)),
            )
            _session_variants[model] = variant
        return variant


# --------------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """A runner method call planned from validated arguments (the same on sync and async runners)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderContext:
    """What a renderer knows besides the arguments and the runner's return value."""

    max_chars: int = MAX_TOOL_TEXT_CHARS
    saved_files: Mapping[str, str] = field(default_factory=dict)
    """Stream name ('stdout'/'stderr') -> session path where the shell saved text the cap cuts."""
    save_failed: bool = False


Plan = Callable[[Any], _Call]
Render = Callable[[Any, Any, RenderContext], ToolResult]


@dataclass(frozen=True)
class ToolSpec:
    """One agent tool, described once and mapped by every adapter.

    Attributes:
        name: The tool name models call (``^[a-zA-Z0-9_-]{1,64}$``).
        description: What the tool does, written for a model.
        args_model: Pydantic model of the arguments; ``parameters`` is its JSON schema.
        plan: Pure function: validated arguments -> the runner call to make.
        render: Pure function: (arguments, runner return value, :class:`RenderContext`) -> :class:`ToolResult`.
        aliases: Other names the dispatcher accepts for this tool (never exported).
        session_tool: True for start_session/close_session, exported only when sessions are exposed.
        read_only: True when the tool does not change the session (an MCP hint).
        browser_tool: True for the browser tools, exported only when the browser is asked for
            (they need ``coderunner[browser]`` and Chromium). Their ``session_id`` names a *browser* session.
    """

    name: str
    description: str
    args_model: type[ToolArgs]
    plan: Plan
    render: Render
    aliases: tuple[str, ...] = ()
    session_tool: bool = False
    read_only: bool = False
    browser_tool: bool = False

    @property
    def parameters(self) -> dict[str, Any]:
        """The canonical JSON schema of the arguments (a fresh copy each time)."""
        return self.args_model.model_json_schema()

    def validate_args(self, arguments: Mapping[str, Any]) -> ToolArgs:
        """Validate raw arguments into ``args_model`` (raises pydantic's ValidationError)."""
        return self.args_model.model_validate(dict(arguments))

    def with_sessions(self) -> ToolSpec:
        """Return this spec with an optional ``session_id`` argument (session tools are returned unchanged)."""
        # Browser tools are left alone: a code session id means nothing to the browser.
        if self.session_tool or self.browser_tool or "session_id" in self.args_model.model_fields:
            return self
        return dataclasses.replace(self, args_model=_with_session_id(self.args_model))

    def call(self, runner: CodeRunner, args: ToolArgs, *, max_chars: int = MAX_TOOL_TEXT_CHARS) -> ToolResult:
        """Run the tool on a synchronous runner. Never raises (errors become an error result)."""
        try:
            planned = self.plan(args)
            value = _method(runner, planned.method)(*planned.args, **planned.kwargs)
            ctx = RenderContext(max_chars=max_chars)
            if isinstance(value, ExecutionResult):
                ctx = _save_cut_output(value, ctx, runner)
            return self._render(args, value, ctx)
        except CodeRunnerError as exc:
            return _runner_error(self.name, exc)
        except Exception as exc:  # an agent loop must survive anything a tool hits; logged for the operator
            log.exception("tool %s failed unexpectedly", self.name)
            return error_result(f"Internal error in tool {self.name}: {type(exc).__name__}: {exc}", self.name)

    async def acall(
        self, runner: AsyncCodeRunner, args: ToolArgs, *, max_chars: int = MAX_TOOL_TEXT_CHARS
    ) -> ToolResult:
        """Run the tool on an asynchronous runner. Never raises (errors become an error result)."""
        try:
            planned = self.plan(args)
            value = await _method(runner, planned.method)(*planned.args, **planned.kwargs)
            ctx = RenderContext(max_chars=max_chars)
            if isinstance(value, ExecutionResult):
                ctx = await _asave_cut_output(value, ctx, runner)
            return self._render(args, value, ctx)
        except CodeRunnerError as exc:
            return _runner_error(self.name, exc)
        except Exception as exc:  # an agent loop must survive anything a tool hits; logged for the operator
            log.exception("tool %s failed unexpectedly", self.name)
            return error_result(f"Internal error in tool {self.name}: {type(exc).__name__}: {exc}", self.name)

    def _render(self, args: ToolArgs, value: Any, ctx: RenderContext) -> ToolResult:
        result = self.render(args, value, ctx)
        return result.model_copy(update={"tool_name": self.name})


def _method(runner: Any, path: str) -> Any:
    """The runner method a plan names; dotted paths reach sub-objects (``browser.navigate``)."""
    target = runner
    for part in path.split("."):
        target = getattr(target, part)
    return target


def _runner_error(tool_name: str, exc: CodeRunnerError) -> ToolResult:
    hint = " This is temporary; you can retry the call." if exc.retryable else ""
    message = exc.message.strip()
    if message and message[-1] not in ".!?":
        message += "."
    if exc.code in ("session_not_found", "browser_session_lost") and tool_name in _BROWSER_TOOL_NAMES:
        message = message.split(". ")[0].rstrip(".") + " (it was closed, has expired or its browser crashed)."
        hint = " Create one with browser_create_session, or leave session_id unset to use the default browser session."
    elif exc.code == "session_not_found":
        # The backend's advice names API calls; a model can only use the tools.
        message = message.split(". ")[0].rstrip(".") + " (it was closed or has expired)."
        hint = " Start a new session with start_session, or leave session_id unset to use the default session."
    return error_result(f"Error [{exc.code}]: {message}{hint}", tool_name)


# --------------------------------------------------------------------------------------------------
# Rendering execution results
# --------------------------------------------------------------------------------------------------


def _head_tail(text: str, limit: int) -> tuple[str, int]:
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


def _streams_to_save(result: ExecutionResult, max_chars: int) -> dict[str, str]:
    """Streams the tool cap will cut and the runner did not already save in full: stream -> new path."""
    budgets = _budgets(max_chars)
    token = uuid.uuid4().hex[:12]
    return {
        stream: f"{_SPILL_DIR}/tool-{token}.{stream}"
        for stream in ("stdout", "stderr")
        if len(getattr(result, stream)) > budgets[stream] and not getattr(result, f"{stream}_file")
    }


def _save_cut_output(result: ExecutionResult, ctx: RenderContext, runner: Any) -> RenderContext:
    """Save streams the tool cap will cut into the session, so the model can read them in full later."""
    saved: dict[str, str] = {}
    failed = False
    for stream, path in _streams_to_save(result, ctx.max_chars).items():
        try:
            runner.write_file(path, getattr(result, stream), session_id=result.session_id)
            saved[stream] = path
        except Exception as exc:  # best effort: the code already ran, and the model still gets head and tail
            log.warning("could not save the full %s to %s: %s", stream, path, exc)
            failed = True
    return dataclasses.replace(ctx, saved_files=saved, save_failed=failed)


async def _asave_cut_output(result: ExecutionResult, ctx: RenderContext, runner: Any) -> RenderContext:
    """Async twin of :func:`_save_cut_output`."""
    saved: dict[str, str] = {}
    failed = False
    for stream, path in _streams_to_save(result, ctx.max_chars).items():
        try:
            await runner.write_file(path, getattr(result, stream), session_id=result.session_id)
            saved[stream] = path
        except Exception as exc:  # best effort: the code already ran, and the model still gets head and tail
            log.warning("could not save the full %s to %s: %s", stream, path, exc)
            failed = True
    return dataclasses.replace(ctx, saved_files=saved, save_failed=failed)


def _clean_b64(data: Any) -> str | None:
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
        shown, omitted = _head_tail(text, budgets[stream])
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
            data = _clean_b64(out.data.get(mime))
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
        shown, _ = _head_tail(body, rich_budget)
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
            shown, _ = _head_tail(tail, budgets["traceback"])
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
    text, _ = _head_tail("\n".join(parts + notes), max_chars)
    return ToolResult(text=text, is_error=result.status != "ok", images=images, execution=result)


def _file_line(label: str, paths: Sequence[str], limit: int = 50) -> str:
    shown = ", ".join(paths[:limit])
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{label}: {shown}{more}"


# --------------------------------------------------------------------------------------------------
# Plans and renderers of each tool
# --------------------------------------------------------------------------------------------------


def _session_kwargs(args: ToolArgs) -> dict[str, Any]:
    sid = getattr(args, "session_id", None)
    return {"session_id": sid} if sid else {}


def _plan_execute_python(args: Any) -> _Call:
    return _Call("execute", (args.code, args.language or "python"), _session_kwargs(args))


def _plan_execute_bash(args: Any) -> _Call:
    return _Call("execute", (args.command, "bash"), _session_kwargs(args))


def _plan_execute_code(args: Any) -> _Call:
    return _Call("execute", (args.code, args.language), _session_kwargs(args))


def _render_execution(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    return format_execution_result(
        value, max_chars=ctx.max_chars, saved_files=ctx.saved_files, save_failed=ctx.save_failed
    )


def _plan_write_file(args: Any) -> _Call:
    return _Call("write_file", (args.path, args.content), _session_kwargs(args))


def _render_write_file(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    info: FileInfo = value
    return ToolResult(text=f"Wrote {info.size} bytes to '{info.path}'.")


def _plan_read_file(args: Any) -> _Call:
    return _Call("download_file", (args.path,), _session_kwargs(args))


def _image_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


def _render_read_file(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    data: bytes = value
    mime = _image_mime(data)
    if mime is not None:
        image = ToolImage(data=base64.b64encode(data).decode("ascii"), mime_type=mime)
        text = f"'{args.path}' is a {mime} image of {len(data)} bytes [image 1, attached]."
        return ToolResult(text=text, images=[image])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        preview = data[:64].hex(" ")
        return ToolResult(
            text=f"'{args.path}' is a binary file of {len(data)} bytes (first bytes: {preview}). "
            "Process it with code instead of reading it as text."
        )
    if not text:
        return ToolResult(text=f"'{args.path}' is empty.")
    shown, omitted = _head_tail(text, ctx.max_chars - 300)
    if omitted:
        shown += (
            f"\n[Note: '{args.path}' has {len(text)} characters; {omitted} were omitted from the middle. "
            "Read specific parts with code, e.g. open(path).read()[a:b].]"
        )
    return ToolResult(text=shown)


def _plan_list_files(args: Any) -> _Call:
    return _Call("list_files", (args.path,), _session_kwargs(args))


def _render_list_files(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    files: list[FileInfo] = value
    if not files:
        return ToolResult(text=f"No files in '{args.path}'.")
    lines = [f"{f.path}/" if f.is_dir else f"{f.path}\t{f.size} bytes" for f in files[:MAX_LISTED_FILES]]
    if len(files) > MAX_LISTED_FILES:
        lines.append(f"... and {len(files) - MAX_LISTED_FILES} more entries")
    text, _ = _head_tail("\n".join(lines), ctx.max_chars)
    return ToolResult(text=text)


def _plan_install(args: Any) -> _Call:
    return _Call("install_packages", (list(args.packages), args.language), _session_kwargs(args))


def _render_install(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    result = _render_execution(args, value, ctx)
    if result.is_error:
        return result
    tool = "pip" if args.language == "python" else "npm"
    body = "" if result.text == "Done (no output)." else "\n" + result.text
    return result.model_copy(update={"text": f"Installed with {tool}: {', '.join(args.packages)}.{body}"})


def _plan_start_session(args: Any) -> _Call:
    return _Call("session", (args.language,))


def _render_start_session(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    sid = value.session_id
    return ToolResult(
        text=f'Started session {sid} (default language {args.language}). Pass session_id="{sid}" to the other '
        "tools to work in it: it has its own variables and files. Close it with close_session when done."
    )


def _plan_close_session(args: Any) -> _Call:
    return _Call("close_session", (args.session_id,))


def _render_close_session(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    return ToolResult(text=f"Closed session {args.session_id}.")


# -- browser tools (runner.browser: a BrowserManager / AsyncBrowserManager) -------------------------

_TOOL_BROWSER_TIMEOUT = 10_000
"""Milliseconds a browser tool waits for an element: short, so a wrong selector costs a model little time."""
_MAX_LISTED_ELEMENTS = 100


def _browser_sid(args: ToolArgs) -> str | None:
    sid: str | None = getattr(args, "session_id", None)
    return sid or None


def _plan_browser_create_session(args: Any) -> _Call:
    return _Call("browser.create_session", (args.viewport_width, args.viewport_height))


def _render_browser_create_session(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    sid = value.session_id
    return ToolResult(
        text=f'Started browser session {sid} ({args.viewport_width}x{args.viewport_height}). Pass session_id="{sid}" '
        "to the other browser tools to act in it: it has its own cookies, storage and page."
    )


def _plan_browser_navigate(args: Any) -> _Call:
    return _Call("browser.navigate", (args.url,), {"session_id": _browser_sid(args)})


def _notes(result: Any) -> list[str]:
    notes = [f"Note: {w}" for w in result.warnings]
    blocked = result.data.get("blocked_requests")
    if blocked:
        notes.append(f"Note: the browser's egress policy refused {len(blocked)} request(s) of this page.")
    return notes


def _render_browser_navigate(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    data = value.data
    status = data.get("status")
    shown = f", HTTP {status}" if status is not None else ""
    lines = [
        f"Opened {data.get('url', args.url)} (title: {data.get('title', '')!r}{shown}). "
        "Read it with browser_extract_content, or look at it with browser_screenshot.",
        *_notes(value),
    ]
    return ToolResult(text="\n".join(lines))


def _plan_browser_click(args: Any) -> _Call:
    return _Call(
        "browser.click", (args.selector,), {"session_id": _browser_sid(args), "timeout": _TOOL_BROWSER_TIMEOUT}
    )


def _plan_browser_fill(args: Any) -> _Call:
    return _Call(
        "browser.fill",
        (args.selector, args.value),
        {"session_id": _browser_sid(args), "timeout": _TOOL_BROWSER_TIMEOUT},
    )


def _plan_browser_type(args: Any) -> _Call:
    return _Call(
        "browser.type",
        (args.selector, args.text),
        {"session_id": _browser_sid(args), "delay": 20, "timeout": _TOOL_BROWSER_TIMEOUT},
    )


_DONE = {"click": "Clicked", "fill": "Filled", "type": "Typed into"}


def _render_browser_action(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    verb = _DONE.get(value.action, value.action)
    lines = [f"{verb} {args.selector!r}. The page is now {value.data.get('url', '')}.", *_notes(value)]
    return ToolResult(text="\n".join(lines))


def _plan_browser_screenshot(args: Any) -> _Call:
    return _Call("browser.screenshot", (), {"session_id": _browser_sid(args), "full_page": args.full_page})


def _render_browser_screenshot(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    data = _clean_b64(value)
    if data is None:
        return error_result("The browser returned an empty screenshot.")
    kib = len(data) * 3 / 4 / 1024
    what = "whole page" if args.full_page else "visible part of the page"
    return ToolResult(
        text=f"[screenshot of the {what}: image/png, {kib:.1f} KiB, attached]",
        images=[ToolImage(data=data, mime_type="image/png")],
    )


def _plan_browser_extract_content(args: Any) -> _Call:
    return _Call("browser.extract_content", (), {"session_id": _browser_sid(args), "url": args.url})


def _page_text(content: Any) -> str:
    readable = content.readable_content
    return f"Title: {readable.title}\nURL: {readable.url}\n\n{readable.content.strip()}"


def _render_browser_extract_content(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    elements = value.interactive_elements
    listed = []
    for element in elements[:_MAX_LISTED_ELEMENTS]:
        kind = f"{element.tag}[{element.type}]" if element.type else element.tag
        label = f" {element.text!r}" if element.text else ""
        extra = f" -> {element.href}" if element.href else ""
        disabled = " (disabled)" if element.disabled else ""
        listed.append(f"- {element.selector}  {kind}{label}{extra}{disabled}")
    if len(elements) > _MAX_LISTED_ELEMENTS:
        listed.append(f"- ... and {len(elements) - _MAX_LISTED_ELEMENTS} more")
    tail = ""
    if listed:
        tail = "\n\nInteractive elements (use these selectors with browser_click / browser_fill):\n" + "\n".join(listed)
    text, _ = _head_tail(_page_text(value), max(200, ctx.max_chars - len(tail)))
    shown, _ = _head_tail(text + tail, ctx.max_chars)
    return ToolResult(text=shown)


def _plan_navigate_and_get_text(args: Any) -> _Call:
    return _Call(
        "browser.extract_content", (), {"url": args.url, "include_interactive": False, "include_anchors": False}
    )


def _render_navigate_and_get_text(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    shown, _ = _head_tail(_page_text(value), ctx.max_chars)
    return ToolResult(text=shown)


_STATE = (
    "State persists across calls: variables, imports, functions, the working directory and files are kept, "
    "so build on earlier results instead of recomputing them."
)
_IMAGES = (
    "To show a chart, plot with matplotlib and call plt.show(); display(obj) shows images and rich objects. "
    "Images are returned to you."
)

_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="execute_python_code",
        description=(
            "Run Python code in a persistent Jupyter-like session and return what it printed, the value of the "
            f"last expression, and any error with its traceback. {_STATE} {_IMAGES} Print what you need to see; "
            f"very long output is truncated and saved to a file. {_TIME_LIMIT_NOTE} "
            "Use install_packages (or %pip install) for missing packages."
        ),
        args_model=ExecutePythonCodeArgs,
        plan=_plan_execute_python,
        render=_render_execution,
    ),
    ToolSpec(
        name="execute_bash_command",
        description=(
            "Run a bash command in the session's persistent shell and return stdout, stderr and the exit code. "
            "The working directory (cd), exported variables and files persist across calls, and files are shared "
            "with the Python session. Commands cannot read input interactively: pass flags such as -y. "
            f"{_TIME_LIMIT_NOTE}"
        ),
        args_model=ExecuteBashCommandArgs,
        plan=_plan_execute_bash,
        render=_render_execution,
    ),
    ToolSpec(
        name="execute_code",
        description=(
            "Run code in Python, bash or JavaScript (Node.js) in a persistent session and return its output and "
            f"any error. Each language keeps its own interpreter state between calls; all share the working "
            f"directory and its files. {_STATE} {_IMAGES} {_TIME_LIMIT_NOTE}"
        ),
        args_model=ExecuteCodeArgs,
        plan=_plan_execute_code,
        render=_render_execution,
    ),
    ToolSpec(
        name="write_file",
        description=(
            "Create or overwrite a text file in the session's working directory (parent folders are created). "
            "The file is then available to code in every language of the session."
        ),
        args_model=WriteFileArgs,
        plan=_plan_write_file,
        render=_render_write_file,
        aliases=("upload_file",),
    ),
    ToolSpec(
        name="read_file",
        description=(
            "Read a file from the session's working directory. Text is returned (head and tail of large files); "
            "PNG/JPEG images are returned as images; other binary files are described."
        ),
        args_model=ReadFileArgs,
        plan=_plan_read_file,
        render=_render_read_file,
        aliases=("download_file",),
        read_only=True,
    ),
    ToolSpec(
        name="list_files",
        description="List files and folders in a directory of the session's working directory, with sizes.",
        args_model=ListFilesArgs,
        plan=_plan_list_files,
        render=_render_list_files,
        read_only=True,
    ),
    ToolSpec(
        name="install_packages",
        description=(
            "Install packages into the session: pip for Python, npm for JavaScript. Installed packages stay "
            "available for the rest of the session."
        ),
        args_model=InstallPackagesArgs,
        plan=_plan_install,
        render=_render_install,
    ),
    ToolSpec(
        name="start_session",
        description=(
            "Start a new, isolated session (its own interpreters, variables and working directory) and return its "
            "id. Pass that id as session_id to the other tools. Without one, tools use the default session."
        ),
        args_model=StartSessionArgs,
        plan=_plan_start_session,
        render=_render_start_session,
        session_tool=True,
    ),
    ToolSpec(
        name="close_session",
        description="Close a session started with start_session and free its resources; its state is lost.",
        args_model=CloseSessionArgs,
        plan=_plan_close_session,
        render=_render_close_session,
        session_tool=True,
    ),
    ToolSpec(
        name="browser_create_session",
        description=(
            "Start a new, isolated browser session (its own cookies, storage and page) and return its id. Pass it "
            "as session_id to the other browser tools. Without one, browser tools share a default session."
        ),
        args_model=BrowserCreateSessionArgs,
        plan=_plan_browser_create_session,
        render=_render_browser_create_session,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_navigate",
        description=(
            "Open a URL in a real web browser (Chromium) and wait for the page to load. The page stays open for "
            "the next browser tools: read it with browser_extract_content, act on it with browser_click / "
            "browser_fill, look at it with browser_screenshot."
        ),
        args_model=BrowserNavigateArgs,
        plan=_plan_browser_navigate,
        render=_render_browser_navigate,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_click",
        description=(
            "Click the element matching a CSS selector on the current browser page (selectors are listed by "
            "browser_extract_content). Fails clearly when nothing matches or the element never becomes clickable."
        ),
        args_model=BrowserClickArgs,
        plan=_plan_browser_click,
        render=_render_browser_action,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_fill",
        description="Set the value of a form field (input, textarea, select) on the current browser page.",
        args_model=BrowserFillArgs,
        plan=_plan_browser_fill,
        render=_render_browser_action,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_type",
        description=(
            "Type text key by key into an element on the current browser page, for fields that react to key "
            "presses (search boxes with suggestions). Prefer browser_fill for plain form fields."
        ),
        args_model=BrowserTypeArgs,
        plan=_plan_browser_type,
        render=_render_browser_action,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_screenshot",
        description="Take a screenshot of the current browser page; the image is returned to you.",
        args_model=BrowserScreenshotArgs,
        plan=_plan_browser_screenshot,
        render=_render_browser_screenshot,
        browser_tool=True,
        read_only=True,
    ),
    ToolSpec(
        name="browser_extract_content",
        description=(
            "Read the current browser page (or open url first): its title, readable text, and the links, buttons "
            "and form fields on it with a CSS selector for each, to use with browser_click and browser_fill."
        ),
        args_model=BrowserExtractContentArgs,
        plan=_plan_browser_extract_content,
        render=_render_browser_extract_content,
        browser_tool=True,
    ),
    ToolSpec(
        name="navigate_and_get_all_visible_text",
        description=(
            "Open a URL in a real web browser (Chromium, JavaScript runs) and return all the visible text of the "
            "page, without scripts, styles or hidden elements."
        ),
        args_model=NavigateAndGetTextArgs,
        plan=_plan_navigate_and_get_text,
        render=_render_navigate_and_get_text,
        browser_tool=True,
    ),
)

_BROWSER_TOOL_NAMES = frozenset(s.name for s in _SPECS if s.browser_tool)


def get_tool_specs(
    *, sessions: bool = False, names: Iterable[str] | None = None, browser: bool = False
) -> list[ToolSpec]:
    """Return the tool specs, in a stable order.

    Args:
        sessions: Also expose sessions: every code tool gets an optional ``session_id`` argument and
            ``start_session``/``close_session`` are included (the MCP server does this).
        names: Only these tools (by name), in the canonical order; browser tools named here are
            included whatever ``browser`` says.
        browser: Also include the browser tools (``browser_navigate``, ``browser_click``, ...,
            ``navigate_and_get_all_visible_text``). Off by default: they need ``coderunner[browser]``,
            Chromium, and a backend with the browser capability. Listing them starts nothing.

    Raises:
        ValueError: A name in ``names`` is not a tool.
    """
    pool = [s for s in _SPECS if sessions or not s.session_tool]
    if names is not None:
        wanted = set(names)
        unknown = wanted - {s.name for s in _SPECS}
        if unknown:
            raise ValueError(f"Unknown tool(s): {', '.join(sorted(unknown))}.")
        pool = [s for s in pool if s.name in wanted]
    elif not browser:
        pool = [s for s in pool if not s.browser_tool]
    return [s.with_sessions() for s in pool] if sessions else pool


def get_tool_spec(name: str, *, sessions: bool = False) -> ToolSpec:
    """Return one spec by name or alias (raises KeyError when there is none)."""
    spec = _find(name, get_tool_specs(sessions=True, browser=True) if sessions else list(_SPECS))
    if spec is None:
        raise KeyError(name)
    return spec


def _find(name: str, specs: Sequence[ToolSpec]) -> ToolSpec | None:
    for spec in specs:
        if name == spec.name or name in spec.aliases:
            return spec
    return None


# --------------------------------------------------------------------------------------------------
# Dispatch: validate model output, run, never raise
# --------------------------------------------------------------------------------------------------


def parse_arguments(arguments: Mapping[str, Any] | str | bytes | None) -> dict[str, Any]:
    """Turn a model's raw tool arguments (a JSON string or a mapping) into a dict.

    Empty input means no arguments. A JSON string that itself contains a JSON object (a
    double-encoded argument string, which some models emit) is decoded once more.

    Raises:
        ValueError: The arguments are not a JSON object; the message says what was wrong.
    """
    if arguments is None:
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if isinstance(arguments, (bytes, bytearray)):
        arguments = bytes(arguments).decode("utf-8", errors="replace")
    if not isinstance(arguments, str):
        raise ValueError(f"arguments must be a JSON object, not {type(arguments).__name__}.")
    if len(arguments) > MAX_ARGUMENT_CHARS:
        raise ValueError(
            f"the arguments are {len(arguments)} characters long; the limit is {MAX_ARGUMENT_CHARS}. "
            "Write large data to a file in smaller pieces."
        )
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the arguments are not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Send a JSON object, with newlines and quotes inside strings escaped."
        ) from None
    if isinstance(value, str) and value.strip().startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(f"the arguments must be a JSON object, not a JSON {type(value).__name__}.")
    return value


def _describe_expected(spec: ToolSpec) -> str:
    schema = spec.parameters
    required = set(schema.get("required", []))
    items = []
    for name, prop in schema.get("properties", {}).items():
        if "enum" in prop:
            kind = " | ".join(json.dumps(v) for v in prop["enum"])
        else:
            kind = str(prop.get("type", "value"))
            if kind == "array":
                kind = f"array of {prop.get('items', {}).get('type', 'value')}"
        need = "required" if name in required else "optional"
        items.append(f"{name} ({kind}, {need})")
    return ", ".join(items) if items else "no arguments"


def _validation_message(spec: ToolSpec, exc: ValidationError) -> str:
    lines = [f"Invalid arguments for tool '{spec.name}':"]
    for err in exc.errors(include_url=False)[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(arguments)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unexpected argument"
        lines.append(f"- {loc}: {msg}")
    lines.append(f"Expected arguments: {_describe_expected(spec)}.")
    return "\n".join(lines)


def _prepare(name: object, arguments: Any, specs: Sequence[ToolSpec] | None) -> tuple[ToolSpec, ToolArgs] | ToolResult:
    """Resolve the tool and validate its arguments, or return the error result explaining why not."""
    pool = list(specs) if specs is not None else get_tool_specs(sessions=True, browser=True)
    tool_name = name if isinstance(name, str) else ""
    spec = _find(tool_name, pool) if tool_name else None
    if spec is None:
        available = ", ".join(s.name for s in pool)
        shown = repr(name) if len(repr(name)) < 100 else repr(name)[:100] + "..."
        return error_result(f"Unknown tool {shown}. Available tools: {available}.", tool_name)
    try:
        raw = parse_arguments(arguments)
    except ValueError as exc:
        return error_result(f"Could not read the arguments for tool '{spec.name}': {exc}", spec.name)
    try:
        return spec, spec.validate_args(raw)
    except ValidationError as exc:
        return error_result(_validation_message(spec, exc), spec.name)


def dispatch(
    runner: CodeRunner,
    name: str,
    arguments: Mapping[str, Any] | str | None,
    *,
    specs: Sequence[ToolSpec] | None = None,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
) -> ToolResult:
    """Validate a model's tool call and run it on a synchronous runner. Never raises.

    Args:
        runner: The runner the tools act on.
        name: The tool name the model called (aliases such as ``upload_file`` are accepted).
        arguments: The model's arguments, as a JSON string or a mapping.
        specs: The tools the model was offered (default: every tool, with sessions and the browser).
        max_chars: Cap on the result text.

    Returns:
        The result; unknown tools, malformed JSON and invalid arguments give an error result
        whose text tells the model how to fix the call.
    """
    prepared = _prepare(name, arguments, specs)
    if isinstance(prepared, ToolResult):
        return prepared
    spec, args = prepared
    return spec.call(runner, args, max_chars=max_chars)


def is_async_runner(runner: object) -> bool:
    """True when ``runner``'s methods are coroutines (an AsyncCodeRunner or a look-alike)."""
    return inspect.iscoroutinefunction(getattr(runner, "execute", None))


async def adispatch(
    runner: AsyncCodeRunner | CodeRunner,
    name: str,
    arguments: Mapping[str, Any] | str | None,
    *,
    specs: Sequence[ToolSpec] | None = None,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
) -> ToolResult:
    """Async twin of :func:`dispatch`; a synchronous runner is driven in a worker thread. Never raises."""
    if not is_async_runner(runner):
        return await asyncio.to_thread(dispatch, runner, name, arguments, specs=specs, max_chars=max_chars)  # type: ignore[arg-type]
    prepared = _prepare(name, arguments, specs)
    if isinstance(prepared, ToolResult):
        return prepared
    spec, args = prepared
    return await spec.acall(runner, args, max_chars=max_chars)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# The process-wide default runner (adapters called without a runner)
# --------------------------------------------------------------------------------------------------

_default_runner: CodeRunner | None = None
_default_runner_lock = threading.Lock()


def default_runner() -> CodeRunner:
    """The process-wide :class:`CodeRunner` used when an adapter is given no runner.

    Built on first use from the environment (``CODERUNNER_BACKEND`` and the other
    ``CODERUNNER_*`` variables), so an agent switches backend by configuration alone, and
    shared so state persists across tool calls. Closed when the interpreter exits.
    """
    global _default_runner
    with _default_runner_lock:
        if _default_runner is None:
            from coderunner.client import CodeRunner

            _default_runner = CodeRunner()
            atexit.register(_default_runner.close)
        return _default_runner
