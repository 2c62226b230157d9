"""Background jobs with persistent records: a SQLite store and the runner that executes them.

One record serves two views: coderunner's job API (``/jobs/...``) and InstaVM's async tasks
(``/execute_async`` + ``/v1/executions/{id}``). Records live in SQLite (stdlib ``sqlite3``, WAL mode);
every database call runs on one dedicated thread, so the event loop never blocks on disk and the
connection is never shared between threads.

Lifecycle of a job: ``pending`` (queued behind ``max_jobs`` running ones) -> ``running`` -> one of
``completed``, ``failed``, ``timeout``, ``cancelled``. A server restart keeps finished records; records
left ``pending``/``running`` by a server that died are marked ``failed`` with the reason at startup.
Finished records older than the retention period are deleted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import shlex
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from coderunner import _core
from coderunner.backend import AsyncBackend
from coderunner.config import Settings
from coderunner.errors import CodeRunnerError, InvalidRequestError, PathError, TaskNotFoundError
from coderunner.jobs import task_status_for
from coderunner.models import ExecutionResult, TaskStatus
from coderunner.server.wire import to_json

__all__ = ["FINAL_STATUSES", "JobManager", "JobRecord", "JobSpec", "JobStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "timeout", "cancelled"})
_ACTIVE_STATUSES = ("pending", "running")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    session_id TEXT,
    language TEXT NOT NULL,
    code TEXT NOT NULL,
    timeout REAL,
    capture_files INTEGER NOT NULL,
    working_directory TEXT,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result TEXT,
    error_message TEXT,
    session_dir TEXT,
    owns_session INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs (session_id);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
"""
_COLUMNS = (
    "job_id, kind, status, session_id, language, code, timeout, capture_files, working_directory, metadata, "
    "created_at, started_at, finished_at, result, error_message, session_dir, owns_session, cancel_requested"
)
# After a cancel, how long DELETE /jobs/{id} waits for the job to settle before answering.
_CANCEL_SETTLE = 2.0
# How long a job's execution may outlive its timeout (interrupt grace, result shaping) before the
# owned session is force-closed by the shutdown path; only used for the session lifetime.
_SESSION_LIFETIME_MARGIN = 120.0


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: what was asked, where it ran, and how it ended."""

    job_id: str
    kind: str
    status: TaskStatus
    language: str
    code: str
    created_at: datetime
    session_id: str | None = None
    timeout: float | None = None
    capture_files: bool = True
    working_directory: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: ExecutionResult | None = None
    error_message: str | None = None
    session_dir: str | None = None
    owns_session: bool = False
    cancel_requested: bool = False

    @property
    def is_complete(self) -> bool:
        """True once the status is final."""
        return self.status in FINAL_STATUSES

    def absolute(self, relative: list[str]) -> list[str]:
        """Turn session-relative paths of the result into absolute paths inside the session's backend."""
        if not self.session_dir:
            return list(relative)
        root = PurePosixPath(self.session_dir)
        return [str(root / rel) for rel in relative]

    def _row(self) -> tuple[Any, ...]:
        return (
            self.job_id,
            self.kind,
            self.status,
            self.session_id,
            self.language,
            self.code,
            self.timeout,
            int(self.capture_files),
            self.working_directory,
            json.dumps(self.metadata),
            _ts(self.created_at),
            _ts(self.started_at),
            _ts(self.finished_at),
            None if self.result is None else to_json(self.result),
            self.error_message,
            self.session_dir,
            int(self.owns_session),
            int(self.cancel_requested),
        )

    @classmethod
    def _from_row(cls, row: tuple[Any, ...]) -> JobRecord:
        created = _dt(row[10])
        assert created is not None
        return cls(
            job_id=row[0],
            kind=row[1],
            status=row[2],
            session_id=row[3],
            language=row[4],
            code=row[5],
            timeout=row[6],
            capture_files=bool(row[7]),
            working_directory=row[8],
            metadata=json.loads(row[9]),
            created_at=created,
            started_at=_dt(row[11]),
            finished_at=_dt(row[12]),
            result=None if row[13] is None else ExecutionResult.model_validate_json(row[13]),
            error_message=row[14],
            session_dir=row[15],
            owns_session=bool(row[16]),
            cancel_requested=bool(row[17]),
        )


class JobStore:
    """SQLite persistence for job records. Every call runs on the store's own thread.

    Args:
        path: Database file (parents are created), or ``":memory:"``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="coderunner-jobdb")
        self._conn: sqlite3.Connection | None = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("The job store is not open.")
        return self._conn

    # -- blocking implementations (store thread only) ------------------------------------------------

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL under WAL: a power cut may lose the last commits, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        elif version > _SCHEMA_VERSION:
            conn.close()
            raise CodeRunnerError(
                f"The job database {self.path} was written by a newer coderunner (schema {version}); "
                "upgrade coderunner or point --db at another file."
            )
        self._conn = conn

    def _insert(self, record: JobRecord) -> None:
        self._db().execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 18)})", record._row())

    def _replace(self, record: JobRecord) -> None:
        self._db().execute(f"REPLACE INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 18)})", record._row())

    def _get(self, job_id: str) -> JobRecord | None:
        row = self._db().execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else JobRecord._from_row(row)

    def _list(self, status: str | None, session_id: str | None, limit: int) -> list[JobRecord]:
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if session_id is not None:
            where.append("session_id = ?")
            args.append(session_id)
        sql = f"SELECT {_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        rows = self._db().execute(sql, (*args, limit)).fetchall()
        return [JobRecord._from_row(r) for r in rows]

    def _counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {str(status): int(n) for status, n in rows}

    def _recover(self, now: float) -> int:
        conn = self._db()
        total = 0
        for status in _ACTIVE_STATUSES:
            cur = conn.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, error_message = ? WHERE status = ?",
                (now, f"The server stopped (crash or restart) while this job was {status}; it did not finish.", status),
            )
            total += cur.rowcount
        return total

    def _purge(self, finished_before: float) -> int:
        placeholders = ", ".join("?" * len(FINAL_STATUSES))
        cur = self._db().execute(
            f"DELETE FROM jobs WHERE finished_at < ? AND status IN ({placeholders})",
            (finished_before, *sorted(FINAL_STATUSES)),
        )
        return cur.rowcount

    def _delete(self, job_id: str) -> None:
        self._db().execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def _ping(self) -> None:
        self._db().execute("SELECT 1").fetchone()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- async API ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (and create) the database."""
        await self._call(self._open)

    async def insert(self, record: JobRecord) -> None:
        """Store a new record."""
        await self._call(self._insert, record)

    async def save(self, record: JobRecord) -> None:
        """Overwrite a record with its new state."""
        await self._call(self._replace, record)

    async def get(self, job_id: str) -> JobRecord | None:
        """A record, or None when the id is unknown."""
        return await self._call(self._get, job_id)

    async def list(self, status: str | None = None, session_id: str | None = None, limit: int = 50) -> list[JobRecord]:
        """Records, newest first, optionally filtered."""
        return await self._call(self._list, status, session_id, limit)

    async def counts(self) -> dict[str, int]:
        """Number of records per status."""
        return await self._call(self._counts)

    async def recover(self) -> int:
        """Mark records left pending/running by a previous server as failed; returns how many."""
        return await self._call(self._recover, time.time())

    async def purge(self, older_than: float) -> int:
        """Delete finished records that finished more than ``older_than`` seconds ago."""
        return await self._call(self._purge, time.time() - older_than)

    async def delete(self, job_id: str) -> None:
        """Delete one record."""
        await self._call(self._delete, job_id)

    async def ping(self) -> None:
        """Raise if the database does not answer a trivial query."""
        await self._call(self._ping)

    async def close(self) -> None:
        """Close the database and stop the store thread."""
        with contextlib.suppress(RuntimeError):
            await self._call(self._close)
        self._executor.shutdown(wait=False)


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
    phase: str = "pending"  # pending -> starting -> running -> done
    session_id: str | None = None
    cancel_requested: bool = False


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


def _prelude(language: str, directory: str | None, env: Mapping[str, str], remember: bool) -> str | None:
    """Code that moves into ``directory`` (an absolute path) and exports ``env``; None if nothing to do."""
    if directory is None and not env:
        return None
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
        lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
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
        """Stop every job (records end as failed, saying the server shut down) and close the store."""
        self._closing = True
        if self._janitor is not None:
            self._janitor.cancel()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.store.close()

    # -- queries -----------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord:
        """A job's record.

        Raises:
            TaskNotFoundError: Unknown id (or deleted by retention).
        """
        record = await self.store.get(job_id)
        if record is None:
            raise TaskNotFoundError(
                f"No job or task {job_id!r}. Ids come from POST /jobs or /execute_async; finished records are "
                "deleted after the retention period."
            )
        return record

    async def list(self, status: str | None = None, session_id: str | None = None, limit: int = 50) -> list[JobRecord]:
        """Records, newest first."""
        return await self.store.list(status, session_id, limit)

    async def counts(self) -> dict[str, int]:
        """Records per status (every status present, zero when none)."""
        counts = await self.store.counts()
        return {s: counts.get(s, 0) for s in ("pending", "running", "completed", "failed", "timeout", "cancelled")}

    # -- submission --------------------------------------------------------------------------------

    async def submit(self, spec: JobSpec) -> JobRecord:
        """Validate, record as pending, and schedule a job; returns at once.

        Raises:
            InvalidRequestError: Bad code, timeout, working directory or environment.
            ConfigurationError: Unknown language.
            SessionNotFoundError: ``spec.session_id`` names no live session.
        """
        if self._closing:
            raise InvalidRequestError("The server is shutting down; submit the job again after it restarts.")
        code = _core.validate_code(spec.code)
        language = _core.normalize_language(spec.language) if spec.language is not None else None
        timeout = _core.validate_timeout(spec.timeout, self.settings.timeout)
        directory = validate_working_directory(spec.working_directory)
        env = _core.merge_env({}, spec.env)
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
        await self.store.insert(record)
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
                    await self._finish(latest, None, "The server shut down while this job was running.")
            elif active.phase == "pending":
                latest = await self._latest(record)
                if not latest.is_complete:
                    await self._finish(replace(latest, cancel_requested=True), None, None, status="cancelled")
        finally:
            active.phase = "done"
            self._active.pop(record.job_id, None)

    async def _latest(self, record: JobRecord) -> JobRecord:
        with contextlib.suppress(Exception):
            found = await self.store.get(record.job_id)
            if found is not None:
                return found
        return record

    async def _execute(self, record: JobRecord, spec: JobSpec, active: _Active) -> None:
        active.phase = "starting"
        record = replace(record, status="running", started_at=_now())
        await self.store.save(record)
        sid = spec.session_id
        owned: str | None = None
        result: ExecutionResult | None = None
        error: str | None = None
        try:
            if sid is None:
                lifetime = (spec.timeout or self.settings.timeout or 3600.0) + _SESSION_LIFETIME_MARGIN
                info = await self.backend.create_session(
                    spec.language or "python",
                    env=spec.env or None,
                    lifetime=lifetime,
                    metadata={"job_id": record.job_id},
                )
                sid = owned = info.session_id
                record = replace(record, session_id=sid, session_dir=info.working_dir)
                await self.store.save(record)
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
            prep = await self.backend.execute(sid, prelude, spec.language, timeout=30.0)
            if prep.status != "ok":
                reason = prep.error or prep.stderr.strip() or prep.status
                return None, f"Could not apply working_directory/environment_variables: {reason}"
        active = self._active.get(record.job_id)
        if active is not None:
            active.phase = "running"
            if active.cancel_requested:
                return None, None
        try:
            result = await self.backend.execute(sid, spec.code, language, timeout=spec.timeout)
        finally:
            if existing and directory is not None:
                with contextlib.suppress(CodeRunnerError):
                    restore = _postlude(language)
                    await asyncio.shield(self.backend.execute(sid, restore, language, timeout=30))
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
        await asyncio.shield(self.store.save(final))
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
        if active.phase == "pending":
            active.task.cancel()
        elif active.phase == "running" and active.session_id is not None:
            await self._interrupt_until_done(active)
        # While the session starts ("starting") the flag alone is enough: the job checks it before running.
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
        await self.store.delete(job_id)

    @property
    def active_count(self) -> int:
        """Jobs queued or running in this server."""
        return len(self._active)
