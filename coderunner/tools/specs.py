"""The one list of agent tools: :class:`ToolSpec`, how a spec runs on a runner, and the table of every tool.

A spec's ``call`` / ``acall`` run already-validated arguments: plan the runner call, make it,
save into the session any output the tool cap will cut, render. They never raise: a coderunner
error becomes an error result written for a model, anything else is logged and reported.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coderunner.errors import CodeRunnerError
from coderunner.models import ExecutionResult
from coderunner.tools.arguments import (
    BrowserClickArgs,
    BrowserCreateSessionArgs,
    BrowserExtractContentArgs,
    BrowserFillArgs,
    BrowserNavigateArgs,
    BrowserScreenshotArgs,
    BrowserTypeArgs,
    CloseSessionArgs,
    ExecuteBashCommandArgs,
    ExecuteCodeArgs,
    ExecutePythonCodeArgs,
    InstallPackagesArgs,
    ListFilesArgs,
    NavigateAndGetTextArgs,
    ReadFileArgs,
    StartSessionArgs,
    ToolArgs,
    WriteFileArgs,
    with_session_id,
)
from coderunner.tools.handlers import (
    Plan,
    Render,
    plan_browser_click,
    plan_browser_create_session,
    plan_browser_extract_content,
    plan_browser_fill,
    plan_browser_navigate,
    plan_browser_screenshot,
    plan_browser_type,
    plan_close_session,
    plan_execute_bash,
    plan_execute_code,
    plan_execute_python,
    plan_install,
    plan_list_files,
    plan_navigate_and_get_text,
    plan_read_file,
    plan_start_session,
    plan_write_file,
    render_browser_action,
    render_browser_create_session,
    render_browser_extract_content,
    render_browser_navigate,
    render_browser_screenshot,
    render_close_session,
    render_execution,
    render_install,
    render_list_files,
    render_navigate_and_get_text,
    render_read_file,
    render_start_session,
    render_write_file,
)
from coderunner.tools.rendering import RenderContext, streams_to_save
from coderunner.tools.results import MAX_TOOL_TEXT_CHARS, ToolResult, error_result

if TYPE_CHECKING:
    from coderunner.client import AsyncCodeRunner, CodeRunner

__all__ = ["ToolSpec", "find_spec", "get_tool_spec", "get_tool_specs"]

log = logging.getLogger(__name__)


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
        return dataclasses.replace(self, args_model=with_session_id(self.args_model))

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


def _save_cut_output(result: ExecutionResult, ctx: RenderContext, runner: Any) -> RenderContext:
    """Save streams the tool cap will cut into the session, so the model can read them in full later."""
    saved: dict[str, str] = {}
    failed = False
    for stream, path in streams_to_save(result, ctx.max_chars).items():
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
    for stream, path in streams_to_save(result, ctx.max_chars).items():
        try:
            await runner.write_file(path, getattr(result, stream), session_id=result.session_id)
            saved[stream] = path
        except Exception as exc:  # best effort: the code already ran, and the model still gets head and tail
            log.warning("could not save the full %s to %s: %s", stream, path, exc)
            failed = True
    return dataclasses.replace(ctx, saved_files=saved, save_failed=failed)


# -- the table ------------------------------------------------------------------------------------

_TIME_LIMIT_NOTE = (
    "Each call has a time limit (300 seconds unless the runner is configured otherwise); code that runs "
    "longer is interrupted, but the session and its state are kept."
)
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
        plan=plan_execute_python,
        render=render_execution,
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
        plan=plan_execute_bash,
        render=render_execution,
    ),
    ToolSpec(
        name="execute_code",
        description=(
            "Run code in Python, bash or JavaScript (Node.js) in a persistent session and return its output and "
            f"any error. Each language keeps its own interpreter state between calls; all share the working "
            f"directory and its files. {_STATE} {_IMAGES} {_TIME_LIMIT_NOTE}"
        ),
        args_model=ExecuteCodeArgs,
        plan=plan_execute_code,
        render=render_execution,
    ),
    ToolSpec(
        name="write_file",
        description=(
            "Create or overwrite a text file in the session's working directory (parent folders are created). "
            "The file is then available to code in every language of the session."
        ),
        args_model=WriteFileArgs,
        plan=plan_write_file,
        render=render_write_file,
        aliases=("upload_file",),
    ),
    ToolSpec(
        name="read_file",
        description=(
            "Read a file from the session's working directory. Text is returned (head and tail of large files); "
            "PNG/JPEG images are returned as images; other binary files are described."
        ),
        args_model=ReadFileArgs,
        plan=plan_read_file,
        render=render_read_file,
        aliases=("download_file",),
        read_only=True,
    ),
    ToolSpec(
        name="list_files",
        description="List files and folders in a directory of the session's working directory, with sizes.",
        args_model=ListFilesArgs,
        plan=plan_list_files,
        render=render_list_files,
        read_only=True,
    ),
    ToolSpec(
        name="install_packages",
        description=(
            "Install packages into the session: pip for Python, npm for JavaScript. Installed packages stay "
            "available for the rest of the session."
        ),
        args_model=InstallPackagesArgs,
        plan=plan_install,
        render=render_install,
    ),
    ToolSpec(
        name="start_session",
        description=(
            "Start a new, isolated session (its own interpreters, variables and working directory) and return its "
            "id. Pass that id as session_id to the other tools. Without one, tools use the default session."
        ),
        args_model=StartSessionArgs,
        plan=plan_start_session,
        render=render_start_session,
        session_tool=True,
    ),
    ToolSpec(
        name="close_session",
        description="Close a session started with start_session and free its resources; its state is lost.",
        args_model=CloseSessionArgs,
        plan=plan_close_session,
        render=render_close_session,
        session_tool=True,
    ),
    ToolSpec(
        name="browser_create_session",
        description=(
            "Start a new, isolated browser session (its own cookies, storage and page) and return its id. Pass it "
            "as session_id to the other browser tools. Without one, browser tools share a default session."
        ),
        args_model=BrowserCreateSessionArgs,
        plan=plan_browser_create_session,
        render=render_browser_create_session,
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
        plan=plan_browser_navigate,
        render=render_browser_navigate,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_click",
        description=(
            "Click the element matching a CSS selector on the current browser page (selectors are listed by "
            "browser_extract_content). Fails clearly when nothing matches or the element never becomes clickable."
        ),
        args_model=BrowserClickArgs,
        plan=plan_browser_click,
        render=render_browser_action,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_fill",
        description="Set the value of a form field (input, textarea, select) on the current browser page.",
        args_model=BrowserFillArgs,
        plan=plan_browser_fill,
        render=render_browser_action,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_type",
        description=(
            "Type text key by key into an element on the current browser page, for fields that react to key "
            "presses (search boxes with suggestions). Prefer browser_fill for plain form fields."
        ),
        args_model=BrowserTypeArgs,
        plan=plan_browser_type,
        render=render_browser_action,
        browser_tool=True,
    ),
    ToolSpec(
        name="browser_screenshot",
        description="Take a screenshot of the current browser page; the image is returned to you.",
        args_model=BrowserScreenshotArgs,
        plan=plan_browser_screenshot,
        render=render_browser_screenshot,
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
        plan=plan_browser_extract_content,
        render=render_browser_extract_content,
        browser_tool=True,
    ),
    ToolSpec(
        name="navigate_and_get_all_visible_text",
        description=(
            "Open a URL in a real web browser (Chromium, JavaScript runs) and return all the visible text of the "
            "page, without scripts, styles or hidden elements."
        ),
        args_model=NavigateAndGetTextArgs,
        plan=plan_navigate_and_get_text,
        render=render_navigate_and_get_text,
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
    spec = find_spec(name, get_tool_specs(sessions=True, browser=True) if sessions else list(_SPECS))
    if spec is None:
        raise KeyError(name)
    return spec


def find_spec(name: str, specs: Sequence[ToolSpec]) -> ToolSpec | None:
    """The spec in ``specs`` called ``name`` (or with ``name`` among its aliases), or None."""
    for spec in specs:
        if name == spec.name or name in spec.aliases:
            return spec
    return None
