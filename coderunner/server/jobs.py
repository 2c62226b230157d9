"""Background jobs with persistent records: the runner that executes them (the SQLite store is job_store.py).

One record serves two views: coderunner's job API (``/jobs/...``) and InstaVM's async tasks
(``/execute_async`` + ``/v1/executions/{id}``). Records live in SQLite (stdlib ``sqlite3``, WAL mode);
every database call runs on one dedicated thread, so the event loop never blocks on disk and the
connection is never shared between threads.

Lifecycle of a job: ``pending`` (queued behind ``max_jobs`` running ones, or waiting for room for its
own session while the backend is at ``max_sessions``: ``error_message`` says so, and the wait is bounded
by the job's timeout) -> ``running`` (its session exists) -> one of ``completed``, ``failed``,
``timeout``, ``cancelled``. A server restart keeps finished records; records left ``pending``/``running``
by a server that died are marked ``failed`` with the reason at startup. Finished records older than the
retention period are deleted.

A full disk: a job that cannot be recorded is refused (:class:`JobStoreFullError`, HTTP 503, retryable).
A job that is already recorded never depends on the disk: its later states (``running``, its result)
are kept in memory when the store refuses them, served from there, and written by a background retry
with backoff once the store takes writes again; meanwhile :meth:`JobManager.store_health` says degraded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shlex
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from coderunner import _core
from coderunner.backend import AsyncBackend
from coderunner.config import Settings
from coderunner.errors import (
    CapacityError,
    CodeRunnerError,
    InvalidRequestError,
    PathError,
    TaskNotFoundError,
)
from coderunner.models import ExecutionResult, SessionInfo, TaskStatus
from coderunner.server.job_store import JobRecord, JobStore, JobStoreFullError
from coderunner.specs import ExecRequest, SessionSpec
from coderunner.tasks import task_status_for

__all__ = [
    "JobManager",
    "JobSpec",
    "validate_env_names",
    "validate_working_directory",
]

log = logging.getLogger(__name__)

# After a cancel, how long DELETE /jobs/{id} waits for the job to settle before answering.
_CANCEL_SETTLE = 2.0
# How long a job's execution may outlive its timeout (interrupt grace, result shaping) before the
# owned session is force-closed by the shutdown path; only used for the session lifetime.
_SESSION_LIFETIME_MARGIN = 120.0
# Backoff of the background retry that writes the records a full disk refused.
_RETRY_FIRST = 0.5
_RETRY_MAX = 10.0
# A job waiting for room for its session tries again this often (growing), and waits this long when it
# has no timeout of its own.
_ROOM_POLL_FIRST = 0.2
_ROOM_POLL_MAX = 2.0
_ROOM_WAIT_DEFAULT = 3600.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class JobSpec:
    """A validated job request."""

    code: str
    language: str | None
    timeout: float | None
    kind: str = "job"
    session_id: str | None = None
    capture_files: bool = True
    working_directory: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Active:
    """In-memory state of a job this server is running."""

    task: asyncio.Task[None] | None = None
    phase: str = "pending"  # pending -> starting (-> waiting for room -> starting) -> running -> done
    session_id: str | None = None
    cancel_requested: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # set by cancel(): wakes a job waiting for room


ResultListener = Callable[[str, ExecutionResult], None]


def validate_working_directory(value: str | None) -> str | None:
    """Check a job's ``working_directory``: relative, inside the session, normalised ('' and '.' mean none).

    Raises:
        PathError: It is absolute, climbs out with '..', or contains a NUL byte.
    """
    if value is None:
        return None
    if "\x00" in value:
        raise PathError("working_directory contains a NUL byte.")
    pure = PurePosixPath(value.strip())
    if pure.is_absolute() or ".." in pure.parts:
        raise PathError(
            f"working_directory {value!r} must be a relative path inside the session directory, e.g. 'work/run1'."
        )
    text = pure.as_posix()
    return None if text in ("", ".") else text


def validate_env_names(env: Mapping[str, str]) -> None:
    """Check that every environment variable name of a job is a POSIX identifier, in every language.

    Names end up in shell ``export`` lines and in kernel environments; anything else (``X; rm -rf ~ #``)
    would be code, not a name.

    Raises:
        InvalidRequestError: A name is not ``[A-Za-z_][A-Za-z0-9_]*``; the message names the rule.
    """
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise InvalidRequestError(
                f"Invalid environment variable name {name!r}: names must be POSIX identifiers, "
                "[A-Za-z_][A-Za-z0-9_]* (letters, digits and underscores, not starting with a digit)."
            )


def _prelude(language: str, directory: str | None, env: Mapping[str, str], remember: bool) -> str | None:
    """Code that moves into ``directory`` (an absolute path) and exports ``env``; None if nothing to do.

    Every name and value reaches the generated code quoted for its language (names are also
    re-checked here), so nothing in them can run.
    """
    if directory is None and not env:
        return None
    validate_env_names(env)
    if language == "python":
        lines = ["import os as __cr_os"]
        if directory is not None:
            if remember:
                lines.append("__cr_job_prev_cwd = __cr_os.getcwd()")
            lines += [f"__cr_os.makedirs({directory!r}, exist_ok=True)", f"__cr_os.chdir({directory!r})"]
        if env:
            lines.append(f"__cr_os.environ.update({dict(env)!r})")
        lines.append("del __cr_os")
        return "\n".join(lines) + "\n"
    if language == "bash":
        lines = []
        if directory is not None:
            if remember:
                lines.append('__cr_job_prev_cwd="$PWD"')
            quoted = shlex.quote(directory)
            lines.append(f"mkdir -p -- {quoted} && cd -- {quoted}")
        lines += [f"export {shlex.quote(f'{k}={v}')}" for k, v in env.items()]
        return "\n".join(lines) + "\n"
    if language == "javascript":
        parts = []
        if directory is not None:
            if remember:
                parts.append("globalThis.__crJobPrevCwd = process.cwd();")
            parts.append(
                f"require('fs').mkdirSync({json.dumps(directory)}, {{recursive: true}}); "
                f"process.chdir({json.dumps(directory)});"
            )
        if env:
            parts.append(f"Object.assign(process.env, {json.dumps(dict(env))});")
        return " ".join(parts) + "\n"
    raise InvalidRequestError(f"working_directory and environment_variables are not supported for {language}.")


def _postlude(language: str) -> str:
    """Code that returns to the directory saved by :func:`_prelude` (existing sessions only)."""
    if language == "python":
        return "import os as __cr_os\n__cr_os.chdir(__cr_job_prev_cwd)\ndel __cr_os, __cr_job_prev_cwd\n"
    if language == "bash":
        return 'cd -- "$__cr_job_prev_cwd"; unset __cr_job_prev_cwd\n'
    return "process.chdir(globalThis.__crJobPrevCwd); delete globalThis.__crJobPrevCwd;\n"


class JobManager:
    """Runs jobs on a backend with bounded concurrency and keeps their records in a :class:`JobStore`.

    A job whose own session cannot be created because the backend is full (``CapacityError``) waits for
    room, holding its ``max_jobs`` slot, for at most its timeout. Records the store refuses to write
    (disk full) are kept in memory, answered from there, and written by a background retry.

    Args:
        store: Where records live.
        backend: Runs the code.
        settings: Default timeout and interrupt grace.
        max_jobs: Jobs running at once; the rest wait as ``pending``.
        retention: Seconds finished records are kept (None: forever).
        on_result: Called with (session_id, result) after every execution (usage accounting).
    """

    def __init__(
        self,
        store: JobStore,
        backend: AsyncBackend,
        settings: Settings,
        *,
        max_jobs: int = 4,
        retention: float | None = 7 * 86_400.0,
        on_result: ResultListener | None = None,
    ) -> None:
        if max_jobs < 1:
            raise InvalidRequestError("max_jobs must be at least 1.")
        self.store = store
        self.backend = backend
        self.settings = settings
        self.max_jobs = max_jobs
        self.retention = retention
        self.on_result = on_result
        self._slots = asyncio.Semaphore(max_jobs)
        self._active: dict[str, _Active] = {}
        self._closing = False
        self._janitor: asyncio.Task[None] | None = None
        # Newest state of records the store refused, by job id; every write of a record holds the lock,
        # so an older state can never overwrite a newer one.
        self._unsaved: dict[str, JobRecord] = {}
        self._write_lock = asyncio.Lock()
        self._store_error: str | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.submitted = 0
        self.recovered = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, fail jobs a dead server left behind, start the retention sweep."""
        await self.store.open()
        self.recovered = await self.store.recover()
        if self.recovered:
            log.warning("marked %d job(s) left unfinished by a previous server as failed", self.recovered)
        if self.retention is not None:
            await self.store.purge(self.retention)
            self._janitor = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        assert self.retention is not None
        period = min(max(self.retention / 10, 1.0), 300.0)
        while True:
            await asyncio.sleep(period)
            try:
                removed = await self.store.purge(self.retention)
            except Exception:  # a failed sweep must not kill the loop; the next one retries
                log.exception("job retention sweep failed")
                continue
            if removed:
                log.info("deleted %d finished job record(s) older than %g s", removed, self.retention)

    async def close(self) -> None:
        """Stop every job (records end as failed, saying the server shut down) and close the store.

        Records still held in memory get one last write; if the disk is still full they are lost, and
        the next server reports those jobs as failed.
        """
        self._closing = True
        if self._janitor is not None:
            self._janitor.cancel()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._unsaved:
            try:
                await self._write_unsaved()
            except Exception as exc:  # shutting down: say what is lost rather than fail the shutdown
                log.error(
                    "could not write %d job record(s) at shutdown (%s); a restarted server reports them as failed",
                    len(self._unsaved),
                    self._describe(exc),
                )
        await self.store.close()

    # -- writes the store may refuse -----------------------------------------------------------------

    async def _save(self, record: JobRecord) -> None:
        """Write a record's new state; when the store refuses, keep it in memory and retry in the background.

        A job never stalls on the disk: one that finishes while nothing can be written is finished all
        the same (``get`` answers from memory) and its record is written once the store takes writes.
        """
        async with self._write_lock:
            try:
                await self.store.save(record)
            except Exception as exc:  # any refused write: the job must not stay "running" because of it
                self._unsaved[record.job_id] = record
                self._write_failed(exc)
                return
            self._unsaved.pop(record.job_id, None)
            self._write_ok()

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, CodeRunnerError):
            return exc.message
        return f"Writing to the job store {self.store.path} failed: {type(exc).__name__}: {exc}"

    def _write_failed(self, exc: BaseException) -> None:
        reason = self._describe(exc)
        if self._store_error is None:
            log.error("job store write failed; job records are kept in memory until it works again: %s", reason)
        self._store_error = reason
        if not self._closing and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.ensure_future(self._retry_writes())

    def _write_ok(self) -> None:
        if self._store_error is not None and not self._unsaved:
            log.warning("the job store takes writes again")
            self._store_error = None

    async def _write_unsaved(self) -> None:
        async with self._write_lock:
            if not self._unsaved:
                await self.store.check_writable()  # only a submission failed: nothing to write but a probe
            for job_id in list(self._unsaved):
                await self.store.save(self._unsaved[job_id])
                del self._unsaved[job_id]
            self._write_ok()

    async def _retry_writes(self) -> None:
        """Write the records kept in memory, with backoff, until the store takes them."""
        delay = _RETRY_FIRST
        while self._store_error is not None or self._unsaved:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)
            try:
                await self._write_unsaved()
            except Exception as exc:  # still refused (disk full): keep the reason and try again later
                self._store_error = self._describe(exc)

    def store_health(self) -> dict[str, Any]:
        """Whether the job store takes writes, for ``/health``.

        Returns:
            ``{"status": "ok" | "degraded", "reason": str | None, "unsaved": int}``; ``unsaved`` counts
            the records kept in memory until the store takes writes again.
        """
        degraded = self._store_error is not None or bool(self._unsaved)
        return {"status": "degraded" if degraded else "ok", "reason": self._store_error, "unsaved": len(self._unsaved)}

    # -- queries -----------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord:
        """A job's record.

        Raises:
            TaskNotFoundError: Unknown id (or deleted by retention).
        """
        record = self._unsaved.get(job_id)  # newer than the stored one while the store refuses writes
        if record is None:
            record = await self.store.get(job_id)
        if record is None:
            raise TaskNotFoundError(
                f"No job or task {job_id!r}. Ids come from POST /jobs or /execute_async; finished records are "
                "deleted after the retention period."
            )
        return record

    async def list(self, status: str | None = None, session_id: str | None = None, limit: int = 50) -> list[JobRecord]:
        """Records, newest first (the states kept in memory win over stored ones)."""
        unsaved = dict(self._unsaved)
        records = await self.store.list(status, session_id, limit + len(unsaved))
        if not unsaved:
            return records[:limit]
        merged = {r.job_id: unsaved.get(r.job_id, r) for r in records}
        for job_id, record in unsaved.items():
            merged.setdefault(job_id, record)
        wanted = [
            r
            for r in merged.values()
            if (status is None or r.status == status) and (session_id is None or r.session_id == session_id)
        ]
        wanted.sort(key=lambda r: r.created_at, reverse=True)
        return wanted[:limit]

    async def counts(self) -> dict[str, int]:
        """Records per status (every status present, zero when none), counting states kept in memory."""
        counts = await self.store.counts()
        for job_id, record in dict(self._unsaved).items():
            stored = await self.store.get(job_id)
            if stored is not None and stored.status != record.status:
                counts[stored.status] = counts.get(stored.status, 0) - 1
                counts[record.status] = counts.get(record.status, 0) + 1
        return {s: counts.get(s, 0) for s in ("pending", "running", "completed", "failed", "timeout", "cancelled")}

    # -- submission --------------------------------------------------------------------------------

    async def submit(self, spec: JobSpec) -> JobRecord:
        """Validate, record as pending, and schedule a job; returns at once.

        Raises:
            InvalidRequestError: Bad code, timeout, working directory or environment (names must be
                POSIX identifiers).
            ConfigurationError: Unknown language.
            SessionNotFoundError: ``spec.session_id`` names no live session.
            JobStoreFullError: The job store's disk is full; nothing was scheduled (retry later).
        """
        if self._closing:
            raise InvalidRequestError("The server is shutting down; submit the job again after it restarts.")
        run = ExecRequest(spec.code, spec.language, spec.timeout if spec.timeout is not None else self.settings.timeout)
        code, language, timeout = run.code, run.language, run.timeout
        directory = validate_working_directory(spec.working_directory)
        env = _core.merge_env({}, spec.env)
        validate_env_names(env)
        session_dir = None
        if spec.session_id is not None:
            info = await self.backend.get_session(spec.session_id)
            session_dir = info.working_dir
            language = language or info.language
        language = language or "python"
        if spec.session_id is not None and (directory is not None or env):
            _prelude(language, directory, env, remember=True)  # rejects unsupported languages now
        spec = replace(spec, code=code, language=language, timeout=timeout, working_directory=directory, env=env)
        record = JobRecord(
            job_id=str(uuid.uuid4()),
            kind=spec.kind,
            status="pending",
            language=language,
            code=code,
            created_at=_now(),
            session_id=spec.session_id,
            timeout=timeout,
            capture_files=spec.capture_files,
            working_directory=directory,
            metadata=dict(spec.metadata),
            session_dir=session_dir,
            owns_session=spec.session_id is None,
        )
        try:
            await self.store.insert(record)
        except JobStoreFullError as exc:
            self._write_failed(exc)  # degraded until a write works again
            raise
        self._write_ok()
        self.submitted += 1
        active = _Active(session_id=spec.session_id)
        self._active[record.job_id] = active
        active.task = asyncio.ensure_future(self._run(record, spec, active))
        return record

    # -- execution ---------------------------------------------------------------------------------

    async def _run(self, record: JobRecord, spec: JobSpec, active: _Active) -> None:
        try:
            async with self._slots:
                if active.cancel_requested:
                    return  # cancel() already wrote the final record
                await self._execute(record, spec, active)
        except asyncio.CancelledError:
            if not active.cancel_requested or self._closing:
                latest = await self._latest(record)
                if not latest.is_complete:
                    await self._finish(latest, None, f"The server shut down while this job was {latest.status}.")
            elif active.phase == "pending":
                latest = await self._latest(record)
                if not latest.is_complete:
                    await self._finish(replace(latest, cancel_requested=True), None, None, status="cancelled")
        finally:
            active.phase = "done"
            self._active.pop(record.job_id, None)

    async def _latest(self, record: JobRecord) -> JobRecord:
        if record.job_id in self._unsaved:
            return self._unsaved[record.job_id]
        with contextlib.suppress(Exception):
            found = await self.store.get(record.job_id)
            if found is not None:
                return found
        return record

    async def _execute(self, record: JobRecord, spec: JobSpec, active: _Active) -> None:
        active.phase = "starting"
        sid = spec.session_id
        owned: str | None = None
        result: ExecutionResult | None = None
        error: str | None = None
        try:
            if sid is None:
                info = await self._open_session(record, spec, active)
                if info is not None:  # else: cancelled while it waited for room
                    active.phase = "starting"
                    sid = owned = info.session_id
                    record = replace(record, session_id=sid, session_dir=info.working_dir)
            if sid is not None:
                record = replace(record, status="running", started_at=_now(), error_message=None)
                await self._save(record)
                active.session_id = sid
                if not active.cancel_requested:  # else: cancelled while the session started; it never runs
                    result, error = await self._execute_in(record, spec, sid, owned is None)
        except CodeRunnerError as exc:
            error = exc.message
        except Exception as exc:  # a bug below us: record it on the job rather than leave it "running"
            log.exception("job %s failed unexpectedly", record.job_id)
            error = f"Internal error while running the job: {type(exc).__name__}: {exc}"
        finally:
            if owned is not None:
                with contextlib.suppress(Exception):  # best effort: the session may already be gone
                    await asyncio.shield(self.backend.close_session(owned))
        await self._finish(replace(record, cancel_requested=active.cancel_requested), result, error)

    async def _open_session(self, record: JobRecord, spec: JobSpec, active: _Active) -> SessionInfo | None:
        """Create the job's own session; while the backend is full, wait for room, at most the job's timeout.

        Returns:
            The session, or None when the job was cancelled while it waited.

        Raises:
            CapacityError: Still no room when the wait ended; the message says how long it waited.
        """
        lifetime = (spec.timeout or self.settings.timeout or 3600.0) + _SESSION_LIFETIME_MARGIN
        wait = spec.timeout if spec.timeout is not None else _ROOM_WAIT_DEFAULT
        deadline = time.monotonic() + wait
        delay = _ROOM_POLL_FIRST
        while True:
            try:
                return await self.backend.create_session(
                    SessionSpec(
                        spec.language or "python", env=spec.env, lifetime=lifetime, metadata={"job_id": record.job_id}
                    )
                )
            except CapacityError as exc:
                full = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CapacityError(
                    f"No room for the job's session within {wait:g} s (its timeout), so it never ran: {full.message}"
                ) from full
            if active.phase != "waiting":
                active.phase = "waiting"
                note = (
                    f"Waiting for room for the job's session: {full.message} It starts when a session closes, "
                    f"or fails after {wait:g} s (its timeout)."
                )
                await self._save(replace(record, error_message=note))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(active.stop.wait(), min(delay, remaining))
            if active.cancel_requested:
                return None
            delay = min(delay * 2, _ROOM_POLL_MAX)

    async def _execute_in(
        self, record: JobRecord, spec: JobSpec, sid: str, existing: bool
    ) -> tuple[ExecutionResult | None, str | None]:
        directory = None
        if spec.working_directory is not None:
            directory = str(PurePosixPath(record.session_dir or ".") / spec.working_directory)
        env = spec.env if existing else {}  # a fresh session got env at creation
        language = spec.language or "python"
        prelude = _prelude(language, directory, env, remember=existing)
        if prelude is not None:
            prep = await self.backend.execute(sid, ExecRequest(prelude, spec.language, 30.0))
            if prep.status != "ok":
                reason = prep.error or prep.stderr.strip() or prep.status
                return None, f"Could not apply working_directory/environment_variables: {reason}"
        active = self._active.get(record.job_id)
        if active is not None:
            active.phase = "running"
            if active.cancel_requested:
                return None, None
        try:
            result = await self.backend.execute(sid, ExecRequest(spec.code, language, spec.timeout))
        finally:
            if existing and directory is not None:
                with contextlib.suppress(CodeRunnerError):
                    restore = _postlude(language)
                    await asyncio.shield(self.backend.execute(sid, ExecRequest(restore, language, 30.0)))
        if self.on_result is not None:
            self.on_result(sid, result)
        if not spec.capture_files:
            result = result.model_copy(update={"files_created": [], "files_modified": []})
        return result, None

    async def _finish(
        self, record: JobRecord, result: ExecutionResult | None, error: str | None, status: TaskStatus | None = None
    ) -> JobRecord:
        if status is None:
            if result is not None:
                status = task_status_for(result)
                if record.cancel_requested and status in ("failed", "cancelled"):
                    status = "cancelled"
            else:
                status = "cancelled" if record.cancel_requested and error is None else "failed"
        final = replace(record, status=status, result=result, error_message=error, finished_at=_now())
        await asyncio.shield(self._save(final))
        return final

    # -- cancellation ------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a pending one never runs, a running one is interrupted. Finished ones are unchanged.

        Returns:
            The record after the job settled (or after a short wait, if it is still stopping).
        """
        record = await self.get(job_id)
        if record.is_complete:
            return record
        active = self._active.get(job_id)
        if active is None or active.task is None:
            # A record without a runner here (another server on the same database?): settle it.
            return await self._finish(replace(record, cancel_requested=True), None, None, status="cancelled")
        active.cancel_requested = True
        active.stop.set()  # a job waiting for room wakes up and ends as cancelled
        if active.phase == "pending":
            active.task.cancel()
        elif active.phase == "running" and active.session_id is not None:
            await self._interrupt_until_done(active)
        # While the session starts ("starting") or the job waits for room ("waiting") the flag alone is
        # enough: the job checks it before running.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(active.task), self.settings.interrupt_grace + _CANCEL_SETTLE)
        return await self.get(job_id)

    async def _interrupt_until_done(self, active: _Active) -> None:
        # The execute call may still be on its way to the kernel: interrupt answers False until it runs.
        assert active.task is not None and active.session_id is not None
        deadline = time.monotonic() + self.settings.interrupt_grace
        while not active.task.done() and time.monotonic() < deadline:
            try:
                if await self.backend.interrupt(active.session_id):
                    return
            except CodeRunnerError:
                return
            await asyncio.sleep(0.05)

    async def delete(self, job_id: str) -> None:
        """Delete a finished job's record (cancel it first if it is still active)."""
        record = await self.cancel(job_id)
        if not record.is_complete:
            raise InvalidRequestError(f"Job {job_id} is still stopping; delete it again in a moment.")
        async with self._write_lock:
            try:
                await self.store.delete(job_id)
            except JobStoreFullError as exc:
                self._write_failed(exc)
                raise
            self._unsaved.pop(job_id, None)
            self._write_ok()

    @property
    def active_count(self) -> int:
        """Jobs queued or running in this server."""
        return len(self._active)
