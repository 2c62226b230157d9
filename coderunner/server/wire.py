"""Request and response models of the REST server: the InstaVM wire contract plus coderunner's own routes.

Results reuse the frozen models of :mod:`coderunner.models` (practice 9): ``/execute`` answers an
:class:`~coderunner.models.ExecutionResult` with InstaVM's extra ``output`` key, session routes answer
:class:`~coderunner.models.SessionInfo`. Request models ignore unknown keys (SDKs add fields over time)
but are strict about types: ``"timeout": "5"`` or ``"timeout": true`` is a 422, not a guess.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator
from pydantic_core import PydanticSerializationError

from coderunner import _core, languages
from coderunner.browser.actions import (
    BrowserAction,
    Click,
    ExtractContent,
    ExtractElements,
    Fill,
    Navigate,
    Screenshot,
    Scroll,
    TypeText,
    WaitFor,
)
from coderunner.browser.models import BrowserSessionInfo, ExtractedElement
from coderunner.models import ErrorInfo, ExecutionResult, FileInfo, Output, SessionInfo, TaskStatus

__all__ = [
    "MAX_PATH_CHARS",
    "NOT_BLANK",
    "PATH_PATTERN",
    "AsyncExecuteResponse",
    "BrowserActionRequest",
    "BrowserClickRequest",
    "BrowserCloseResponse",
    "BrowserContentRequest",
    "BrowserExtractRequest",
    "BrowserExtractResponse",
    "BrowserFillRequest",
    "BrowserNavigateRequest",
    "BrowserScreenshotRequest",
    "BrowserScreenshotResponse",
    "BrowserScrollRequest",
    "BrowserSessionList",
    "BrowserSessionRequest",
    "BrowserTypeRequest",
    "BrowserWaitRequest",
    "ClipRegion",
    "CompactResult",
    "DownloadResponse",
    "ErrorBody",
    "ExecuteRequest",
    "ExecuteResponse",
    "ExecutionTaskView",
    "FileList",
    "HealthResponse",
    "InterruptResponse",
    "JobCreateRequest",
    "JobList",
    "JobResults",
    "JobStatusView",
    "KillRequest",
    "KillResponse",
    "LanguageInfo",
    "LanguagesResponse",
    "ResourceUsage",
    "SessionCreateRequest",
    "SessionList",
    "SessionStatusResponse",
    "SessionUsageResponse",
    "UploadResponse",
    "WireSessionInfo",
    "WireSessionRequest",
    "to_json",
]


def to_json(model: BaseModel) -> str:
    """Serialise a model to JSON, escaping lone surrogates instead of failing on them.

    Strings from JSON requests may hold lone surrogates (a JSON escape such as backslash-u-d800);
    pydantic's fast serialiser refuses them, the stdlib encoder escapes them.
    """
    try:
        return model.model_dump_json()
    except PydanticSerializationError:
        return json.dumps(model.model_dump(mode="json"))


WIRE_MAX_TIMEOUT = 600
"""Largest ``timeout`` the InstaVM routes accept, in seconds."""
JOB_MAX_TIMEOUT = 86_400
"""Largest ``timeout`` of a job, in seconds."""

# -- field rules the OpenAPI document states (so a schema-valid request is never a 422) ---------------

_SPACE = r"\t-\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Python's str.isspace() set, spelled out: regex engines disagree on what \s covers.
NOT_BLANK = f"[^{_SPACE}]"
"""Pattern (unanchored) of a string with at least one non-whitespace character."""
MAX_PATH_CHARS = 4096
"""Longest file path the file routes accept (Linux's PATH_MAX); each part must also fit in 255 bytes."""
PATH_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"
"""Pattern of a file path: not blank, no NUL byte."""
_ENV_NAME = r"^[^=\x00]+$"
_NO_NUL = r"^[^\x00]*$"
_LANGUAGE_NAMES = sorted(languages.ALIASES)
# A session (or browser session) that ends within a second of its creation is a typo, not a plan.
_MIN_SESSION_SECONDS = 1


def _integral(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; strict mode still refuses strings and booleans.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _env_names(value: dict[str, Any] | None) -> dict[str, Any] | None:
    for key, item in (value or {}).items():
        if not key or "=" in key or "\x00" in key:
            raise ValueError(
                f"environment variable name {key!r} is not allowed: it must be non-empty, without '=' or NUL"
            )
        if isinstance(item, str) and "\x00" in item:
            raise ValueError(f"environment variable {key!r} contains a NUL byte")
    return value


WireInt = Annotated[int, BeforeValidator(_integral)]
"""An integer that also accepts an integral JSON number such as ``5.0``."""
# Optional WireInts carry their bounds inside: on the outside pydantic would write them into the
# OpenAPI document as non-standard "ge"/"le" keys.
_PositiveInt = Annotated[Annotated[int, Strict(), Field(ge=1)], BeforeValidator(_integral)]
_Quality = Annotated[Annotated[int, Strict(), Field(ge=0, le=100)], BeforeValidator(_integral)]
EnvVars = Annotated[
    dict[str, str],
    AfterValidator(_env_names),
    Field(
        json_schema_extra={
            "propertyNames": {"pattern": _ENV_NAME},
            "additionalProperties": {"type": "string", "pattern": _NO_NUL},
        }
    ),
]
"""Environment variables: names non-empty without ``=`` or NUL, values without NUL."""
LooseEnvVars = Annotated[
    dict[str, Any],
    AfterValidator(_env_names),
    Field(json_schema_extra={"propertyNames": {"pattern": _ENV_NAME}}),
]
"""Environment variables whose values are turned into strings (the InstaVM SDK may send numbers)."""
_LANGUAGE: dict[str, Any] = {"enum": _LANGUAGE_NAMES}
_LANGUAGE_OR_NULL: dict[str, Any] = {"enum": [*_LANGUAGE_NAMES, None]}
# Checked by validate_code (400, naming the rule): pydantic's own length check would hide a lone
# surrogate's clearer message.
_CODE: dict[str, Any] = {"pattern": NOT_BLANK, "maxLength": _core.MAX_CODE_CHARS}


def _encodable(value: Any) -> bool:
    """True when every string inside ``value`` is valid Unicode (no lone surrogates)."""
    if isinstance(value, str):
        if value.isascii():
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_encodable(v) for v in value)
    return True


class _Request(BaseModel):
    # Unknown keys are ignored: the InstaVM SDK and others send fields we do not use.
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="after")
    def _valid_unicode(self) -> _Request:
        # JSON can carry lone surrogates ("\ud800" escapes) that no file, process or kernel accepts.
        for name, value in self.__dict__.items():
            if not _encodable(value):
                raise ValueError(f"'{name}' contains invalid Unicode (a lone surrogate); send valid UTF-8 text")
        return self


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(_Response):
    """Every error answer: a message saying what to fix, and a stable code."""

    detail: str = Field(description="What went wrong and how to fix it.")
    code: str = Field(default="error", description="Stable machine-readable code (see coderunner.errors).")
    retryable: bool = Field(default=False, description="True when the same request may succeed later.")


# -- InstaVM wire: sessions ------------------------------------------------------------------------


class WireSessionRequest(_Request):
    """``POST /v1/sessions/session``: start a session (InstaVM's 'VM')."""

    api_key: str | None = Field(default=None, description="The API key (InstaVM sends it here, not in a header).")
    vm_lifetime_seconds: WireInt = Field(
        default=300, ge=20, le=86_400, strict=True, description="Seconds until the session expires (20..86400)."
    )
    memory_mb: _PositiveInt | None = Field(
        default=None, description="Requested memory; recorded, enforced only by isolating backends."
    )
    vcpu_count: _PositiveInt | None = Field(
        default=None, description="Requested vCPUs; recorded, enforced only by isolating backends."
    )
    metadata: dict[str, Any] | None = Field(default=None, description="Labels; values are stored as strings.")
    env: LooseEnvVars | None = Field(default=None, description="Environment variables; values become strings.")
    language: str = Field(
        default="python",
        json_schema_extra=_LANGUAGE,
        description="coderunner extension: the session's default language.",
    )
    idle_timeout: float | None = Field(
        default=None,
        ge=_MIN_SESSION_SECONDS,
        le=_core.MAX_SESSION_SECONDS,
        strict=True,
        description="coderunner extension: seconds of inactivity before expiry (1 s to 30 days).",
    )


class WireSessionInfo(SessionInfo):
    """A session as the InstaVM routes describe it: coderunner's SessionInfo plus InstaVM's keys."""

    vm_status: Literal["active", "expired", "closed"] = Field(description="Same as status (InstaVM's name).")
    vm_lifetime_seconds: int | None = Field(default=None, description="Lifetime asked for at creation.")
    memory_mb: int | None = Field(default=None, description="Memory asked for at creation, if any.")
    vcpu_count: int | None = Field(default=None, description="vCPUs asked for at creation, if any.")
    reason: str | None = Field(default=None, description="Why the session ended, when it has.")


class SessionStatusResponse(_Response):
    """``GET /v1/sessions/status/{id}``: whether a session is alive."""

    session_id: str = Field(description="The session asked about.")
    vm_status: Literal["active", "expired", "closed"] = Field(description="'active' while the session is alive.")
    status: Literal["active", "expired", "closed"] = Field(description="Same as vm_status.")
    reason: str | None = Field(default=None, description="Why the session ended, when it has.")
    expires_at: datetime | None = Field(default=None, description="Hard end of its lifetime, if any.")


class SessionUsageResponse(_Response):
    """``GET /v1/sessions/usage/{id}``: what a session consumed through this server."""

    session_id: str = Field(description="The session.")
    status: Literal["active", "expired", "closed"] = Field(description="Whether it is still alive.")
    executions: int = Field(description="Executions run in it through this server.")
    cpu_time: float = Field(description="CPU seconds its interpreters used in those executions.")
    peak_memory_bytes: int | None = Field(description="Largest peak resident memory of one execution, if known.")
    peak_memory_mb: float | None = Field(description="peak_memory_bytes in MiB.")
    execution_time: float = Field(description="Wall-clock seconds spent executing.")
    uptime_seconds: float = Field(description="Seconds since the session was created (until it ended).")
    created_at: datetime = Field(description="When it was created (UTC).")
    last_activity_at: datetime | None = Field(default=None, description="Last execution or file transfer (UTC).")
    memory_mb: int | None = Field(default=None, description="Memory requested at creation, if any.")
    vcpu_count: int | None = Field(default=None, description="vCPUs requested at creation, if any.")


class KillRequest(_Request):
    """``POST /kill``: stop a session."""

    session_id: str = Field(min_length=1, strict=True, description="The session to stop.")


class KillResponse(_Response):
    """Answer of ``POST /kill`` and ``DELETE /sessions/{id}``."""

    success: bool = Field(default=True, description="Always true (errors are HTTP errors).")
    session_id: str = Field(description="The session that was stopped.")
    status: Literal["closed"] = Field(default="closed", description="The session's new status.")


# -- InstaVM wire: execution -----------------------------------------------------------------------


class ExecuteRequest(_Request):
    """``POST /execute`` and ``POST /execute_async``."""

    # Exactly one of command/code: they are aliases.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["command"], "properties": {"command": {"type": "string"}}},
                {"required": ["code"], "properties": {"code": {"type": "string"}}},
            ]
        }
    )

    command: str | None = Field(
        default=None,
        strict=True,
        json_schema_extra=_CODE,
        description="The code to run (InstaVM's name); not blank.",
    )
    code: str | None = Field(
        default=None,
        strict=True,
        json_schema_extra=_CODE,
        description="Alias of command.",
    )
    session_id: str | None = Field(
        default=None, strict=True, description="Session to run in; omitted: the server's default session."
    )
    language: str | None = Field(
        default=None,
        strict=True,
        json_schema_extra=_LANGUAGE_OR_NULL,
        description="python (default), bash, javascript or an alias.",
    )
    timeout: float | None = Field(
        default=None,
        ge=1,
        le=WIRE_MAX_TIMEOUT,
        strict=True,
        description="Seconds (1..600). /execute answers slightly before this, reporting status 'timeout'.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ExecuteRequest:
        if self.command is None and self.code is None:
            raise ValueError("missing the code to run: send it as 'command' (or 'code')")
        if self.command is not None and self.code is not None:
            raise ValueError("'command' and 'code' are aliases; send only one of them")
        return self

    @property
    def source(self) -> str:
        """The code to run, whichever key carried it."""
        return self.command if self.command is not None else (self.code or "")


class ExecuteResponse(ExecutionResult):
    """``POST /execute``: the execution result, plus InstaVM's ``output`` (a copy of stdout)."""

    output: str = Field(default="", description="Same as stdout (InstaVM clients read this key).")


class AsyncExecuteResponse(_Response):
    """``POST /execute_async``: the task was accepted."""

    task_id: str = Field(description="Poll GET /v1/executions/{task_id} (or GET /jobs/{task_id}/status).")
    job_id: str = Field(description="Same as task_id: an async task is a job.")
    status: TaskStatus = Field(description="'pending' at first.")
    session_id: str | None = Field(default=None, description="The session it will run in.")


class ExecutionTaskView(_Response):
    """``GET /v1/executions/{task_id}``: InstaVM's view of an async task (or job)."""

    task_id: str = Field(description="The task id.")
    status: TaskStatus = Field(description="pending, running, completed, failed, timeout or cancelled.")
    is_complete: bool = Field(description="True once the status is final.")
    serialized_stdout: str = Field(default="", description="stdout as plain text (not base64, despite the name).")
    serialized_stderr: str = Field(default="", description="stderr as plain text.")
    stdout: str = Field(default="", description="Same as serialized_stdout.")
    stderr: str = Field(default="", description="Same as serialized_stderr.")
    exit_code: int | None = Field(default=None, description="Exit status once finished.")
    cpu_time: float | None = Field(default=None, description="CPU seconds used.")
    execution_time: float | None = Field(default=None, description="Wall-clock seconds of the execution.")
    created_at: datetime = Field(description="Submission time (UTC).")
    started_at: datetime | None = Field(default=None, description="Start time (UTC).")
    finished_at: datetime | None = Field(default=None, description="End time (UTC).")
    session_id: str | None = Field(default=None, description="The session it ran in.")
    language: str = Field(default="python", description="The language.")
    error: ErrorInfo | None = Field(default=None, description="The user's error, if the code failed.")
    error_message: str | None = Field(default=None, description="Why the task could not run at all, if so.")
    result: ExecutionResult | None = Field(default=None, description="The full result, once finished.")


# -- InstaVM wire: files ---------------------------------------------------------------------------


class UploadResponse(_Response):
    """``POST /upload``: where the file was written."""

    success: bool = Field(default=True, description="Always true (errors are HTTP errors).")
    session_id: str = Field(description="The session.")
    filename: str = Field(description="Basename of the uploaded file part.")
    path: str = Field(description="Where it was written, relative to the session directory.")
    size: int = Field(description="Bytes written.")
    modified_at: datetime = Field(description="Modification time (UTC).")


class DownloadResponse(_Response):
    """``POST /download``: the file's bytes, base64-encoded."""

    success: bool = Field(default=True, description="Always true (errors are HTTP errors).")
    session_id: str = Field(description="The session.")
    filename: str = Field(description="The path that was asked for.")
    content: str = Field(description="The file's bytes, base64-encoded.")
    encoding: Literal["base64"] = Field(default="base64", description="Encoding of content.")
    size: int = Field(description="Size in bytes (before encoding).")


# -- coderunner routes -----------------------------------------------------------------------------


class SessionCreateRequest(_Request):
    """``POST /sessions``: coderunner's own session creation (key in the header only)."""

    language: str = Field(
        default="python", strict=True, json_schema_extra=_LANGUAGE, description="Default language of the session."
    )
    env: EnvVars | None = Field(default=None, description="Environment variables.")
    lifetime: float | None = Field(
        default=None,
        ge=_MIN_SESSION_SECONDS,
        le=_core.MAX_SESSION_SECONDS,
        strict=True,
        description="Hard lifetime in seconds (1 s to 30 days).",
    )
    idle_timeout: float | None = Field(
        default=None,
        ge=_MIN_SESSION_SECONDS,
        le=_core.MAX_SESSION_SECONDS,
        strict=True,
        description="Idle expiry in seconds (1 s to 30 days).",
    )
    metadata: dict[str, str] | None = Field(default=None, description="Labels.")


class InterruptResponse(_Response):
    """``POST /sessions/{id}/interrupt``."""

    session_id: str = Field(description="The session.")
    interrupted: bool = Field(description="False when nothing was running.")


class LanguageInfo(_Response):
    """One language the server can run."""

    name: str = Field(description="Normalised name used in results.")
    aliases: list[str] = Field(description="Other names accepted in requests.")
    available: bool | None = Field(description="Whether its interpreter is installed (None: the backend decides).")


class LanguagesResponse(_Response):
    """``GET /languages``."""

    languages: list[LanguageInfo] = Field(description="Supported languages.")
    default: str = Field(default="python", description="Language used when a request names none.")


class HealthResponse(_Response):
    """``GET /health`` (no API key needed)."""

    status: Literal["ok", "degraded"] = Field(description="'degraded' when a component check failed.")
    version: str = Field(description="coderunner version.")
    backend: str = Field(description="Name of the backend that runs code.")
    uptime_seconds: float = Field(description="Seconds since the server started.")
    started_at: datetime = Field(description="When the server started (UTC).")
    active_sessions: int | None = Field(description="Live sessions (None if the backend did not answer).")
    jobs: dict[str, int | str | None] = Field(
        description="Job counts by status, plus the job store's own state: 'status' ('ok', or 'degraded' while "
        "the store refuses writes, e.g. a full disk), 'reason' and 'unsaved' (job records kept in memory until "
        "they can be written)."
    )
    totals: dict[str, int] = Field(description="Counters since start: executions, sessions_created, jobs_submitted.")
    host: dict[str, Any] = Field(description="Host CPU, memory and disk figures.")
    checks: dict[str, dict[str, Any]] = Field(description="Per-component checks: {status: ok|degraded|error, detail}.")
    auth_required: bool = Field(description="Whether routes other than /health need X-API-Key.")


class JobCreateRequest(_Request):
    """``POST /jobs``: run code in the background with a persistent record."""

    code: str = Field(strict=True, json_schema_extra=_CODE, description="The code to run; not blank.")
    language: str = Field(
        default="python", strict=True, json_schema_extra=_LANGUAGE, description="python, bash, javascript or an alias."
    )
    timeout: float | None = Field(
        default=None, gt=0, le=JOB_MAX_TIMEOUT, strict=True, description="Seconds (default: the server's)."
    )
    capture_files: bool = Field(default=True, strict=True, description="Report the files the job created and modified.")
    working_directory: str | None = Field(
        default=None,
        strict=True,
        description="Directory to run in, relative to the session directory (created if missing). In an existing "
        "session the previous directory is restored afterwards.",
    )
    environment_variables: dict[str, str] | None = Field(
        default=None,
        # Names become shell `export` lines: POSIX identifiers only (checked by the job manager, 400).
        json_schema_extra={
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": {"type": "string", "pattern": _NO_NUL},
        },
        description="Extra environment variables (names are POSIX identifiers). In the job's own session they are "
        "set at start; in an existing session (python, bash) they are exported before the code runs and stay set "
        "there.",
    )
    metadata: dict[str, Any] | None = Field(default=None, description="Your labels, returned with the job.")
    session_id: str | None = Field(
        default=None,
        strict=True,
        description="Run in this existing session. Omitted: a fresh session is created for the job and closed "
        "when it ends.",
    )


class ResourceUsage(_Response):
    """CPU and memory a job used."""

    cpu_percent: float | None = Field(description="cpu_time / wall time x 100 (can exceed 100 with threads).")
    cpu_time: float | None = Field(description="CPU seconds (user + system).")
    peak_rss_bytes: int | None = Field(description="Peak resident memory during the job.")


class JobStatusView(_Response):
    """``GET /jobs/{id}/status`` and items of ``GET /jobs``."""

    job_id: str = Field(description="The job id.")
    kind: Literal["job", "task"] = Field(description="'task' when submitted through /execute_async.")
    status: TaskStatus = Field(description="pending, running, completed, failed, timeout or cancelled.")
    is_complete: bool = Field(description="True once the status is final.")
    session_id: str | None = Field(default=None, description="The session it runs in (once known).")
    language: str = Field(description="The normalised language.")
    created_at: datetime = Field(description="Submission time (UTC).")
    started_at: datetime | None = Field(default=None, description="Start time (UTC).")
    finished_at: datetime | None = Field(default=None, description="End time (UTC).")
    cancel_requested: bool = Field(default=False, description="True after DELETE /jobs/{id}.")
    error_message: str | None = Field(
        default=None,
        description="Why it could not run, or why it failed; while pending, what it waits for (e.g. room for its "
        "session when the server is at max_sessions).",
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Your labels.")


class JobResults(JobStatusView):
    """``GET /jobs/{id}/results``: the job's record with everything it produced."""

    stdout: str = Field(default="", description="Standard output (capped; see truncated).")
    stderr: str = Field(default="", description="Standard error (capped).")
    exit_code: int | None = Field(default=None, description="Exit status once finished.")
    error: ErrorInfo | None = Field(default=None, description="The user's error, if the code failed.")
    outputs: list[Output] = Field(default_factory=list, description="Rich outputs (images, HTML, JSON).")
    truncated: bool = Field(default=False, description="True when an output stream was cut to the cap.")
    files_created: list[str] = Field(default_factory=list, description="Absolute paths of files the job created.")
    files_modified: list[str] = Field(default_factory=list, description="Absolute paths of files it changed.")
    execution_time_ms: float | None = Field(default=None, description="Wall-clock milliseconds of the execution.")
    resource_usage: ResourceUsage | None = Field(default=None, description="CPU and memory figures.")
    working_directory: str | None = Field(default=None, description="The directory it ran in, if one was asked.")


class JobList(_Response):
    """``GET /jobs``."""

    jobs: list[JobStatusView] = Field(description="Newest first.")
    count: int = Field(description="len(jobs).")


class CompactResult(_Response):
    """``GET /results/{id}``: the short form."""

    status: TaskStatus = Field(description="The job's status.")
    stdout: str = Field(default="", description="Standard output.")
    stderr: str = Field(default="", description="Standard error.")
    files: list[str] = Field(default_factory=list, description="Absolute paths of files created or modified.")


class FileList(_Response):
    """``GET /sessions/{id}/files``."""

    session_id: str = Field(description="The session.")
    path: str = Field(description="The directory listed, relative to the session directory.")
    files: list[FileInfo] = Field(description="Its entries, folders first.")


class SessionList(_Response):
    """``GET /sessions``."""

    sessions: list[SessionInfo] = Field(description="Live sessions.")


# -- InstaVM wire: browser -------------------------------------------------------------------------

_MAX_BROWSER_WAIT_MS = 600_000
"""Longest wait a browser request may ask for (10 minutes), so one call cannot hold a page for ever."""
_MAX_USER_AGENT = 4096
_ELEMENT_CONDITIONS = ("visible", "hidden", "attached", "detached")
_WAIT_CONDITIONS = (*_ELEMENT_CONDITIONS, "load", "domcontentloaded", "networkidle")
_SELECTOR: dict[str, Any] = {"pattern": NOT_BLANK}
# A scheme and '://', about:blank, or a data: URL with its comma (about: and data: need no slashes).
_URL = r"^[A-Za-z][A-Za-z0-9+.\-]*://|^[Aa][Bb][Oo][Uu][Tt]:[Bb][Ll][Aa][Nn][Kk]$|^[Dd][Aa][Tt][Aa]:[^,]*,"
_UA_CHAR = r"[^\x00-\x08\x0a-\x1f\x7f]"
_UA_SOLID = r"[^\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_USER_AGENT = f"^{_UA_CHAR}*{_UA_SOLID}{_UA_CHAR}*$"


def _user_agent(value: str) -> str:
    # Chromium refuses a User-Agent with line breaks or NUL (a 503 from deep inside the browser before).
    if any(c != "\t" and (c < " " or c == "\x7f") for c in value):
        raise ValueError("'user_agent' must be printable text: control characters (other than tab) are not allowed")
    if not value.strip():
        raise ValueError("'user_agent' must not be blank; omit it to keep the browser's own")
    return value


class BrowserSessionRequest(_Request):
    """``POST /v1/browser/sessions/``: open an isolated browser session."""

    viewport_width: WireInt = Field(default=1920, ge=1, le=10_000, strict=True, description="Page width in CSS pixels.")
    viewport_height: WireInt = Field(
        default=1080, ge=1, le=10_000, strict=True, description="Page height in CSS pixels."
    )
    user_agent: Annotated[str, AfterValidator(_user_agent)] | None = Field(
        default=None,
        strict=True,
        max_length=_MAX_USER_AGENT,
        json_schema_extra={"pattern": _USER_AGENT},
        description="User-Agent override: printable text, not blank (no control characters but tab).",
    )
    idle_timeout: float | None = Field(
        default=None,
        ge=_MIN_SESSION_SECONDS,
        le=_core.MAX_SESSION_SECONDS,
        description="coderunner extension: seconds of inactivity before the session closes (1 s to 30 days).",
    )


class BrowserSessionList(_Response):
    """``GET /v1/browser/sessions/``: the live browser sessions."""

    sessions: list[BrowserSessionInfo] = Field(description="Every live browser session of the server's backend.")
    count: int = Field(description="Number of sessions listed.")


class BrowserCloseResponse(_Response):
    """``DELETE /v1/browser/sessions/{id}``: the session is closed (also when it already was)."""

    session_id: str = Field(description="The browser session that was closed.")
    closed: bool = Field(default=True, description="Always True.")


class BrowserActionRequest(_Request):
    """The body of a browser interaction: it becomes one :mod:`coderunner.browser.actions` action."""

    action_type: ClassVar[type[BrowserAction[Any]]]
    """The action this body asks for; its fields are read from the body's fields of the same names."""

    def action(self) -> BrowserAction[Any]:
        """The action (InvalidRequestError / InvalidSelectorError, a 400, for values the schema lets through)."""
        return self.action_type.from_wire(self.model_dump())


class BrowserNavigateRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/navigate``; without ``session_id`` (local mode) the default session."""

    action_type = Navigate

    url: str = Field(
        min_length=1, strict=True, json_schema_extra={"pattern": _URL}, description="The URL to open (with its scheme)."
    )
    wait_timeout: float = Field(
        default=30_000, gt=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for the load event."
    )
    session_id: str | None = Field(default=None, strict=True, description="Browser session; omitted: the default.")


class BrowserClickRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/click``."""

    action_type = Click

    selector: str = Field(
        min_length=1,
        strict=True,
        json_schema_extra=_SELECTOR,
        description="CSS (or Playwright) selector of the element.",
    )
    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    force: bool = Field(default=False, strict=True, description="Skip the actionability checks.")
    timeout: float = Field(
        default=30_000, gt=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for the element."
    )


class BrowserTypeRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/type``."""

    action_type = TypeText

    selector: str = Field(
        min_length=1, strict=True, json_schema_extra=_SELECTOR, description="Selector of the element to type into."
    )
    text: str = Field(strict=True, description="The text, typed key by key.")
    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    delay: float = Field(default=100, ge=0, le=10_000, description="Milliseconds between key presses.")
    timeout: float = Field(
        default=30_000, gt=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for the element."
    )


class BrowserFillRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/fill``."""

    action_type = Fill

    selector: str = Field(
        min_length=1, strict=True, json_schema_extra=_SELECTOR, description="Selector of the form field."
    )
    value: str = Field(strict=True, description="The new value.")
    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    timeout: float = Field(
        default=30_000, gt=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for the element."
    )


class BrowserScrollRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/scroll``: an element into view, or the page to x/y."""

    action_type = Scroll

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["selector"], "properties": {"selector": {"type": "string"}}},
                {"required": ["x"], "properties": {"x": {"type": "number"}}},
                {"required": ["y"], "properties": {"y": {"type": "number"}}},
            ]
        }
    )

    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    selector: str | None = Field(
        default=None, strict=True, json_schema_extra=_SELECTOR, description="Element to scroll into view."
    )
    x: float | None = Field(default=None, description="Horizontal page offset in CSS pixels.")
    y: float | None = Field(default=None, description="Vertical page offset in CSS pixels.")


class BrowserWaitRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/wait``."""

    action_type = WaitFor

    # visible, hidden, attached and detached are about an element: they need a selector.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"condition": {"enum": list(_ELEMENT_CONDITIONS)}}, "required": ["condition"]},
            "then": {"properties": {"selector": {"type": "string"}}, "required": ["selector"]},
        }
    )

    condition: str = Field(
        min_length=1,
        strict=True,
        json_schema_extra={"enum": list(_WAIT_CONDITIONS)},
        description="visible, hidden, attached or detached (with a selector); load, domcontentloaded or networkidle.",
    )
    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    selector: str | None = Field(
        default=None, strict=True, json_schema_extra=_SELECTOR, description="The element, for an element condition."
    )
    timeout: float = Field(default=30_000, gt=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait.")


class ClipRegion(_Request):
    """A region of the page in CSS pixels."""

    x: float = Field(description="Left edge.")
    y: float = Field(description="Top edge.")
    width: float = Field(gt=0, description="Width (positive).")
    height: float = Field(gt=0, description="Height (positive).")


class BrowserScreenshotRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/screenshot``."""

    action_type = Screenshot

    # quality is a JPEG setting: with it, format must say jpeg.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"quality": {"type": "integer"}}, "required": ["quality"]},
            "then": {"properties": {"format": {"const": "jpeg"}}, "required": ["format"]},
        }
    )

    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    full_page: bool = Field(default=True, strict=True, description="Capture the whole page, not only the viewport.")
    format: Literal["png", "jpeg"] = Field(default="png", description="Image format.")
    clip: ClipRegion | None = Field(default=None, description="Region {x, y, width, height} in CSS pixels.")
    quality: _Quality | None = Field(default=None, description="JPEG quality (0..100); only with format 'jpeg'.")


class BrowserScreenshotResponse(_Response):
    """The screenshot, base64-encoded."""

    session_id: str = Field(description="The browser session.")
    screenshot: str = Field(description="The image, base64-encoded.")
    format: str = Field(description="'png' or 'jpeg'.")


class BrowserExtractRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/extract``."""

    action_type = ExtractElements

    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    selector: str | None = Field(
        default=None, strict=True, json_schema_extra=_SELECTOR, description="Elements to read (default: the body)."
    )
    attributes: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, description="Attribute names to read (default: all)."
    )


class BrowserExtractResponse(_Response):
    """The elements matching the selector."""

    session_id: str = Field(description="The browser session.")
    elements: list[ExtractedElement] = Field(description="Tag, text and attributes of each element.")
    count: int = Field(description="Number of elements.")


class BrowserContentRequest(BrowserActionRequest):
    """``POST /v1/browser/interactions/content``: readable text, interactive elements and anchors.

    With ``url`` the page is opened first; without ``session_id`` (local mode) the server's default
    browser session is used.
    """

    action_type = ExtractContent

    session_id: str | None = Field(default=None, strict=True, description="Browser session; omitted: the default.")
    url: str | None = Field(
        default=None,
        strict=True,
        min_length=1,
        json_schema_extra={"pattern": _URL},
        description="Open this URL first (local mode requires it).",
    )
    include_interactive: bool = Field(default=True, strict=True, description="List links, buttons and fields.")
    include_anchors: bool = Field(default=True, strict=True, description="Map text snippets to selectors.")
    max_anchors: WireInt = Field(default=50, ge=0, le=1000, strict=True, description="Most anchors returned.")
    wait_timeout: float = Field(
        default=30_000, gt=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for ``url`` to load."
    )
