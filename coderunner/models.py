"""Frozen result and record models shared by the clients, the REST server and the tool adapters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorInfo",
    "ExecutionResult",
    "ExecutionStatus",
    "FileInfo",
    "Output",
    "SessionInfo",
    "TaskInfo",
    "TaskStatus",
]

ExecutionStatus = Literal["ok", "error", "timeout", "cancelled"]
TaskStatus = Literal["pending", "running", "completed", "failed", "timeout", "cancelled"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _DictAccess:
    """Mixin giving read-only ``obj["field"]`` access, as older coderunner/InstaVM examples use."""

    key_aliases: ClassVar[dict[str, str]] = {}

    def __getitem__(self, key: str) -> Any:
        name = self.key_aliases.get(key, key)
        if name not in type(self).model_fields and not isinstance(  # type: ignore[attr-defined]
            getattr(type(self), name, None), property
        ):
            raise KeyError(key)
        return getattr(self, name)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in self.key_aliases or key in type(self).model_fields  # type: ignore[attr-defined]
        )

    def get(self, key: str, default: Any = None) -> Any:
        """Return ``self[key]``, or ``default`` when there is no such field."""
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> Iterator[str]:
        """Iterate over the field names, like a mapping."""
        return iter(type(self).model_fields)  # type: ignore[attr-defined]


class ErrorInfo(_Frozen):
    """An error raised by the user's code (or the reason it could not finish)."""

    name: str = Field(description="Exception class or error kind, e.g. 'ZeroDivisionError', 'Timeout'.")
    value: str = Field(description="The error message.")
    traceback: str = Field(default="", description="The traceback as plain text (ANSI colour codes removed).")

    def __str__(self) -> str:
        return f"{self.name}: {self.value}" if self.value else self.name


class Output(_Frozen, _DictAccess):
    """One rich output (a displayed object or a cell's value), with every MIME representation it offered."""

    type: Literal["display_data", "execute_result"] = Field(
        description="'execute_result' for the value of the last expression, 'display_data' for display()/plots."
    )
    data: dict[str, Any] = Field(
        description="MIME type -> content. Text types are str; image/png and image/jpeg are base64 str; "
        "application/json is a JSON value."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Per-MIME metadata from the kernel.")

    @property
    def mime_types(self) -> list[str]:
        """The MIME types present, richest first as the kernel sent them."""
        return list(self.data)

    @property
    def text(self) -> str | None:
        """The text/plain representation, if any."""
        return self.data.get("text/plain")

    @property
    def html(self) -> str | None:
        """The text/html representation, if any."""
        return self.data.get("text/html")

    @property
    def markdown(self) -> str | None:
        """The text/markdown representation, if any."""
        return self.data.get("text/markdown")

    @property
    def png(self) -> str | None:
        """The image/png representation as base64, if any."""
        return self.data.get("image/png")

    @property
    def jpeg(self) -> str | None:
        """The image/jpeg representation as base64, if any."""
        return self.data.get("image/jpeg")

    @property
    def svg(self) -> str | None:
        """The image/svg+xml representation, if any."""
        return self.data.get("image/svg+xml")

    @property
    def json(self) -> Any:  # type: ignore[override,unused-ignore]
        """The application/json representation, if any."""
        return self.data.get("application/json")

    @property
    def is_image(self) -> bool:
        """True when the output carries a PNG, JPEG or SVG image."""
        return any(m in self.data for m in ("image/png", "image/jpeg", "image/svg+xml"))


class ExecutionResult(_Frozen, _DictAccess):
    """What one execution produced. User-code failures are reported here, never raised."""

    key_aliases: ClassVar[dict[str, str]] = {"output": "stdout"}

    status: ExecutionStatus = Field(
        description="'ok'; 'error' (exception or non-zero exit); 'timeout' (interrupted after the time limit); "
        "'cancelled' (interrupted on request)."
    )
    stdout: str = Field(default="", description="Standard output, capped (see 'truncated').")
    stderr: str = Field(default="", description="Standard error, kept apart from stdout, capped.")
    exit_code: int = Field(
        default=0,
        description="0 on success; 1 for an uncaught exception; the shell's status for bash; 124 on timeout; "
        "130 when cancelled; 128+N when the process died from signal N.",
    )
    error: ErrorInfo | None = Field(default=None, description="The error, when status is not 'ok'.")
    outputs: list[Output] = Field(default_factory=list, description="Rich outputs: images, HTML, JSON, values.")
    execution_time: float = Field(default=0.0, description="Wall-clock seconds the execution took.")
    cpu_time: float | None = Field(
        default=None, description="CPU seconds (user + system) the session's process used for this execution."
    )
    peak_memory_bytes: int | None = Field(
        default=None, description="Peak resident memory of the session's process during the execution, if known."
    )
    truncated: bool = Field(default=False, description="True when stdout or stderr was cut to the output cap.")
    stdout_file: str | None = Field(
        default=None,
        description="When stdout was truncated: session-relative path of the full text.",
    )
    stderr_file: str | None = Field(
        default=None,
        description="When stderr was truncated: session-relative path of the full text.",
    )
    files_created: list[str] = Field(
        default_factory=list, description="Files the execution created, relative to the session directory."
    )
    files_modified: list[str] = Field(
        default_factory=list, description="Files the execution changed, relative to the session directory."
    )
    state_lost: bool = Field(
        default=False, description="True when the session's interpreter had to be restarted: variables are gone."
    )
    warnings: list[str] = Field(
        default_factory=list, description="Things the caller should know, e.g. that the session was replaced."
    )
    language: str = Field(default="python", description="The normalised language the code ran as.")
    session_id: str | None = Field(default=None, description="The session the code ran in.")
    execution_count: int | None = Field(default=None, description="The kernel's execution counter, when it has one.")

    @property
    def success(self) -> bool:
        """True when status is 'ok'."""
        return self.status == "ok"

    @property
    def text(self) -> str | None:
        """The text/plain value of the last expression (like a notebook's Out[n]), if any."""
        for out in self.outputs:
            if out.type == "execute_result":
                return out.text
        return None

    @property
    def images(self) -> list[Output]:
        """The outputs that carry an image."""
        return [o for o in self.outputs if o.is_image]


class SessionInfo(_Frozen, _DictAccess):
    """A session: a working directory, environment, and one interpreter per language used in it."""

    session_id: str = Field(description="Opaque id used in every call on the session.")
    status: Literal["active", "closed", "expired"] = Field(description="'active' until closed or expired.")
    language: str = Field(description="The session's default language.")
    languages: list[str] = Field(default_factory=list, description="Languages whose interpreter is running.")
    working_dir: str = Field(description="Absolute path of the session's working directory (inside its backend).")
    created_at: datetime = Field(description="When the session was created (UTC).")
    last_activity_at: datetime = Field(description="When the session last ran code or moved a file (UTC).")
    expires_at: datetime | None = Field(default=None, description="Hard end of the session's lifetime, if set.")
    idle_timeout: float | None = Field(default=None, description="Seconds of inactivity after which it expires.")
    backend: str = Field(default="", description="Name of the backend that runs it.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Caller-supplied labels.")


class FileInfo(_Frozen, _DictAccess):
    """A file or directory inside a session's working directory."""

    path: str = Field(description="Path relative to the session directory, '/'-separated.")
    size: int = Field(description="Size in bytes (0 for directories).")
    is_dir: bool = Field(default=False, description="True for a directory.")
    modified_at: datetime = Field(description="Last modification time (UTC).")


class TaskInfo(_Frozen, _DictAccess):
    """An asynchronous execution (``execute_async``) and, once finished, its result."""

    task_id: str = Field(description="Id returned by execute_async.")
    status: TaskStatus = Field(description="pending, running, completed, failed, timeout or cancelled.")
    session_id: str | None = Field(default=None, description="The session the task runs in.")
    language: str = Field(default="python", description="The normalised language.")
    created_at: datetime = Field(description="When the task was submitted (UTC).")
    started_at: datetime | None = Field(default=None, description="When it started running (UTC).")
    finished_at: datetime | None = Field(default=None, description="When it finished (UTC).")
    result: ExecutionResult | None = Field(default=None, description="The result, once finished.")
    error_message: str | None = Field(
        default=None, description="Why the task could not run at all (infrastructure failure), if so."
    )

    @property
    def is_complete(self) -> bool:
        """True once the task has reached a final status."""
        return self.status not in ("pending", "running")
