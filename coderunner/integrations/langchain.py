"""LangChain tools (langchain-core ``StructuredTool``) built from the one :mod:`coderunner.tools` list.

::

    from coderunner import CodeRunner
    from coderunner.integrations.langchain import get_langchain_tools

    tools = get_langchain_tools(CodeRunner())
    model = chat_model.bind_tools(tools)            # any tool-calling chat model
    ai = model.invoke("Plot sin(x) and describe it")
    for call in ai.tool_calls:
        tool_message = tools_by_name[call["name"]].invoke(call)   # a ToolMessage

Each tool's ``args_schema`` is the spec's JSON schema itself (a dict), so what the model
sees is exactly the canonical schema and validation happens once, in the dispatcher, with
error text written for the model. Tools use ``response_format="content_and_artifact"``: the
content is the result text, plus standard ``{"type": "image", "base64": ..., "mime_type": ...}``
blocks when images were produced (``images=False`` sends text only, for providers that take
no images in tool results); the artifact is the :class:`~coderunner.tools.ToolResult`.
Failures (bad arguments, errors in the code, coderunner errors) become a ``ToolMessage``
with ``status="error"``, never an exception that stops the agent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from coderunner.errors import MissingDependencyError
from coderunner.tools import (
    MAX_TOOL_TEXT_CHARS,
    ToolResult,
    ToolSpec,
    adispatch,
    default_runner,
    dispatch,
    get_tool_specs,
    is_async_runner,
)

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from coderunner.client import AsyncCodeRunner, CodeRunner

__all__ = ["get_langchain_tools", "tool_content"]


def _langchain() -> Any:
    try:
        from langchain_core import tools
    except ImportError as exc:  # the [langchain] extra is optional
        raise MissingDependencyError("langchain-core", "langchain", "The LangChain integration") from exc
    return tools


def tool_content(result: ToolResult, *, images: bool = True) -> str | list[dict[str, Any]]:
    """The ``ToolMessage`` content for a result: its text, or text and image blocks when it has images."""
    if not images or not result.images:
        return result.text
    blocks: list[dict[str, Any]] = [{"type": "text", "text": result.text}]
    blocks.extend({"type": "image", "base64": img.data, "mime_type": img.mime_type} for img in result.images)
    return blocks


def get_langchain_tools(
    runner: CodeRunner | AsyncCodeRunner | None = None,
    *,
    async_runner: AsyncCodeRunner | None = None,
    sessions: bool = False,
    images: bool = True,
    names: Iterable[str] | None = None,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
    browser: bool = False,
) -> list[BaseTool]:
    """Return the coderunner tools as LangChain ``StructuredTool`` objects.

    Args:
        runner: A :class:`CodeRunner` (used by ``invoke``, and in a worker thread by ``ainvoke``
            unless ``async_runner`` is given) or an :class:`AsyncCodeRunner` (``ainvoke`` only).
            None uses the process-wide runner built from the environment on first call.
        async_runner: An :class:`AsyncCodeRunner` for ``ainvoke``.
        sessions: Also offer ``start_session``/``close_session`` and a ``session_id`` argument.
        images: Put images in the tool message content as image blocks.
        names: Only these tools.
        max_chars: Cap on each result text.
        browser: Also offer the browser tools (need ``coderunner[browser]`` and Chromium).

    Raises:
        MissingDependencyError: langchain-core is not installed (``pip install 'coderunner-sandbox[langchain]'``).
    """
    lc_tools = _langchain()
    sync_runner: CodeRunner | None = None
    if runner is not None and is_async_runner(runner):
        async_runner = async_runner or runner  # type: ignore[assignment]
    else:
        sync_runner = runner  # type: ignore[assignment]
    only_async = sync_runner is None and async_runner is not None
    specs = get_tool_specs(sessions=sessions, names=names, browser=browser)

    def handle_error(exc: Exception) -> str | list[dict[str, Any]]:
        result = getattr(exc, "coderunner_result", None)
        return tool_content(result, images=images) if isinstance(result, ToolResult) else str(exc)

    def output(result: ToolResult) -> tuple[str | list[dict[str, Any]], ToolResult]:
        if result.is_error:
            # LangChain turns a ToolException into a ToolMessage with status="error" via handle_error.
            exc = lc_tools.ToolException(result.text)
            exc.coderunner_result = result
            raise exc
        return tool_content(result, images=images), result

    def build(spec: ToolSpec) -> BaseTool:
        def run(**kwargs: Any) -> tuple[str | list[dict[str, Any]], ToolResult]:
            target = sync_runner or default_runner()
            return output(dispatch(target, spec.name, kwargs, specs=specs, max_chars=max_chars))

        async def arun(**kwargs: Any) -> tuple[str | list[dict[str, Any]], ToolResult]:
            target = async_runner or sync_runner or default_runner()
            return output(await adispatch(target, spec.name, kwargs, specs=specs, max_chars=max_chars))

        tool: BaseTool = lc_tools.StructuredTool(
            name=spec.name,
            description=spec.description,
            args_schema=spec.parameters,
            func=None if only_async else run,
            coroutine=arun,
            response_format="content_and_artifact",
            handle_tool_error=handle_error,
        )
        return tool

    return [build(spec) for spec in specs]
