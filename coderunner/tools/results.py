"""What a tool call gives back to an agent: :class:`ToolResult`, its images as :class:`ToolImage`."""

from __future__ import annotations

import base64

from pydantic import BaseModel, ConfigDict, Field

from coderunner.models import ExecutionResult

__all__ = ["MAX_TOOL_TEXT_CHARS", "ToolImage", "ToolResult", "error_result"]

MAX_TOOL_TEXT_CHARS = 20_000
"""Default cap on the text a tool hands a model (head and tail kept); the runner's own cap is larger."""


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
