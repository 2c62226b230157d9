"""The server's pure helpers and its job store, without a live server (real SQLite, the shipped fake backend)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed")

from coderunner.config import Settings
from coderunner.errors import PathError
from coderunner.models import ExecutionResult
from coderunner.server.app import _describe, http_status_for
from coderunner.server.job_store import JobRecord, JobStore
from coderunner.server.jobs import JobManager, JobSpec, validate_working_directory
from coderunner.server.middleware import normalize_path
from coderunner.server.state import wire_time_limits
from coderunner.specs import ExecRequest
from coderunner.testing import AsyncFakeBackend


def test_wire_time_limits_answer_before_the_client_timeout() -> None:
    for client in (1.0, 2.0, 5.0, 300.0, 600.0):
        engine, deadline = wire_time_limits(client)
        assert 0 < engine <= deadline < client


def test_normalize_path() -> None:
    assert normalize_path("//execute") == "/execute"
    assert normalize_path("/v1//sessions///status/x/") == "/v1/sessions/status/x"
    assert normalize_path("/") == "/"


def test_working_directory_validation() -> None:
    assert validate_working_directory("a/b/") == "a/b"
    assert validate_working_directory(".") is None
    for bad in ("/abs", "../up", "a/../../b", "x\x00"):
        with pytest.raises(PathError):
            validate_working_directory(bad)


def test_validation_messages_name_the_field() -> None:
    status, detail, _ = _describe([{"type": "missing", "loc": ("body", "session_id"), "msg": "Field required"}])
    assert (status, detail) == (422, "Invalid request: 'session_id' is required.")
    status, detail, _ = _describe([{"type": "json_invalid", "loc": ("body", 7), "ctx": {"error": "Expecting value"}}])
    assert status == 400 and "character 7" in detail


def test_status_mapping() -> None:
    from coderunner import errors

    assert http_status_for(errors.SessionNotFoundError("x")) == 404
    assert http_status_for(errors.PathError("x")) == 400
    assert http_status_for(errors.CapacityError("x")) == 429
    assert http_status_for(errors.UnsupportedOperationError("x")) == 501
    assert http_status_for(errors.BackendUnavailableError("x")) == 503
    assert http_status_for(errors.CodeRunnerError("x")) == 500


async def test_store_round_trip_recovery_and_retention(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "deep" / "jobs.sqlite3")
    await store.open()
    now = datetime.now(timezone.utc)
    result = ExecutionResult(status="ok", stdout="hi\n", files_created=["a.txt"])
    old = JobRecord(
        job_id="old", kind="job", status="completed", language="python", code="print('hi')",
        created_at=now - timedelta(days=2), finished_at=now - timedelta(days=2), result=result,
        metadata={"k": [1, 2]}, session_dir="/s",
    )  # fmt: skip
    fresh = JobRecord(job_id="fresh", kind="task", status="running", language="bash", code="sleep 1", created_at=now)
    await store.insert(old)
    await store.insert(fresh)
    loaded = await store.get("old")
    assert loaded == old
    assert loaded is not None and loaded.absolute(loaded.result.files_created if loaded.result else []) == ["/s/a.txt"]
    assert await store.recover() == 1
    recovered = await store.get("fresh")
    assert recovered is not None and recovered.status == "failed" and "running" in (recovered.error_message or "")
    assert await store.purge(older_than=86_400) == 1
    assert await store.get("old") is None
    assert [r.job_id for r in await store.list()] == ["fresh"]
    await store.close()


async def test_manager_queues_beyond_max_jobs_and_cancels_pending() -> None:
    gate = asyncio.Event()

    class GatedBackend(AsyncFakeBackend):
        """The shipped fake, holding every execution until the gate opens."""

        async def execute(self, session_id: str, request: ExecRequest, **kw: Any) -> ExecutionResult:
            await gate.wait()
            return await super().execute(session_id, request, **kw)

    backend = GatedBackend()
    manager = JobManager(JobStore(":memory:"), backend, Settings(), max_jobs=1)
    await manager.start()
    first = await manager.submit(JobSpec(code="1", language="python", timeout=None))
    second = await manager.submit(JobSpec(code="2", language="python", timeout=None))
    deadline = time.monotonic() + 5
    while (await manager.get(first.job_id)).status != "running":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert (await manager.get(second.job_id)).status == "pending"
    assert (await manager.cancel(second.job_id)).status == "cancelled"
    gate.set()
    while not (await manager.get(first.job_id)).is_complete:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert (await manager.get(first.job_id)).status == "completed"
    assert [c.code for c in backend.calls] == ["1"]
    await manager.close()
