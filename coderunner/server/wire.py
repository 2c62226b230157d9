"""Request and response models of the REST server: the InstaVM wire contract plus coderunner's own routes.

Results reuse the frozen models of :mod:`coderunner.models` (practice 9): ``/execute`` answers an
:class:`~coderunner.models.ExecutionResult` with InstaVM's extra ``output`` key, session routes answer
:class:`~coderunner.models.SessionInfo`. Request models ignore unknown keys (SDKs add fields over time)
but are strict about types: ``"timeout": "5"`` or ``"timeout": true`` is a 422, not a guess.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticSerializationError

from coderunner.browser.models import BrowserSessionInfo, ExtractedElement
from coderunner.models import ErrorInfo, ExecutionResult, FileInfo, Output, SessionInfo, TaskStatus

__all__ = [
    "AsyncExecuteResponse",
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
    vm_lifetime_seconds: int = Field(
        default=300, ge=20, le=86_400, strict=True, description="Seconds until the session expires (20..86400)."
    )
    memory_mb: int | None = Field(
        default=None, ge=1, strict=True, description="Requested memory; recorded, enforced only by isolating backends."
    )
    vcpu_count: int | None = Field(
        default=None, ge=1, strict=True, description="Requested vCPUs; recorded, enforced only by isolating backends."
    )
    metadata: dict[str, Any] | None = Field(default=None, description="Labels; values are stored as strings.")
    env: dict[str, Any] | None = Field(default=None, description="Environment variables; values become strings.")
    language: str = Field(default="python", description="coderunner extension: the session's default language.")
    idle_timeout: float | None = Field(
        default=None, gt=0, strict=True, description="coderunner extension: seconds of inactivity before expiry."
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

    command: str | None = Field(default=None, strict=True, description="The code to run (InstaVM's name).")
    code: str | None = Field(default=None, strict=True, description="Alias of command.")
    session_id: str | None = Field(
        default=None, strict=True, description="Session to run in; omitted: the server's default session."
    )
    language: str | None = Field(
        default=None, strict=True, description="python (default), bash, javascript or an alias."
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
        if self.command is not None and self.code is not None and self.command != self.code:
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

    language: str = Field(default="python", strict=True, description="Default language of the session.")
    env: dict[str, str] | None = Field(default=None, description="Environment variables.")
    lifetime: float | None = Field(default=None, gt=0, strict=True, description="Hard lifetime in seconds.")
    idle_timeout: float | None = Field(default=None, gt=0, strict=True, description="Idle expiry in seconds.")
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
    jobs: dict[str, int] = Field(description="Job counts by status.")
    totals: dict[str, int] = Field(description="Counters since start: executions, sessions_created, jobs_submitted.")
    host: dict[str, Any] = Field(description="Host CPU, memory and disk figures.")
    checks: dict[str, dict[str, Any]] = Field(description="Per-component checks: {status: ok|error, detail}.")
    auth_required: bool = Field(description="Whether routes other than /health need X-API-Key.")


class JobCreateRequest(_Request):
    """``POST /jobs``: run code in the background with a persistent record."""

    code: str = Field(strict=True, description="The code to run.")
    language: str = Field(default="python", strict=True, description="python, bash, javascript or an alias.")
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
        description="Extra environment variables. In the job's own session they are set at start; in an existing "
        "session (python, bash) they are exported before the code runs and stay set there.",
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
    error_message: str | None = Field(default=None, description="Why it could not run, or why it failed.")
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


class BrowserSessionRequest(_Request):
    """``POST /v1/browser/sessions/``: open an isolated browser session."""

    viewport_width: int = Field(default=1920, ge=1, le=10_000, strict=True, description="Page width in CSS pixels.")
    viewport_height: int = Field(default=1080, ge=1, le=10_000, strict=True, description="Page height in CSS pixels.")
    user_agent: str | None = Field(default=None, strict=True, description="User-Agent override.")
    idle_timeout: float | None = Field(
        default=None, gt=0, description="coderunner extension: seconds of inactivity before the session closes."
    )


class BrowserSessionList(_Response):
    """``GET /v1/browser/sessions/``: the live browser sessions."""

    sessions: list[BrowserSessionInfo] = Field(description="Every live browser session of the server's backend.")
    count: int = Field(description="Number of sessions listed.")


class BrowserCloseResponse(_Response):
    """``DELETE /v1/browser/sessions/{id}``: the session is closed (also when it already was)."""

    session_id: str = Field(description="The browser session that was closed.")
    closed: bool = Field(default=True, description="Always True.")


class BrowserNavigateRequest(_Request):
    """``POST /v1/browser/interactions/navigate``; without ``session_id`` (local mode) the default session."""

    url: str = Field(min_length=1, strict=True, description="The URL to open.")
    wait_timeout: float = Field(
        default=30_000, ge=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for the load event."
    )
    session_id: str | None = Field(default=None, strict=True, description="Browser session; omitted: the default.")


class BrowserClickRequest(_Request):
    """``POST /v1/browser/interactions/click``."""

    selector: str = Field(min_length=1, strict=True, description="CSS (or Playwright) selector of the element.")
    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    force: bool = Field(default=False, strict=True, description="Skip the actionability checks.")
    timeout: float = Field(
        default=30_000, ge=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for the element."
    )


class BrowserTypeRequest(_Request):
    """``POST /v1/browser/interactions/type``."""

    selector: str = Field(min_length=1, strict=True, description="Selector of the element to type into.")
    text: str = Field(strict=True, description="The text, typed key by key.")
    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    delay: float = Field(default=100, ge=0, le=10_000, description="Milliseconds between key presses.")
    timeout: float = Field(
        default=30_000, ge=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for the element."
    )


class BrowserFillRequest(_Request):
    """``POST /v1/browser/interactions/fill``."""

    selector: str = Field(min_length=1, strict=True, description="Selector of the form field.")
    value: str = Field(strict=True, description="The new value.")
    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    timeout: float = Field(
        default=30_000, ge=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for the element."
    )


class BrowserScrollRequest(_Request):
    """``POST /v1/browser/interactions/scroll``: an element into view, or the page to x/y."""

    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    selector: str | None = Field(default=None, strict=True, description="Element to scroll into view.")
    x: float | None = Field(default=None, description="Horizontal page offset in CSS pixels.")
    y: float | None = Field(default=None, description="Vertical page offset in CSS pixels.")


class BrowserWaitRequest(_Request):
    """``POST /v1/browser/interactions/wait``."""

    condition: str = Field(
        min_length=1, strict=True, description="visible, hidden (with a selector), load or networkidle."
    )
    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    selector: str | None = Field(default=None, strict=True, description="The element, for visible/hidden.")
    timeout: float = Field(default=30_000, ge=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait.")


class BrowserScreenshotRequest(_Request):
    """``POST /v1/browser/interactions/screenshot``."""

    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    full_page: bool = Field(default=True, strict=True, description="Capture the whole page, not only the viewport.")
    format: Literal["png", "jpeg"] = Field(default="png", description="Image format.")
    clip: dict[str, float] | None = Field(default=None, description="Region {x, y, width, height} in CSS pixels.")
    quality: int | None = Field(default=None, ge=0, le=100, strict=True, description="JPEG quality (0..100).")


class BrowserScreenshotResponse(_Response):
    """The screenshot, base64-encoded."""

    session_id: str = Field(description="The browser session.")
    screenshot: str = Field(description="The image, base64-encoded.")
    format: str = Field(description="'png' or 'jpeg'.")


class BrowserExtractRequest(_Request):
    """``POST /v1/browser/interactions/extract``."""

    session_id: str = Field(min_length=1, strict=True, description="The browser session.")
    selector: str | None = Field(default=None, strict=True, description="Elements to read (default: the body).")
    attributes: list[str] | None = Field(default=None, description="Attributes to read (default: all).")


class BrowserExtractResponse(_Response):
    """The elements matching the selector."""

    session_id: str = Field(description="The browser session.")
    elements: list[ExtractedElement] = Field(description="Tag, text and attributes of each element.")
    count: int = Field(description="Number of elements.")


class BrowserContentRequest(_Request):
    """``POST /v1/browser/interactions/content``: readable text, interactive elements and anchors.

    With ``url`` the page is opened first; without ``session_id`` (local mode) the server's default
    browser session is used.
    """

    session_id: str | None = Field(default=None, strict=True, description="Browser session; omitted: the default.")
    url: str | None = Field(default=None, strict=True, description="Open this URL first (local mode requires it).")
    include_interactive: bool = Field(default=True, strict=True, description="List links, buttons and fields.")
    include_anchors: bool = Field(default=True, strict=True, description="Map text snippets to selectors.")
    max_anchors: int = Field(default=50, ge=0, le=1000, strict=True, description="Most anchors returned.")
    wait_timeout: float = Field(
        default=30_000, ge=0, le=_MAX_BROWSER_WAIT_MS, description="Milliseconds to wait for ``url`` to load."
    )
