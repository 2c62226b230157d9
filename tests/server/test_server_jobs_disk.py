"""The job store on bad days: a really full disk, a server full of sessions, and hostile environment names.

The full-disk test mounts a 2 MiB tmpfs (root only), puts a live server's job database on it and fills
it with a file: sqlite answers ``database or disk is full`` exactly as on a full production disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from conftest import LiveServer

FINAL = {"completed", "failed", "timeout", "cancelled"}


def _wait(http: httpx.Client, job_id: str, statuses: set[str], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(f"/jobs/{job_id}/status")
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        if view["status"] in statuses:
            return view
        assert time.monotonic() < deadline, f"job {job_id} still {view['status']}, wanted {statuses}: {view}"
        time.sleep(0.05)


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


# -- a real full filesystem ------------------------------------------------------------------------


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A fresh 2 MiB tmpfs, unmounted afterwards even when the test fails."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount binaries on PATH")
    mountpoint = Path(tempfile.mkdtemp(prefix="crfull-", dir="/tmp"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)  # still busy: detach it
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem has not one byte left; returns the file (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 4096, 1):  # unbuffered, so the last partial page is used up too
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    assert shutil.disk_usage(directory).free == 0
    return filler


@pytest.fixture
def disk_server(small_fs: Path, live_server_factory: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    """A live server whose job database lives on the small tmpfs (stopped before the tmpfs is unmounted)."""
    server = live_server_factory(db_path=small_fs / "jobs.sqlite3", extra_args=("--max-jobs", "2"))
    try:
        yield server
    finally:
        server.stop()


def test_full_disk_answers_503_keeps_finished_results_in_memory_and_writes_them_later(
    disk_server: LiveServer, small_fs: Path
) -> None:
    gate = disk_server.workdir / f"gate-{uuid.uuid4().hex}"  # on /tmp, not on the full tmpfs
    waiting_code = (
        f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n"
        "print('finished while the disk was full')"
    )
    with disk_server.client() as http:
        warmup = http.post("/jobs", json={"code": "print('before')"}).json()
        assert _wait(http, warmup["job_id"], FINAL)["status"] == "completed"
        job = http.post("/jobs", json={"code": waiting_code, "timeout": 120, "metadata": {"n": 1}}).json()
        _wait(http, job["job_id"], {"running"})
        filler = _fill(small_fs)

        # A new job cannot be recorded: a retryable 503 that says why, on both job routes.
        refused = http.post("/jobs", json={"code": "print(1)"})
        assert refused.status_code == 503, refused.text
        body = refused.json()
        assert body["retryable"] is True and body["code"] == "backend_unavailable"
        assert "job store" in body["detail"] and "disk is full" in body["detail"]
        assert refused.headers["Retry-After"].isdigit()
        task = http.post("/execute_async", json={"command": "print(1)"})
        assert task.status_code == 503 and "disk is full" in task.json()["detail"], task.text

        # The running job finishes while nothing can be written: its result is served from memory.
        gate.touch()
        view = _wait(http, job["job_id"], FINAL)
        assert view["status"] == "completed", view
        results = http.get(f"/jobs/{job['job_id']}/results").json()
        assert results["stdout"] == "finished while the disk was full\n"
        assert results["metadata"] == {"n": 1}
        assert http.get(f"/v1/executions/{job['job_id']}").json()["is_complete"] is True
        listed = {j["job_id"]: j["status"] for j in http.get("/jobs").json()["jobs"]}
        assert listed[job["job_id"]] == "completed"
        for status, present in (("completed", True), ("running", False)):
            filtered = http.get("/jobs", params={"status": status}).json()["jobs"]
            assert (job["job_id"] in {j["job_id"] for j in filtered}) is present, status
        # ... while the database itself still says running.
        with contextlib.closing(sqlite3.connect(f"file:{disk_server.db_path}?mode=ro", uri=True)) as db:
            stored = db.execute("SELECT status FROM jobs WHERE job_id = ?", (job["job_id"],)).fetchone()
        assert stored == ("running",)

        health = http.get("/health").json()
        assert health["status"] == "degraded"
        assert health["jobs"]["status"] == "degraded" and health["jobs"]["unsaved"] == 1, health["jobs"]
        assert "disk is full" in health["jobs"]["reason"]
        assert health["checks"]["job_db"]["status"] == "degraded"
        assert health["jobs"]["completed"] >= 2  # counts see the in-memory result too

        # Space returns: the background retry writes the record and the store is healthy again.
        filler.unlink()
        _wait_for(lambda: http.get("/health").json()["jobs"]["unsaved"] == 0, "the unsaved record to be written")
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["jobs"]["status"] == "ok", health
        assert health["checks"]["job_db"]["status"] == "ok"
        again = http.post("/jobs", json={"code": "print('after')"})
        assert again.status_code == 202, again.text
        assert _wait(http, again.json()["job_id"], FINAL)["status"] == "completed"

    # Written for real: a crash (no shutdown flush) loses nothing, the database holds the result.
    disk_server.stop(crash=True)
    with contextlib.closing(sqlite3.connect(str(disk_server.db_path))) as db:
        status, result = db.execute("SELECT status, result FROM jobs WHERE job_id = ?", (job["job_id"],)).fetchone()
    assert status == "completed" and "finished while the disk was full" in result


def test_a_full_disk_at_submission_is_degraded_until_writes_work_again(disk_server: LiveServer, small_fs: Path) -> None:
    with disk_server.client() as http:
        first = http.post("/jobs", json={"code": "print('x')"}).json()
        assert _wait(http, first["job_id"], FINAL)["status"] == "completed"
        filler = _fill(small_fs)
        refused = http.post("/jobs", json={"code": "print(1)"})
        assert refused.status_code == 503, refused.text
        health = http.get("/health").json()
        assert health["status"] == "degraded" and health["jobs"]["status"] == "degraded"
        assert health["jobs"]["unsaved"] == 0
        filler.unlink()
        _wait_for(lambda: http.get("/health").json()["jobs"]["status"] == "ok", "the job store to recover")
        assert http.post("/jobs", json={"code": "print(1)"}).status_code == 202


# -- jobs wait for room on a server full of sessions -----------------------------------------------


@pytest.fixture(scope="module")
def one_session_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory(extra_args=("--max-jobs", "2"), env={"CODERUNNER_MAX_SESSIONS": "1"})


def test_a_job_waits_for_room_while_sessions_fill_the_server(one_session_server: LiveServer) -> None:
    with one_session_server.client() as http:
        interactive = http.post("/sessions", json={"language": "python"})
        assert interactive.status_code == 201, interactive.text
        sid = interactive.json()["session_id"]
        try:
            job = http.post("/jobs", json={"code": "print('got room')", "timeout": 120})
            assert job.status_code == 202, job.text
            job_id = job.json()["job_id"]

            def waiting() -> bool:
                view = http.get(f"/jobs/{job_id}").json()
                assert view["status"] == "pending", view
                return "max_sessions" in (view["error_message"] or "")

            _wait_for(waiting, "the job to say it waits for room")
            view = http.get(f"/jobs/{job_id}").json()
            assert "waiting for room" in view["error_message"].lower()
            assert view["started_at"] is None
        finally:
            assert http.delete(f"/sessions/{sid}").status_code == 200
        view = _wait(http, job_id, FINAL)
        assert view["status"] == "completed", view
        assert view["error_message"] is None
        assert http.get(f"/jobs/{job_id}/results").json()["stdout"] == "got room\n"


def test_a_job_that_never_gets_room_fails_when_its_timeout_passes(one_session_server: LiveServer) -> None:
    with one_session_server.client() as http:
        sid = http.post("/sessions", json={"language": "python"}).json()["session_id"]
        try:
            started = time.monotonic()
            job_id = http.post("/jobs", json={"code": "print('never')", "timeout": 2}).json()["job_id"]
            view = _wait(http, job_id, FINAL)
            assert time.monotonic() - started >= 1.5
        finally:
            http.delete(f"/sessions/{sid}")
        assert view["status"] == "failed", view
        message = view["error_message"]
        assert "room" in message and "2 s" in message and "max_sessions" in message, message
        assert http.get(f"/jobs/{job_id}/results").json()["stdout"] == ""


def test_cancel_stops_a_job_waiting_for_room(one_session_server: LiveServer) -> None:
    with one_session_server.client() as http:
        sid = http.post("/sessions", json={"language": "python"}).json()["session_id"]
        try:
            job_id = http.post("/jobs", json={"code": "print('never')", "timeout": 120}).json()["job_id"]
            _wait_for(lambda: "room" in (http.get(f"/jobs/{job_id}").json()["error_message"] or ""), "waiting")
            cancelled = http.delete(f"/jobs/{job_id}").json()
            assert cancelled["status"] == "cancelled", cancelled
        finally:
            http.delete(f"/sessions/{sid}")


# -- environment variable names ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def env_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory()


_HOSTILE = ("X; touch {marker} #", "X$(touch {marker})", "X`touch {marker}`", "1X", "A-B", "X Y", "X\ntouch {marker}")


@pytest.mark.parametrize("language", ["bash", "python", "javascript"])
def test_env_names_must_be_posix_identifiers(env_server: LiveServer, language: str, require_bash: None) -> None:
    if language == "javascript" and shutil.which("node") is None:
        pytest.skip("no node binary on PATH")
    marker = Path(tempfile.gettempdir()) / f"pwned-{uuid.uuid4().hex}"
    with env_server.client() as http:
        sid = http.post("/sessions", json={"language": language}).json()["session_id"]
        try:
            for template in _HOSTILE:
                name = template.format(marker=marker)
                for target in ({"session_id": sid}, {}):
                    body = {"code": "1", "language": language, "environment_variables": {name: "v"}, **target}
                    refused = http.post("/jobs", json=body)
                    assert refused.status_code == 400, (name, refused.text)
                    assert refused.json()["code"] == "invalid_request"
                    assert "[A-Za-z_][A-Za-z0-9_]*" in refused.json()["detail"], refused.text
            time.sleep(0.5)  # had anything been scheduled, it would have run by now
            assert not marker.exists()
            assert http.get("/jobs", params={"session_id": sid}).json()["count"] == 0
        finally:
            http.delete(f"/sessions/{sid}")
            marker.unlink(missing_ok=True)


_PRINT_ENV = {
    "python": "import os\nprint(os.environ['_GOOD_1'], os.environ['b2'])",
    "bash": 'echo "$_GOOD_1" "$b2"',
    "javascript": "console.log(process.env._GOOD_1, process.env.b2)",
}


@pytest.mark.parametrize("language", ["bash", "python", "javascript"])
def test_valid_env_names_still_work(env_server: LiveServer, language: str, require_bash: None) -> None:
    if language == "javascript" and shutil.which("node") is None:
        pytest.skip("no node binary on PATH")
    env = {"_GOOD_1": "it's $(not) run; `x`", "b2": "two words"}
    expected = "it's $(not) run; `x` two words\n"
    with env_server.client() as http:
        sid = http.post("/sessions", json={"language": language}).json()["session_id"]
        try:
            for target in ({"session_id": sid}, {}):
                body = {"code": _PRINT_ENV[language], "language": language, "environment_variables": env, **target}
                created = http.post("/jobs", json=body)
                assert created.status_code == 202, created.text
                view = _wait(http, created.json()["job_id"], FINAL)
                results = http.get(f"/jobs/{view['job_id']}/results").json()
                assert view["status"] == "completed", results
                assert results["stdout"] == expected, (target, results)
        finally:
            http.delete(f"/sessions/{sid}")


def test_the_bash_prelude_quotes_every_export_and_rechecks_names() -> None:
    from coderunner.errors import InvalidRequestError
    from coderunner.server.jobs import _prelude

    assert _prelude("bash", None, {"A_1": "x'; touch y #"}, remember=False) == "export 'A_1=x'\"'\"'; touch y #'\n"
    for language in ("bash", "python", "javascript"):
        with pytest.raises(InvalidRequestError, match=r"POSIX identifiers"):
            _prelude(language, None, {"X; touch /tmp/pwned #": "v"}, remember=False)
