"""Running a model's tool call: resolve the tool, read and validate its arguments, run it; never raise.

Whatever a model sends (an unknown tool, malformed JSON, a wrong type), :func:`dispatch` and
:func:`adispatch` answer with a :class:`~coderunner.tools.results.ToolResult` whose text tells
the model how to fix the call. :func:`default_runner` is the runner adapters use when given none.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import json
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from coderunner.tools.arguments import ToolArgs, parse_arguments
from coderunner.tools.results import MAX_TOOL_TEXT_CHARS, ToolResult, error_result
from coderunner.tools.specs import ToolSpec, find_spec, get_tool_specs

if TYPE_CHECKING:
    from coderunner.client import AsyncCodeRunner, CodeRunner

__all__ = ["adispatch", "default_runner", "dispatch", "is_async_runner"]


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
    spec = find_spec(tool_name, pool) if tool_name else None
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


# -- the process-wide default runner (adapters called without a runner) ----------------------------

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
