"""coderunner's own routes: health, languages, sessions, session files, and the job API."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import platform
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import psutil
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from coderunner import languages as language_table
from coderunner._version import __version__
from coderunner.errors import CodeRunnerError, InvalidRequestError
from coderunner.models import FileInfo, SessionInfo
from coderunner.server.jobs import JobSpec
from coderunner.server.routing import error_responses, json_model, state_of
from coderunner.server.state import ServerState
from coderunner.server.views import compact_result, execute_response, job_results, job_status
from coderunner.server.wire import (
    MAX_PATH_CHARS,
    PATH_PATTERN,
    CompactResult,
    ExecuteRequest,
    FileList,
    HealthResponse,
    InterruptResponse,
    JobCreateRequest,
    JobList,
    JobResults,
    JobStatusView,
    KillResponse,
    LanguageInfo,
    LanguagesResponse,
    SessionCreateRequest,
    SessionList,
    to_json,
)
from coderunner.specs import ExecRequest, SessionSpec

__all__ = ["router"]

router = APIRouter()

_ERRORS = error_responses(400, 401, 404, 422)
_CREATES = error_responses(400, 401, 404, 408, 413, 422, 429, 503)
_UPLOAD = error_responses(400, 401, 404, 408, 413, 422)
_LOOKUP = error_responses(401, 404)
_STATUSES = ("pending", "running", "completed", "failed", "timeout", "cancelled")


def _path_query(description: str) -> Any:
    return Query(
        min_length=1, max_length=MAX_PATH_CHARS, json_schema_extra={"pattern": PATH_PATTERN}, description=description
    )


_CHECK_TIMEOUT = 2.0


# -- health and languages --------------------------------------------------------------------------


def _host_figures(disk_path: str) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    figures: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": psutil.cpu_count() or 0,
        "cpu_percent": psutil.cpu_percent(interval=None),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "memory": {"total_bytes": vm.total, "available_bytes": vm.available, "percent": vm.percent},
    }
    try:
        du = psutil.disk_usage(disk_path)
        figures["disk"] = {"path": disk_path, "total_bytes": du.total, "free_bytes": du.free, "percent": du.percent}
    except OSError as exc:
        figures["disk"] = {"path": disk_path, "error": str(exc)}
    return figures


async def _check(name: str, probe: Any) -> tuple[dict[str, Any], Any]:
    try:
        value = await asyncio.wait_for(probe, _CHECK_TIMEOUT)
    except asyncio.TimeoutError:
        return {"status": "error", "detail": f"{name} did not answer within {_CHECK_TIMEOUT:g} s"}, None
    except Exception as exc:  # a health probe reports every failure instead of failing itself
        return {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}, None
    return {"status": "ok"}, value


@router.get("/health", response_model=HealthResponse, tags=["server"])
async def health(request: Request) -> Response:
    """Liveness and figures; open without an API key."""
    state = state_of(request)
    backend_check, sessions = await _check("the backend", state.backend.list_sessions())
    db_check, counts = await _check("the job database", state.jobs.counts())
    disk_path = state.settings.runtime_dir if os.path.isdir(state.settings.runtime_dir) else os.getcwd()
    backend_check["name"] = state.backend.name
    db_check["path"] = state.jobs.store.path
    store = state.jobs.store_health()  # readable is not enough: a full disk refuses the writes
    if store["status"] != "ok" and db_check["status"] == "ok":
        db_check.update(status="degraded", detail=store["reason"] or "job records wait in memory to be written")
    return json_model(
        HealthResponse(
            status="ok" if backend_check["status"] == db_check["status"] == "ok" else "degraded",
            version=__version__,
            backend=state.backend.name,
            uptime_seconds=round(state.uptime, 3),
            started_at=state.started_at,
            active_sessions=None if sessions is None else len(sessions),
            jobs={
                **(counts or {}),
                **store,
                "active_in_this_server": state.jobs.active_count,
                "max_running": state.jobs.max_jobs,
            },
            totals={
                "executions": state.executions,
                "sessions_created": state.sessions_created,
                "jobs_submitted": state.jobs.submitted,
                "jobs_recovered_at_start": state.jobs.recovered,
            },
            host=await asyncio.to_thread(_host_figures, disk_path),
            checks={"backend": backend_check, "job_db": db_check},
            auth_required=state.api_key is not None,
        )
    )


def _available(state: ServerState, language: str) -> bool | None:
    if state.backend.name != "inprocess":
        return None  # the backend's own machine decides; we cannot see it from here
    lang = language_table.by_name(language)
    if lang.program is None:
        return True
    return importlib.util.find_spec(lang.kernel_module) is not None and shutil.which(lang.program) is not None


@router.get("/languages", response_model=LanguagesResponse, responses=error_responses(401), tags=["server"])
async def languages(request: Request) -> Response:
    """Languages the server runs, with the aliases requests may use."""
    state = state_of(request)
    items = [
        LanguageInfo(
            name=lang,
            aliases=sorted(language_table.by_name(lang).aliases),
            available=_available(state, lang),
        )
        for lang in language_table.LANGUAGES
    ]
    return json_model(LanguagesResponse(languages=items))


# -- streaming execution ---------------------------------------------------------------------------


def _line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":")) + "\n"


@router.post(
    "/execute/stream",
    responses={
        **_CREATES,
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "One JSON object per line: {type: stdout|stderr, text} as output is produced, then "
            "{type: result, result: <the /execute answer>} or {type: error, detail, code}.",
        },
    },
    tags=["execution"],
)
async def execute_stream(body: ExecuteRequest, request: Request) -> Response:
    """Like ``/execute``, but streams stdout and stderr as newline-delimited JSON while the code runs.

    ``timeout`` is the execution's own limit here (nothing has to beat an HTTP timeout). If the
    client disconnects, the execution is interrupted.
    """
    state = state_of(request)
    run = ExecRequest(body.source, body.language)  # checked before a default session is made for it
    warning = None
    if body.session_id is not None:
        sid = body.session_id
        await state.backend.get_session(sid)  # an unknown session is a plain 404, before streaming starts
    else:
        sid, warning = await state.default_session()
    run = run.replace(timeout=body.timeout if body.timeout is not None else state.default_wire_timeout(sid))
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()

    def forward(kind: str) -> Callable[[str], None]:
        def push(text: str) -> None:
            # Backends may call back from their own thread (InProcess: the engine's): hop onto our loop.
            loop.call_soon_threadsafe(queue.put_nowait, (kind, text))

        return push

    async def events() -> AsyncIterator[str]:
        task = asyncio.ensure_future(
            state.backend.execute(sid, run, on_stdout=forward("stdout"), on_stderr=forward("stderr"))
        )
        # Queued after every output callback of the run, so the stream ends after its last chunk.
        task.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, None))
        try:
            while (item := await queue.get()) is not None:
                yield _line({"type": item[0], "text": item[1]})
            result = task.result()
            state.record(sid, result)
            if warning is not None:
                result = result.model_copy(update={"state_lost": True, "warnings": [warning, *result.warnings]})
            yield '{"type":"result","result":' + to_json(execute_response(result)) + "}\n"
        except CodeRunnerError as exc:
            yield _line({"type": "error", "detail": exc.message, "code": exc.code, "retryable": exc.retryable})
        finally:
            if not task.done():
                task.cancel()  # the client went away: the engine interrupts the code

    return StreamingResponse(events(), media_type="application/x-ndjson")


# -- sessions --------------------------------------------------------------------------------------


@router.post("/sessions", response_model=SessionInfo, status_code=201, responses=_CREATES, tags=["sessions"])
async def create_session(body: SessionCreateRequest, request: Request) -> Response:
    """Create a session: its own interpreters, directory and state."""
    spec = SessionSpec(
        body.language,
        env=body.env or {},
        lifetime=body.lifetime,
        idle_timeout=body.idle_timeout,
        metadata=body.metadata or {},
    )
    info = await state_of(request).create_session(spec)
    return json_model(info, status_code=201)


@router.get("/sessions", response_model=SessionList, responses=error_responses(401, 503), tags=["sessions"])
async def list_sessions(request: Request) -> Response:
    """Every live session."""
    return json_model(SessionList(sessions=await state_of(request).backend.list_sessions()))


@router.get("/sessions/{session_id}", response_model=SessionInfo, responses=_LOOKUP, tags=["sessions"])
async def get_session(session_id: str, request: Request) -> Response:
    """Describe a live session."""
    return json_model(await state_of(request).backend.get_session(session_id))


@router.delete("/sessions/{session_id}", response_model=KillResponse, responses=_LOOKUP, tags=["sessions"])
async def delete_session(session_id: str, request: Request) -> Response:
    """Close a session."""
    await state_of(request).close_session(session_id)
    return json_model(KillResponse(session_id=session_id))


@router.post("/sessions/{session_id}/interrupt", response_model=InterruptResponse, responses=_LOOKUP, tags=["sessions"])
async def interrupt_session(session_id: str, request: Request) -> Response:
    """Interrupt what runs in a session (state is kept); ``interrupted`` is false when nothing ran."""
    interrupted = await state_of(request).backend.interrupt(session_id)
    return json_model(InterruptResponse(session_id=session_id, interrupted=interrupted))


@router.get("/sessions/{session_id}/files", response_model=FileList, responses=_ERRORS, tags=["files"])
async def list_files(
    session_id: str, request: Request, path: Annotated[str, _path_query("Directory to list.")] = "."
) -> Response:
    """List a directory of the session (not recursive), folders first."""
    files = await state_of(request).backend.list_files(session_id, path)
    return json_model(FileList(session_id=session_id, path=path, files=files))


@router.get(
    "/sessions/{session_id}/files/content",
    responses={**_ERRORS, 200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes."}},
    tags=["files"],
)
async def read_file(session_id: str, request: Request, path: Annotated[str, _path_query("File to read.")]) -> Response:
    """The raw bytes of a file of the session."""
    data = await state_of(request).backend.download_file(session_id, path)
    return Response(data, media_type="application/octet-stream")


@router.put("/sessions/{session_id}/files/content", response_model=FileInfo, responses=_UPLOAD, tags=["files"])
async def write_file(
    session_id: str, request: Request, path: Annotated[str, _path_query("File to write.")]
) -> Response:
    """Write the raw request body to a file of the session (parents are created)."""
    data = await request.body()
    return json_model(await state_of(request).backend.upload_file(session_id, path, data))


# -- jobs ------------------------------------------------------------------------------------------


@router.post("/jobs", response_model=JobStatusView, status_code=202, responses=_CREATES, tags=["jobs"])
async def create_job(body: JobCreateRequest, request: Request) -> Response:
    """Queue code as a background job; answers at once with its id and status 'pending'."""
    record = await state_of(request).jobs.submit(
        JobSpec(
            code=body.code,
            language=body.language,
            timeout=body.timeout,
            session_id=body.session_id,
            capture_files=body.capture_files,
            working_directory=body.working_directory,
            env=body.environment_variables or {},
            metadata=body.metadata or {},
        )
    )
    return json_model(job_status(record), status_code=202)


@router.get("/jobs", response_model=JobList, responses=error_responses(400, 401, 422), tags=["jobs"])
async def list_jobs(
    request: Request,
    status: Annotated[
        str | None, Query(description="Only jobs with this status.", json_schema_extra={"enum": list(_STATUSES)})
    ] = None,
    session_id: Annotated[str | None, Query(description="Only jobs of this session.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first.")] = 50,
) -> Response:
    """Jobs and async tasks, newest first."""
    if status is not None and status not in _STATUSES:
        raise InvalidRequestError(f"Unknown status {status!r}; use one of: {', '.join(_STATUSES)}.")
    records = await state_of(request).jobs.list(status, session_id, limit)
    views = [job_status(r) for r in records]
    return json_model(JobList(jobs=views, count=len(views)))


@router.get("/jobs/{job_id}", response_model=JobStatusView, responses=_LOOKUP, tags=["jobs"])
@router.get("/jobs/{job_id}/status", response_model=JobStatusView, responses=_LOOKUP, tags=["jobs"])
async def get_job_status(job_id: str, request: Request) -> Response:
    """A job's status and timestamps."""
    return json_model(job_status(await state_of(request).jobs.get(job_id)))


@router.get("/jobs/{job_id}/results", response_model=JobResults, responses=_LOOKUP, tags=["jobs"])
async def get_job_results(job_id: str, request: Request) -> Response:
    """Everything a job produced (output fields are empty until it finished)."""
    return json_model(job_results(await state_of(request).jobs.get(job_id)))


@router.delete("/jobs/{job_id}", response_model=JobStatusView, responses=error_responses(401, 404, 422), tags=["jobs"])
async def cancel_job(
    job_id: str,
    request: Request,
    purge: Annotated[bool, Query(description="Also delete the record once the job has stopped.")] = False,
) -> Response:
    """Cancel a job (a running one is interrupted); finished jobs are left as they are unless ``purge``."""
    jobs = state_of(request).jobs
    record = await jobs.cancel(job_id)
    if purge:
        await jobs.delete(job_id)
    return json_model(job_status(record))


@router.get("/results/{job_id}", response_model=CompactResult, responses=_LOOKUP, tags=["jobs"])
async def get_compact_result(job_id: str, request: Request) -> Response:
    """The short form: status, stdout, stderr and the absolute paths of files created or modified."""
    return json_model(compact_result(await state_of(request).jobs.get(job_id)))
