"""Each tool's two pure halves: its plan (validated arguments -> the runner call) and its renderer (-> text).

A plan names a runner method and its arguments (:class:`Call`), the same on sync and async
runners, so the shells in :class:`~coderunner.tools.specs.ToolSpec` differ only in ``await``. A
renderer turns the runner's return value into the :class:`~coderunner.tools.results.ToolResult`
a model reads. Browser plans name methods of ``runner.browser`` (a ``BrowserManager`` or
``AsyncBrowserManager``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coderunner.models import FileInfo
from coderunner.tools.arguments import ToolArgs
from coderunner.tools.rendering import RenderContext, clean_b64, format_execution_result, head_tail
from coderunner.tools.results import ToolImage, ToolResult, error_result

__all__ = [
    "MAX_LISTED_FILES",
    "Call",
    "Plan",
    "Render",
    "plan_browser_click",
    "plan_browser_create_session",
    "plan_browser_extract_content",
    "plan_browser_fill",
    "plan_browser_navigate",
    "plan_browser_screenshot",
    "plan_browser_type",
    "plan_close_session",
    "plan_execute_bash",
    "plan_execute_code",
    "plan_execute_python",
    "plan_install",
    "plan_list_files",
    "plan_navigate_and_get_text",
    "plan_read_file",
    "plan_start_session",
    "plan_write_file",
    "render_browser_action",
    "render_browser_create_session",
    "render_browser_extract_content",
    "render_browser_navigate",
    "render_browser_screenshot",
    "render_close_session",
    "render_execution",
    "render_install",
    "render_list_files",
    "render_navigate_and_get_text",
    "render_read_file",
    "render_start_session",
    "render_write_file",
]

MAX_LISTED_FILES = 500
"""Entries list_files shows; more are counted only."""


@dataclass(frozen=True)
class Call:
    """A runner method call planned from validated arguments (the same on sync and async runners)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Plan = Callable[[Any], Call]
"""Validated arguments -> the runner call to make."""
Render = Callable[[Any, Any, RenderContext], ToolResult]
"""(Arguments, runner return value, context) -> the result for the model."""


# -- code, files and sessions ------------------------------------------------------------------------


def _session_kwargs(args: ToolArgs) -> dict[str, Any]:
    sid = getattr(args, "session_id", None)
    return {"session_id": sid} if sid else {}


def plan_execute_python(args: Any) -> Call:
    """execute_python_code: run the code, in Python unless another language is asked for."""
    return Call("execute", (args.code, args.language or "python"), _session_kwargs(args))


def plan_execute_bash(args: Any) -> Call:
    """execute_bash_command: run the command in the session's shell."""
    return Call("execute", (args.command, "bash"), _session_kwargs(args))


def plan_execute_code(args: Any) -> Call:
    """execute_code: run the code in the language asked for."""
    return Call("execute", (args.code, args.language), _session_kwargs(args))


def render_execution(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """An :class:`~coderunner.models.ExecutionResult`, capped, naming the files the shell saved."""
    return format_execution_result(
        value, max_chars=ctx.max_chars, saved_files=ctx.saved_files, save_failed=ctx.save_failed
    )


def plan_write_file(args: Any) -> Call:
    """write_file: write the text to the path."""
    return Call("write_file", (args.path, args.content), _session_kwargs(args))


def render_write_file(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """The size and path of the written file."""
    info: FileInfo = value
    return ToolResult(text=f"Wrote {info.size} bytes to '{info.path}'.")


def plan_read_file(args: Any) -> Call:
    """read_file: download the file's bytes."""
    return Call("download_file", (args.path,), _session_kwargs(args))


def _image_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


def render_read_file(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """A file's bytes: PNG/JPEG as an image, UTF-8 as (capped) text, anything else described."""
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
    shown, omitted = head_tail(text, ctx.max_chars - 300)
    if omitted:
        shown += (
            f"\n[Note: '{args.path}' has {len(text)} characters; {omitted} were omitted from the middle. "
            "Read specific parts with code, e.g. open(path).read()[a:b].]"
        )
    return ToolResult(text=shown)


def plan_list_files(args: Any) -> Call:
    """list_files: list the directory."""
    return Call("list_files", (args.path,), _session_kwargs(args))


def render_list_files(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """One line per entry (folders end with '/'), at most :data:`MAX_LISTED_FILES` of them."""
    files: list[FileInfo] = value
    if not files:
        return ToolResult(text=f"No files in '{args.path}'.")
    lines = [f"{f.path}/" if f.is_dir else f"{f.path}\t{f.size} bytes" for f in files[:MAX_LISTED_FILES]]
    if len(files) > MAX_LISTED_FILES:
        lines.append(f"... and {len(files) - MAX_LISTED_FILES} more entries")
    text, _ = head_tail("\n".join(lines), ctx.max_chars)
    return ToolResult(text=text)


def plan_install(args: Any) -> Call:
    """install_packages: install with pip or npm."""
    return Call("install_packages", (list(args.packages), args.language), _session_kwargs(args))


def render_install(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """What was installed and with which tool, then the installer's output; a failure as an execution."""
    result = render_execution(args, value, ctx)
    if result.is_error:
        return result
    tool = "pip" if args.language == "python" else "npm"
    body = "" if result.text == "Done (no output)." else "\n" + result.text
    return result.model_copy(update={"text": f"Installed with {tool}: {', '.join(args.packages)}.{body}"})


def plan_start_session(args: Any) -> Call:
    """start_session: open a session in the language asked for."""
    return Call("session", (args.language,))


def render_start_session(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """The new session's id and how to use it."""
    sid = value.session_id
    return ToolResult(
        text=f'Started session {sid} (default language {args.language}). Pass session_id="{sid}" to the other '
        "tools to work in it: it has its own variables and files. Close it with close_session when done."
    )


def plan_close_session(args: Any) -> Call:
    """close_session: close the session."""
    return Call("close_session", (args.session_id,))


def render_close_session(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """Which session was closed."""
    return ToolResult(text=f"Closed session {args.session_id}.")


# -- browser (runner.browser: a BrowserManager / AsyncBrowserManager) -------------------------------

_TOOL_BROWSER_TIMEOUT = 10_000
"""Milliseconds a browser tool waits for an element: short, so a wrong selector costs a model little time."""
_MAX_LISTED_ELEMENTS = 100


def _browser_sid(args: ToolArgs) -> str | None:
    sid: str | None = getattr(args, "session_id", None)
    return sid or None


def plan_browser_create_session(args: Any) -> Call:
    """browser_create_session: open a browser session with the viewport asked for."""
    return Call("browser.create_session", (args.viewport_width, args.viewport_height))


def render_browser_create_session(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """The new browser session's id and how to use it."""
    sid = value.session_id
    return ToolResult(
        text=f'Started browser session {sid} ({args.viewport_width}x{args.viewport_height}). Pass session_id="{sid}" '
        "to the other browser tools to act in it: it has its own cookies, storage and page."
    )


def plan_browser_navigate(args: Any) -> Call:
    """browser_navigate: open the URL."""
    return Call("browser.navigate", (args.url,), {"session_id": _browser_sid(args)})


def _notes(result: Any) -> list[str]:
    notes = [f"Note: {w}" for w in result.warnings]
    blocked = result.data.get("blocked_requests")
    if blocked:
        notes.append(f"Note: the browser's egress policy refused {len(blocked)} request(s) of this page.")
    return notes


def render_browser_navigate(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """The page opened (URL, title, HTTP status) and what to do next."""
    data = value.data
    status = data.get("status")
    shown = f", HTTP {status}" if status is not None else ""
    lines = [
        f"Opened {data.get('url', args.url)} (title: {data.get('title', '')!r}{shown}). "
        "Read it with browser_extract_content, or look at it with browser_screenshot.",
        *_notes(value),
    ]
    return ToolResult(text="\n".join(lines))


def plan_browser_click(args: Any) -> Call:
    """browser_click: click the selector, waiting briefly for it."""
    return Call("browser.click", (args.selector,), {"session_id": _browser_sid(args), "timeout": _TOOL_BROWSER_TIMEOUT})


def plan_browser_fill(args: Any) -> Call:
    """browser_fill: set the field's value, waiting briefly for it."""
    return Call(
        "browser.fill",
        (args.selector, args.value),
        {"session_id": _browser_sid(args), "timeout": _TOOL_BROWSER_TIMEOUT},
    )


def plan_browser_type(args: Any) -> Call:
    """browser_type: type the text key by key, waiting briefly for the element."""
    return Call(
        "browser.type",
        (args.selector, args.text),
        {"session_id": _browser_sid(args), "delay": 20, "timeout": _TOOL_BROWSER_TIMEOUT},
    )


_DONE = {"click": "Clicked", "fill": "Filled", "type": "Typed into"}


def render_browser_action(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """What was done to which selector, and the page's URL after it."""
    verb = _DONE.get(value.action, value.action)
    lines = [f"{verb} {args.selector!r}. The page is now {value.data.get('url', '')}.", *_notes(value)]
    return ToolResult(text="\n".join(lines))


def plan_browser_screenshot(args: Any) -> Call:
    """browser_screenshot: capture the visible part or the whole page."""
    return Call("browser.screenshot", (), {"session_id": _browser_sid(args), "full_page": args.full_page})


def render_browser_screenshot(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """The screenshot as an attached PNG image."""
    data = clean_b64(value)
    if data is None:
        return error_result("The browser returned an empty screenshot.")
    kib = len(data) * 3 / 4 / 1024
    what = "whole page" if args.full_page else "visible part of the page"
    return ToolResult(
        text=f"[screenshot of the {what}: image/png, {kib:.1f} KiB, attached]",
        images=[ToolImage(data=data, mime_type="image/png")],
    )


def plan_browser_extract_content(args: Any) -> Call:
    """browser_extract_content: read the page (opening the URL first when one is given)."""
    return Call("browser.extract_content", (), {"session_id": _browser_sid(args), "url": args.url})


def _page_text(content: Any) -> str:
    readable = content.readable_content
    return f"Title: {readable.title}\nURL: {readable.url}\n\n{readable.content.strip()}"


def render_browser_extract_content(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """The page's title, URL and text, then its interactive elements with their selectors."""
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
    text, _ = head_tail(_page_text(value), max(200, ctx.max_chars - len(tail)))
    shown, _ = head_tail(text + tail, ctx.max_chars)
    return ToolResult(text=shown)


def plan_navigate_and_get_text(args: Any) -> Call:
    """navigate_and_get_all_visible_text: open the URL and read its text only."""
    return Call(
        "browser.extract_content", (), {"url": args.url, "include_interactive": False, "include_anchors": False}
    )


def render_navigate_and_get_text(args: Any, value: Any, ctx: RenderContext) -> ToolResult:
    """The page's title, URL and visible text, capped."""
    shown, _ = head_tail(_page_text(value), ctx.max_chars)
    return ToolResult(text=shown)
