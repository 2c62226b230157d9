"""The InstaVM wire routes (cloud and local mode), exactly as the unmodified ``instavm`` SDK calls them.

See ``shared/INSTAVM-WIRE.md`` for the contract. Choices of our own, where the contract is silent:

* ``/execute`` without ``session_id`` (InstaVM's local mode) runs in the server's default session,
  created on first use and replaced (with a warning in the result) after it expired.
* ``timeout`` is also the client's HTTP timeout: the answer is sent slightly before it, with
  ``status: "timeout"``. Without ``timeout``, the SDK's default of 300 s is assumed, or the
  session's ``vm_lifetime_seconds`` (the SDK uses the same number for both) or the server's
  ``CODERUNNER_TIMEOUT`` when smaller.
* ``/upload``: ``remote_path`` names a directory when it is empty, ``.``, ends with ``/`` or is an
  existing directory of the session; the file then keeps the basename of the uploaded file part.
  Otherwise ``remote_path`` is the file's own path. Paths are relative to the session directory
  (absolute ones only inside it); anything else is a 400. ``recursive`` is accepted and ignored:
  the SDK always sends one file.
* Browser routes live in :mod:`coderunner.server.routes_browser`.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from coderunner.errors import FileNotFoundInSessionError, InvalidRequestError
from coderunner.server.jobs import JobSpec
from coderunner.server.middleware import AUTH_IN_BODY, keys_match
from coderunner.server.routing import error_responses, json_model, state_of
from coderunner.server.views import execute_response, session_usage, task_view, wire_session
from coderunner.server.wire import (
    MAX_PATH_CHARS,
    PATH_PATTERN,
    AsyncExecuteResponse,
    DownloadResponse,
    ExecuteRequest,
    ExecuteResponse,
    ExecutionTaskView,
    KillRequest,
    KillResponse,
    SessionStatusResponse,
    SessionUsageResponse,
    UploadResponse,
    WireSessionInfo,
    WireSessionRequest,
)
from coderunner.specs import ExecRequest, SessionSpec

__all__ = ["router"]

router = APIRouter(tags=["InstaVM-compatible"])

_ERRORS = error_responses(400, 401, 404, 408, 413, 422)
_CREATES = error_responses(400, 401, 404, 408, 413, 422, 429, 503)
_LOOKUP = error_responses(401, 404)


def _strings(values: dict[str, object] | None) -> dict[str, str] | None:
    if not values:
        return None
    return {str(k): v if isinstance(v, str) else str(v) for k, v in values.items()}


# -- sessions --------------------------------------------------------------------------------------


@router.post("/v1/sessions/session", response_model=WireSessionInfo, responses=_CREATES)
async def create_session(body: WireSessionRequest, request: Request) -> Response:
    """Start a session (InstaVM's VM); the SDK sends its API key in this body, not in a header."""
    state = state_of(request)
    if request.scope.get(AUTH_IN_BODY) and (state.api_key is None or not keys_match(body.api_key, state.api_key)):
        detail = "Missing API key: send it as 'api_key' in the body or in the X-API-Key header."
        if body.api_key:
            detail = "Invalid API key."
        return JSONResponse({"detail": detail, "code": "authentication", "retryable": False}, status_code=401)
    spec = SessionSpec(
        body.language,
        env=_strings(body.env) or {},
        lifetime=float(body.vm_lifetime_seconds),
        idle_timeout=body.idle_timeout,
        metadata=_strings(body.metadata) or {},
    )
    info = await state.create_session(spec, memory_mb=body.memory_mb, vcpu_count=body.vcpu_count)
    return json_model(wire_session(info, state.ledger.get(info.session_id)))


@router.get("/v1/sessions/session/{session_id}", response_model=WireSessionInfo, responses=_LOOKUP)
async def get_session(session_id: str, request: Request) -> Response:
    """Describe a session (also an ended one this server still remembers)."""
    state = state_of(request)
    status, info, reason = await state.session_state(session_id)
    return json_model(wire_session(info, state.ledger.get(session_id), status, reason))


@router.get("/v1/sessions/status/{session_id}", response_model=SessionStatusResponse, responses=_LOOKUP)
async def session_status(session_id: str, request: Request) -> Response:
    """``vm_status`` is 'active' while the session lives, 'expired' or 'closed' after; 404 if never seen."""
    status, info, reason = await state_of(request).session_state(session_id)
    return json_model(
        SessionStatusResponse(
            session_id=session_id,
            vm_status=status,
            status=status,
            reason=reason,
            expires_at=info.expires_at,
        )
    )


@router.get("/v1/sessions/usage/{session_id}", response_model=SessionUsageResponse, responses=_LOOKUP)
async def session_usage_route(session_id: str, request: Request) -> Response:
    """CPU seconds, peak memory, executions and uptime of a session, counted by this server."""
    state = state_of(request)
    status, info, _ = await state.session_state(session_id)
    entry = state.ledger.get(session_id)
    end = entry.ended_at if entry is not None and entry.ended_at is not None else None
    uptime = ((end or datetime.now(timezone.utc)) - info.created_at).total_seconds()
    return json_model(session_usage(info, entry, status, uptime))


@router.post("/kill", response_model=KillResponse, responses=_ERRORS)
async def kill(body: KillRequest, request: Request) -> Response:
    """Stop a session and free its interpreters (its directory is removed)."""
    await state_of(request).close_session(body.session_id)
    return json_model(KillResponse(session_id=body.session_id))


# -- execution -------------------------------------------------------------------------------------


@router.post("/execute", response_model=ExecuteResponse, responses=_CREATES)
async def execute(body: ExecuteRequest, request: Request) -> Response:
    """Run code and answer with the result, before the client's HTTP timeout (``timeout``)."""
    state = state_of(request)
    run = ExecRequest(body.source, body.language)  # checked before a default session is made for it
    warning = None
    if body.session_id is not None:
        sid = body.session_id
    else:
        sid, warning = await state.default_session()
    client_timeout = body.timeout if body.timeout is not None else state.default_wire_timeout(sid)
    result = await state.execute_before(sid, run, client_timeout)
    if warning is not None:
        result = result.model_copy(update={"state_lost": True, "warnings": [warning, *result.warnings]})
    return json_model(execute_response(result))


@router.post("/execute_async", response_model=AsyncExecuteResponse, responses=_CREATES)
async def execute_async(body: ExecuteRequest, request: Request) -> Response:
    """Queue code as a task (a job) and answer with its id at once."""
    state = state_of(request)
    run = ExecRequest(body.source, body.language)  # checked before a default session is made for it
    sid = body.session_id if body.session_id is not None else (await state.default_session())[0]
    record = await state.jobs.submit(
        JobSpec(code=run.code, language=run.language, timeout=body.timeout, kind="task", session_id=sid)
    )
    return json_model(
        AsyncExecuteResponse(task_id=record.job_id, job_id=record.job_id, status=record.status, session_id=sid)
    )


@router.get("/v1/executions/{task_id}", response_model=ExecutionTaskView, responses=_LOOKUP)
async def get_execution(task_id: str, request: Request) -> Response:
    """An async task's state; ``is_complete`` turns true with its output."""
    return json_model(task_view(await state_of(request).jobs.get(task_id)))


# -- files -----------------------------------------------------------------------------------------


def _basename(filename: str | None) -> str:
    # The SDK sends the caller's full local path (POSIX or Windows) as the part's filename.
    if not filename:
        return ""
    name = PureWindowsPath(filename).name if "\\" in filename else PurePosixPath(filename).name
    return "" if name in (".", "..") else name


@router.post("/upload", response_model=UploadResponse, responses=_CREATES)
async def upload(
    request: Request,
    file: Annotated[UploadFile, File(description="The file; its filename's basename is kept.")],
    remote_path: Annotated[
        str,
        Form(
            max_length=MAX_PATH_CHARS,
            json_schema_extra={"pattern": r"^[^\x00]*$"},
            description="Target file path, or a directory (see the module notes).",
        ),
    ] = "",
    session_id: Annotated[str | None, Form(description="Session; omitted: the default session.")] = None,
    recursive: Annotated[str, Form(description="Accepted for compatibility; ignored.")] = "false",
) -> Response:
    """Write an uploaded file into the session directory."""
    state = state_of(request)
    sid = session_id or (await state.default_session())[0]
    name = _basename(file.filename)
    target = remote_path.strip()
    is_dir = target in ("", ".", "./") or target.endswith("/")
    if not is_dir:
        try:
            await state.backend.list_files(sid, target)
            is_dir = True
        except FileNotFoundInSessionError:
            is_dir = False
    if is_dir:
        if not name:
            raise InvalidRequestError(
                "remote_path names a directory and the file part has no filename: give remote_path as a file path."
            )
        target = name if target in ("", ".", "./") else f"{target.rstrip('/')}/{name}"
    data = await file.read()
    info = await state.backend.upload_file(sid, target, data)
    return json_model(
        UploadResponse(
            session_id=sid,
            filename=name or PurePosixPath(target).name,
            path=info.path,
            size=info.size,
            modified_at=info.modified_at,
        )
    )


@router.post("/download", response_model=DownloadResponse, responses=_CREATES)
async def download(
    request: Request,
    filename: Annotated[
        str,
        Form(
            min_length=1,
            max_length=MAX_PATH_CHARS,
            json_schema_extra={"pattern": PATH_PATTERN},
            description="Path of the file, relative to the session directory.",
        ),
    ],
    session_id: Annotated[str | None, Form(description="Session; omitted: the default session.")] = None,
) -> Response:
    """Return a file of the session directory, base64-encoded in ``content``."""
    state = state_of(request)
    sid = session_id or (await state.default_session())[0]
    data = await state.backend.download_file(sid, filename)
    return json_model(
        DownloadResponse(
            session_id=sid, filename=filename, content=base64.b64encode(data).decode("ascii"), size=len(data)
        )
    )
