"""OpenAI function calling: tool schemas for Chat Completions and the Responses API, and running the model's calls.

A complete loop with the ``openai`` client (Chat Completions)::

    from openai import OpenAI
    from coderunner import CodeRunner
    from coderunner.integrations.openai import get_tools, run_tool_calls

    client, runner = OpenAI(), CodeRunner()
    messages = [{"role": "user", "content": "What is 2**100? Use Python."}]
    while True:
        reply = client.chat.completions.create(model="gpt-4.1", messages=messages, tools=get_tools())
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            break
        messages.extend(run_tool_calls(runner, message.tool_calls))

This module does not import the ``openai`` package: it reads tool calls from the SDK's
objects, from plain dicts, or from any OpenAI-compatible client, so it works without the
``[openai]`` extra. Schemas come from :mod:`coderunner.tools`; strict-mode rewriting is the
only OpenAI-specific schema logic and lives here.

Images: Chat Completions tool messages accept text only, so with ``images=True``
:func:`run_tool_calls` appends one ``user`` message with ``image_url`` parts after the tool
messages (a tool message must directly answer its call, so images cannot sit in between).
The Responses API accepts images in ``function_call_output.output`` (``input_image`` items),
so there the images go into the output itself. The default is text only (images are
mentioned in the text), which works with every model.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from coderunner.tools import (
    MAX_TOOL_TEXT_CHARS,
    ToolResult,
    ToolSpec,
    adispatch,
    default_runner,
    dispatch,
    error_result,
    get_tool_specs,
)

if TYPE_CHECKING:
    from coderunner.client import AsyncCodeRunner, CodeRunner

__all__ = [
    "ParsedToolCall",
    "aexecute_tool",
    "arun_tool_calls",
    "execute_tool",
    "get_tools",
    "image_message",
    "parse_tool_call",
    "run_tool_calls",
    "strict_schema",
    "tool_result_message",
]

Api = Literal["chat", "responses"]


def get_tools(
    api: Api = "chat",
    *,
    strict: bool = False,
    sessions: bool = False,
    names: Iterable[str] | None = None,
    browser: bool = False,
) -> list[dict[str, Any]]:
    """Return the coderunner tools as OpenAI function tool definitions.

    Args:
        api: ``"chat"`` for Chat Completions (``{"type": "function", "function": {...}}``) or
            ``"responses"`` for the Responses API (``{"type": "function", "name": ..., ...}``).
        strict: Use OpenAI structured-outputs strict mode (see :func:`strict_schema`).
        sessions: Also offer ``start_session``/``close_session`` and a ``session_id`` argument.
        names: Only these tools.
        browser: Also offer the browser tools (need ``coderunner[browser]`` and Chromium).

    Raises:
        ValueError: ``api`` is not "chat" or "responses", or a name is unknown.
    """
    if api not in ("chat", "responses"):
        raise ValueError(f"api must be 'chat' or 'responses', not {api!r}.")
    tools: list[dict[str, Any]] = []
    for spec in get_tool_specs(sessions=sessions, names=names, browser=browser):
        parameters = strict_schema(spec.parameters) if strict else spec.parameters
        if api == "chat":
            function: dict[str, Any] = {"name": spec.name, "description": spec.description, "parameters": parameters}
            if strict:
                function["strict"] = True
            tools.append({"type": "function", "function": function})
        else:
            tools.append(
                {
                    "type": "function",
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": parameters,
                    "strict": strict,
                }
            )
    return tools


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite a tool schema for OpenAI strict mode.

    Strict mode requires every property to be listed in ``required`` and
    ``additionalProperties: false`` on every object, and does not take ``default``. Optional
    arguments therefore become nullable (a null means "not given"; the tool models treat it
    so) and their default moves into the description.
    """
    out = copy.deepcopy(dict(schema))
    _strictify(out)
    return out


def _strictify(node: dict[str, Any]) -> None:
    if node.get("type") == "object" and isinstance(node.get("properties"), dict):
        required = set(node.get("required", []))
        for name, prop in node["properties"].items():
            _strictify(prop)
            if "default" in prop:
                default = prop.pop("default")
                prop["description"] = f"{prop.get('description', '')} Default: {json.dumps(default)}.".strip()
            if name not in required:
                _make_nullable(prop)
        node["required"] = list(node["properties"])
        node["additionalProperties"] = False
    items = node.get("items")
    if node.get("type") == "array" and isinstance(items, dict):
        _strictify(items)


def _make_nullable(prop: dict[str, Any]) -> None:
    kind = prop.get("type")
    if isinstance(kind, str):
        prop["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            kind.append("null")
    else:
        inner = dict(prop)
        description = inner.pop("description", None)
        prop.clear()
        prop["anyOf"] = [inner, {"type": "null"}]
        if description is not None:
            prop["description"] = description
        return
    if "enum" in prop and None not in prop["enum"]:
        prop["enum"] = [*prop["enum"], None]


@dataclass(frozen=True)
class ParsedToolCall:
    """The parts of a model's tool call that matter here, whichever API or type it came from."""

    api: Api
    call_id: str
    name: Any
    arguments: Any


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def parse_tool_call(tool_call: Any) -> ParsedToolCall:
    """Read a tool call: a Chat Completions tool call, a Responses ``function_call`` item, or their dicts.

    Never raises: missing parts come back as None/"" and make :func:`execute_tool` return an
    error result.
    """
    function = _get(tool_call, "function")
    if function is not None:
        return ParsedToolCall(
            "chat", str(_get(tool_call, "id") or ""), _get(function, "name"), _get(function, "arguments")
        )
    if _get(tool_call, "type") == "function_call" or _get(tool_call, "call_id") is not None:
        return ParsedToolCall(
            "responses", str(_get(tool_call, "call_id") or ""), _get(tool_call, "name"), _get(tool_call, "arguments")
        )
    return ParsedToolCall(
        "chat", str(_get(tool_call, "id") or ""), _get(tool_call, "name"), _get(tool_call, "arguments")
    )


def _bad_call(parsed: ParsedToolCall) -> ToolResult | None:
    if not isinstance(parsed.name, str) or not parsed.name:
        return error_result("The tool call has no function name; call one of the offered tools by name.")
    return None


def execute_tool(
    runner: CodeRunner | None,
    tool_call: Any,
    *,
    specs: Sequence[ToolSpec] | None = None,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
) -> ToolResult:
    """Run one tool call from an OpenAI model. Never raises for bad model output.

    Args:
        runner: The runner to use; None uses the process-wide runner built from the
            environment (``CODERUNNER_BACKEND``), shared across calls so state persists.
        tool_call: A Chat Completions tool call, a Responses ``function_call`` item, or a dict of either.
        specs: Tools to accept (default: every tool, including session tools).
        max_chars: Cap on the result text.

    Returns:
        The tool result; invalid JSON arguments, an unknown tool, missing or mistyped
        arguments give an error result the model can read and correct.
    """
    parsed = parse_tool_call(tool_call)
    bad = _bad_call(parsed)
    if bad is not None:
        return bad
    return dispatch(runner or default_runner(), parsed.name, parsed.arguments, specs=specs, max_chars=max_chars)


async def aexecute_tool(
    runner: AsyncCodeRunner | CodeRunner | None,
    tool_call: Any,
    *,
    specs: Sequence[ToolSpec] | None = None,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
) -> ToolResult:
    """Async twin of :func:`execute_tool` (a sync runner, or None, is driven in a worker thread)."""
    parsed = parse_tool_call(tool_call)
    bad = _bad_call(parsed)
    if bad is not None:
        return bad
    return await adispatch(runner or default_runner(), parsed.name, parsed.arguments, specs=specs, max_chars=max_chars)


def tool_result_message(tool_call: Any, result: ToolResult, *, images: bool = False) -> dict[str, Any]:
    """Build the message that answers ``tool_call`` (its API is detected from its shape).

    Chat Completions: ``{"role": "tool", "tool_call_id": ..., "content": text}`` (text only;
    see :func:`image_message` for the images). Responses: ``{"type": "function_call_output",
    "call_id": ..., "output": text}``, or, with ``images=True`` and images present, an output
    list of ``input_text`` and ``input_image`` items.
    """
    parsed = parse_tool_call(tool_call)
    if parsed.api == "chat":
        return {"role": "tool", "tool_call_id": parsed.call_id, "content": result.text}
    output: str | list[dict[str, Any]] = result.text
    if images and result.images:
        output = [{"type": "input_text", "text": result.text}]
        output.extend({"type": "input_image", "image_url": image.data_url} for image in result.images)
    return {"type": "function_call_output", "call_id": parsed.call_id, "output": output}


def image_message(results: Iterable[ToolResult]) -> dict[str, Any] | None:
    """A Chat Completions ``user`` message carrying the results' images, or None when there are none.

    Send it after all the tool messages of a turn.
    """
    parts: list[dict[str, Any]] = []
    for result in results:
        for image in result.images:
            parts.append({"type": "image_url", "image_url": {"url": image.data_url}})
    if not parts:
        return None
    intro = {"type": "text", "text": f"The {len(parts)} image(s) produced by the tool calls above, for you to inspect:"}
    return {"role": "user", "content": [intro, *parts]}


def _messages(calls: Sequence[Any], results: Sequence[ToolResult], images: bool) -> list[dict[str, Any]]:
    messages = [tool_result_message(call, result, images=images) for call, result in zip(calls, results, strict=True)]
    if images and calls and parse_tool_call(calls[0]).api == "chat":
        extra = image_message(results)
        if extra is not None:
            messages.append(extra)
    return messages


def run_tool_calls(
    runner: CodeRunner | None,
    tool_calls: Iterable[Any] | None,
    *,
    images: bool = False,
    specs: Sequence[ToolSpec] | None = None,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
) -> list[dict[str, Any]]:
    """Run a turn's tool calls in order and return the messages/items to send back. Never raises.

    Calls run one after another because they share session state (the second may use a
    variable the first defined). Responses output items that are not function calls are skipped.

    Args:
        runner: The runner (None: the process-wide one from the environment).
        tool_calls: ``message.tool_calls`` (Chat) or ``response.output`` (Responses), or dicts.
        images: Send images to the model (see the module docstring for how, per API).
        specs: Tools to accept (default: every tool).
        max_chars: Cap on each result text.
    """
    calls = [c for c in (tool_calls or []) if _is_function_call(c)]
    results = [execute_tool(runner, call, specs=specs, max_chars=max_chars) for call in calls]
    return _messages(calls, results, images)


async def arun_tool_calls(
    runner: AsyncCodeRunner | CodeRunner | None,
    tool_calls: Iterable[Any] | None,
    *,
    images: bool = False,
    specs: Sequence[ToolSpec] | None = None,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
) -> list[dict[str, Any]]:
    """Async twin of :func:`run_tool_calls`."""
    calls = [c for c in (tool_calls or []) if _is_function_call(c)]
    results = [await aexecute_tool(runner, call, specs=specs, max_chars=max_chars) for call in calls]
    return _messages(calls, results, images)


def _is_function_call(item: Any) -> bool:
    kind = _get(item, "type")
    # Responses output also holds messages and reasoning items; Chat tool calls are "function"
    # (custom tools have no JSON arguments and are not ours).
    return kind in (None, "function", "function_call")
