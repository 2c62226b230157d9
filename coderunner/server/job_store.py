"""The job store: job records in SQLite (one dedicated thread, WAL), and what a full disk means for them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from coderunner.errors import (
    BackendUnavailableError,
    CodeRunnerError,
)
from coderunner.models import ExecutionResult, TaskStatus
from coderunner.server.wire import to_json

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
# sqlite's primary result code for "database or disk is full"; extended codes keep it in the low byte.
_SQLITE_FULL = 13
_NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class JobStoreFullError(BackendUnavailableError):
    """The job database's filesystem is full, so a record could not be written.

    Its ``code`` stays ``backend_unavailable``: HTTP 503 with ``Retry-After``, and every client
    already treats it as "retry later".
    """


def _disk_full(exc: BaseException) -> bool:
    """True when ``exc`` says the filesystem (or the user's disk quota) has no room left."""
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; older ones only have the message
        if isinstance(code, int):
            return code & 0xFF == _SQLITE_FULL
        return "database or disk is full" in str(exc)
    return False


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


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
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            if not _disk_full(exc):
                raise
            raise JobStoreFullError(
                f"The job store's disk is full: writing {self.path} failed ({exc}). Free space on that "
                "filesystem (or start the server with --db on another one), then retry."
            ) from exc

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

    def _touch(self) -> None:
        # Rewriting the schema version unchanged is a real write (a WAL frame) that changes nothing.
        conn = self._db()
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version = {version}")

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

    async def check_writable(self) -> None:
        """Raise unless a write reaches the database (it rewrites the schema version unchanged).

        Raises:
            JobStoreFullError: The disk is still full.
        """
        await self._call(self._touch)

    async def close(self) -> None:
        """Close the database and stop the store thread."""
        with contextlib.suppress(RuntimeError):
            await self._call(self._close)
        self._executor.shutdown(wait=False)
