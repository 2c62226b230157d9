"""LlamaIndex tools (``FunctionTool`` and a ``BaseToolSpec``) built from the one :mod:`coderunner.tools` list.

::

    from llama_index.core.agent.workflow import FunctionAgent
    from coderunner import CodeRunner
    from coderunner.integrations.llamaindex import CodeRunnerToolSpec

    agent = FunctionAgent(tools=CodeRunnerToolSpec(CodeRunner()).to_tool_list(), llm=llm)
    answer = await agent.run("What is the 100th prime? Use Python.")

Each tool's ``fn_schema`` is the spec's argument model, and its metadata reports the spec's
JSON schema unchanged (LlamaIndex's default metadata would drop ``additionalProperties``).
Calls return a ``ToolOutput`` whose ``is_error`` is set for bad arguments, errors in the code
and coderunner errors, with the text as a ``TextBlock`` and images as ``ImageBlock`` s;
``raw_output`` is the :class:`~coderunner.tools.ToolResult`. Nothing is raised into the agent.

This module needs ``llama-index-core`` (``pip install 'coderunner-sandbox[llamaindex]'``); importing it
without that raises :class:`~coderunner.errors.MissingDependencyError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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

try:
    from llama_index.core.base.llms.types import ImageBlock, TextBlock
    from llama_index.core.tools import FunctionTool, ToolMetadata, ToolOutput
    from llama_index.core.tools.tool_spec.base import BaseToolSpec
except ImportError as exc:  # the [llamaindex] extra is optional
    raise MissingDependencyError("llama-index-core", "llamaindex", "The LlamaIndex integration") from exc

if TYPE_CHECKING:
    from coderunner.client import AsyncCodeRunner, CodeRunner

__all__ = ["CodeRunnerFunctionTool", "CodeRunnerToolSpec", "get_llamaindex_tools", "to_tool_output"]


@dataclass
class _SpecMetadata(ToolMetadata):
    """Tool metadata that reports the spec's JSON schema exactly (the parity test relies on it)."""

    spec_parameters: dict[str, Any] | None = None

    def get_parameters_dict(self) -> dict[str, Any]:
        """The canonical JSON schema of the tool's arguments."""
        if self.spec_parameters is not None:
            return dict(self.spec_parameters)
        parameters: dict[str, Any] = super().get_parameters_dict()
        return parameters


def to_tool_output(tool_name: str, kwargs: dict[str, Any], result: ToolResult, *, images: bool = True) -> Any:
    """Convert a :class:`ToolResult` into a LlamaIndex ``ToolOutput`` (text block, image blocks, ``is_error``)."""
    blocks: list[Any] = [TextBlock(text=result.text)]
    if images:
        blocks.extend(ImageBlock(image=img.data.encode("ascii"), image_mimetype=img.mime_type) for img in result.images)
    return ToolOutput(
        tool_name=tool_name,
        blocks=blocks,
        raw_input={"args": (), "kwargs": kwargs},
        raw_output=result,
        is_error=result.is_error,
    )


class CodeRunnerFunctionTool(FunctionTool):
    """A ``FunctionTool`` whose functions return a :class:`ToolResult`, given back as a ``ToolOutput``."""

    include_images: bool = True

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Run the tool synchronously; returns a ``ToolOutput`` (never raises for the tool's own failures)."""
        result: ToolResult = self.fn(**kwargs)
        return to_tool_output(self.metadata.get_name(), kwargs, result, images=self.include_images)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Run the tool asynchronously; returns a ``ToolOutput``."""
        result: ToolResult = await self.async_fn(**kwargs)
        return to_tool_output(self.metadata.get_name(), kwargs, result, images=self.include_images)


def get_llamaindex_tools(
    runner: CodeRunner | AsyncCodeRunner | None = None,
    *,
    async_runner: AsyncCodeRunner | None = None,
    sessions: bool = False,
    images: bool = True,
    names: Iterable[str] | None = None,
    max_chars: int = MAX_TOOL_TEXT_CHARS,
    browser: bool = False,
) -> list[CodeRunnerFunctionTool]:
    """Return the coderunner tools as LlamaIndex ``FunctionTool`` objects (sync and async).

    Args:
        runner: A :class:`CodeRunner` (for ``call``, and in a worker thread for ``acall`` unless
            ``async_runner`` is given) or an :class:`AsyncCodeRunner` (for ``acall``). None uses
            the process-wide runner built from the environment on first call.
        async_runner: An :class:`AsyncCodeRunner` for ``acall`` (what agents use).
        sessions: Also offer ``start_session``/``close_session`` and a ``session_id`` argument.
        images: Return images as ``ImageBlock`` s.
        names: Only these tools.
        max_chars: Cap on each result text.
        browser: Also offer the browser tools (need ``coderunner[browser]`` and Chromium).
    """
    sync_runner: CodeRunner | None = None
    if runner is not None and is_async_runner(runner):
        async_runner = async_runner or runner  # type: ignore[assignment]
    else:
        sync_runner = runner  # type: ignore[assignment]
    specs = get_tool_specs(sessions=sessions, names=names, browser=browser)
    return [_build(spec, specs, sync_runner, async_runner, images, max_chars) for spec in specs]


def _build(
    spec: ToolSpec,
    specs: Sequence[ToolSpec],
    sync_runner: CodeRunner | None,
    async_runner: AsyncCodeRunner | None,
    images: bool,
    max_chars: int,
) -> CodeRunnerFunctionTool:
    def run(**kwargs: Any) -> ToolResult:
        return dispatch(sync_runner or default_runner(), spec.name, kwargs, specs=specs, max_chars=max_chars)

    async def arun(**kwargs: Any) -> ToolResult:
        target = async_runner or sync_runner or default_runner()
        return await adispatch(target, spec.name, kwargs, specs=specs, max_chars=max_chars)

    metadata = _SpecMetadata(
        name=spec.name, description=spec.description, fn_schema=spec.args_model, spec_parameters=spec.parameters
    )
    # With only an async runner, a sync call cannot use it (it belongs to another event loop).
    sync_fn = None if sync_runner is None and async_runner is not None else run
    tool = CodeRunnerFunctionTool(fn=sync_fn, async_fn=arun, metadata=metadata)
    tool.include_images = images
    return tool


class CodeRunnerToolSpec(BaseToolSpec):
    """The coderunner tools as a LlamaIndex tool spec: ``CodeRunnerToolSpec(runner).to_tool_list()``.

    Args:
        runner: See :func:`get_llamaindex_tools`.
        async_runner: See :func:`get_llamaindex_tools`.
        sessions: Also offer session tools and a ``session_id`` argument.
        images: Return images as ``ImageBlock`` s.
        max_chars: Cap on each result text.
        browser: Also offer the browser tools.
    """

    spec_functions = [spec.name for spec in get_tool_specs()]

    def __init__(
        self,
        runner: CodeRunner | AsyncCodeRunner | None = None,
        *,
        async_runner: AsyncCodeRunner | None = None,
        sessions: bool = False,
        images: bool = True,
        max_chars: int = MAX_TOOL_TEXT_CHARS,
        browser: bool = False,
    ) -> None:
        self.runner = runner
        self.async_runner = async_runner
        self.sessions = sessions
        self.images = images
        self.max_chars = max_chars
        self.spec_functions = [spec.name for spec in get_tool_specs(sessions=sessions, browser=browser)]

    def to_tool_list(
        self,
        spec_functions: list[Any] | None = None,
        func_to_metadata_mapping: dict[str, Any] | None = None,
    ) -> list[FunctionTool]:
        """Return the tools (only those named in ``spec_functions``, default all).

        ``func_to_metadata_mapping`` is not supported: the metadata comes from the specs.
        """
        if func_to_metadata_mapping:
            raise ValueError("func_to_metadata_mapping is not supported: tool metadata comes from coderunner.tools.")
        names = [f if isinstance(f, str) else f[0] for f in (spec_functions or self.spec_functions)]
        tools = get_llamaindex_tools(
            self.runner,
            async_runner=self.async_runner,
            sessions=self.sessions,
            images=self.images,
            names=names,
            max_chars=self.max_chars,
        )
        result: list[FunctionTool] = [*tools]
        return result
