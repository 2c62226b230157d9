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

Where things are (each module imports only those above it)::

    results.py     ToolResult, ToolImage, error_result: what a tool call gives back
    arguments.py   ToolArgs and each tool's argument model; parse_arguments (raw JSON -> dict)
    rendering.py   format_execution_result, RenderContext and the head/tail caps
    handlers.py    each tool's plan (-> the runner Call) and renderer (-> ToolResult)
    specs.py       ToolSpec and how it runs on a runner; the table of every tool; get_tool_specs
    dispatcher.py  dispatch / adispatch (a model's raw call -> ToolResult, never raising); default_runner
"""

from __future__ import annotations

from coderunner.tools.arguments import ToolArgs, parse_arguments
from coderunner.tools.dispatcher import adispatch, default_runner, dispatch, is_async_runner
from coderunner.tools.rendering import RenderContext, format_execution_result
from coderunner.tools.results import MAX_TOOL_TEXT_CHARS, ToolImage, ToolResult, error_result
from coderunner.tools.specs import ToolSpec, get_tool_spec, get_tool_specs

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
