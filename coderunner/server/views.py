"""Pure functions that shape stored job records and results into the REST response models."""

from __future__ import annotations

from coderunner.models import ExecutionResult, SessionInfo
from coderunner.server.job_store import JobRecord
from coderunner.server.state import LedgerEntry, SessionState
from coderunner.server.wire import (
    CompactResult,
    ExecuteResponse,
    ExecutionTaskView,
    JobResults,
    JobStatusView,
    ResourceUsage,
    SessionUsageResponse,
    WireSessionInfo,
)

__all__ = [
    "compact_result",
    "execute_response",
    "job_results",
    "job_status",
    "session_usage",
    "task_view",
    "wire_session",
]


def execute_response(result: ExecutionResult) -> ExecuteResponse:
    """The ``/execute`` answer: the result plus ``output`` (built without re-validating the result)."""
    return ExecuteResponse.model_construct(**dict(result), output=result.stdout)


def job_status(record: JobRecord) -> JobStatusView:
    """The status view of a job."""
    return JobStatusView(
        job_id=record.job_id,
        kind="task" if record.kind == "task" else "job",
        status=record.status,
        is_complete=record.is_complete,
        session_id=record.session_id,
        language=record.language,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        cancel_requested=record.cancel_requested,
        error_message=record.error_message,
        metadata=record.metadata,
    )


def _usage(result: ExecutionResult) -> ResourceUsage:
    cpu_percent = None
    if result.cpu_time is not None and result.execution_time > 0:
        cpu_percent = round(100.0 * result.cpu_time / result.execution_time, 2)
    return ResourceUsage(cpu_percent=cpu_percent, cpu_time=result.cpu_time, peak_rss_bytes=result.peak_memory_bytes)


def job_results(record: JobRecord) -> JobResults:
    """Everything a job produced; output fields stay empty until it finished."""
    base = job_status(record).model_dump()
    result = record.result
    if result is None:
        return JobResults(**base, working_directory=record.working_directory)
    return JobResults(
        **base,
        stdout=result.stdout,
        stderr=result.stderr,
        exit_code=result.exit_code,
        error=result.error,
        outputs=result.outputs,
        truncated=result.truncated,
        files_created=record.absolute(result.files_created),
        files_modified=record.absolute(result.files_modified),
        execution_time_ms=round(result.execution_time * 1000.0, 3),
        resource_usage=_usage(result),
        working_directory=record.working_directory,
    )


def compact_result(record: JobRecord) -> CompactResult:
    """The short ``/results/{id}`` form."""
    result = record.result
    if result is None:
        return CompactResult(status=record.status, stderr=record.error_message or "")
    return CompactResult(
        status=record.status,
        stdout=result.stdout,
        stderr=result.stderr,
        files=record.absolute([*result.files_created, *result.files_modified]),
    )


def task_view(record: JobRecord) -> ExecutionTaskView:
    """InstaVM's ``/v1/executions/{id}`` view of a job."""
    result = record.result
    stdout = result.stdout if result is not None else ""
    stderr = result.stderr if result is not None else (record.error_message or "")
    return ExecutionTaskView(
        task_id=record.job_id,
        status=record.status,
        is_complete=record.is_complete,
        serialized_stdout=stdout,
        serialized_stderr=stderr,
        stdout=stdout,
        stderr=stderr,
        exit_code=None if result is None else result.exit_code,
        cpu_time=None if result is None else result.cpu_time,
        execution_time=None if result is None else result.execution_time,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        session_id=record.session_id,
        language=record.language,
        error=None if result is None else result.error,
        error_message=record.error_message,
        result=result,
    )


def wire_session(
    info: SessionInfo, entry: LedgerEntry | None, status: SessionState = "active", reason: str | None = None
) -> WireSessionInfo:
    """A session as the InstaVM routes describe it."""
    data = info.model_dump()
    data["status"] = status
    return WireSessionInfo(
        **data,
        vm_status=status,
        vm_lifetime_seconds=None if entry is None or entry.lifetime is None else int(entry.lifetime),
        memory_mb=None if entry is None else entry.memory_mb,
        vcpu_count=None if entry is None else entry.vcpu_count,
        reason=reason,
    )


def session_usage(
    info: SessionInfo, entry: LedgerEntry | None, status: SessionState, uptime: float
) -> SessionUsageResponse:
    """A session's usage figures."""
    peak = None if entry is None else entry.peak_memory_bytes
    return SessionUsageResponse(
        session_id=info.session_id,
        status=status,
        executions=0 if entry is None else entry.executions,
        cpu_time=0.0 if entry is None else round(entry.cpu_time, 6),
        peak_memory_bytes=peak,
        peak_memory_mb=None if peak is None else round(peak / 1_048_576, 2),
        execution_time=0.0 if entry is None else round(entry.execution_time, 6),
        uptime_seconds=round(max(uptime, 0.0), 3),
        created_at=info.created_at,
        last_activity_at=entry.last_activity_at
        if entry is not None and entry.last_activity_at
        else info.last_activity_at,
        memory_mb=None if entry is None else entry.memory_mb,
        vcpu_count=None if entry is None else entry.vcpu_count,
    )
