"""The job API: results, files, cancel, queueing with --max-jobs 1, and persistence across a crash."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from conftest import LiveServer


def _wait(http: httpx.Client, job_id: str, statuses: set[str], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = http.get(f"/jobs/{job_id}/status").json()
        if view["status"] in statuses:
            return view
        assert time.monotonic() < deadline, f"job {job_id} still {view['status']}, wanted {statuses}"
        time.sleep(0.05)


FINAL = {"completed", "failed", "timeout", "cancelled"}


@pytest.fixture(scope="module")
def jobs_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory(extra_args=("--max-jobs", "1"))


@pytest.fixture(scope="module")
def http(jobs_server: LiveServer) -> Iterator[httpx.Client]:
    with jobs_server.client() as client:
        yield client


def test_job_runs_in_its_own_session_and_reports_everything(http: httpx.Client) -> None:
    created = http.post(
        "/jobs",
        json={
            "code": "import os\nprint(os.environ['GREETING'], os.getcwd().endswith('work/run1'))\n"
            "open('out.txt', 'w').write('x' * 1000)\nsum(range(10**6))",
            "environment_variables": {"GREETING": "hello"},
            "working_directory": "work/run1",
            "metadata": {"ticket": 7},
        },
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["status"] == "pending" and job["kind"] == "job"
    view = _wait(http, job["job_id"], FINAL)
    assert view["status"] == "completed", view
    results = http.get(f"/jobs/{job['job_id']}/results").json()
    assert results["stdout"] == "hello True\n"
    assert results["exit_code"] == 0
    assert results["metadata"] == {"ticket": 7}
    assert len(results["files_created"]) == 1
    assert results["files_created"][0].startswith("/")
    assert results["files_created"][0].endswith("/work/run1/out.txt")
    assert results["execution_time_ms"] > 0
    assert set(results["resource_usage"]) == {"cpu_percent", "cpu_time", "peak_rss_bytes"}
    assert results["resource_usage"]["peak_rss_bytes"] > 0
    assert results["started_at"] and results["finished_at"] and results["created_at"]
    compact = http.get(f"/results/{job['job_id']}").json()
    assert compact == {"status": "completed", "stdout": "hello True\n", "stderr": "", "files": results["files_created"]}
    # The job's own session is closed after it.
    assert http.get(f"/sessions/{results['session_id']}").status_code == 404


def test_job_failures_and_timeouts_are_statuses(http: httpx.Client) -> None:
    failed = http.post("/jobs", json={"code": "raise ValueError('bad')"}).json()
    timed = http.post("/jobs", json={"code": "import time\ntime.sleep(30)", "timeout": 1}).json()
    assert _wait(http, failed["job_id"], FINAL)["status"] == "failed"
    results = http.get(f"/jobs/{failed['job_id']}/results").json()
    assert results["error"]["name"] == "ValueError"
    assert results["exit_code"] == 1
    assert _wait(http, timed["job_id"], FINAL)["status"] == "timeout"
    assert http.get(f"/jobs/{timed['job_id']}/results").json()["exit_code"] == 124


def test_job_in_an_existing_session_keeps_its_directory(http: httpx.Client) -> None:
    sid = http.post("/sessions", json={}).json()["session_id"]
    http.post("/execute", json={"session_id": sid, "command": "import os\nstart = os.getcwd()\nvalue = 5"})
    job = http.post(
        "/jobs", json={"session_id": sid, "code": "import os\nprint(value, os.getcwd().endswith('sub'))",
                       "working_directory": "sub", "capture_files": False},
    ).json()  # fmt: skip
    assert _wait(http, job["job_id"], FINAL)["status"] == "completed"
    assert http.get(f"/results/{job['job_id']}").json()["stdout"] == "5 True\n"
    # The previous directory was restored; the session is still open.
    assert (
        http.post("/execute", json={"session_id": sid, "command": "print(os.getcwd() == start)"}).json()["stdout"]
        == "True\n"
    )
    listed = http.get("/jobs", params={"session_id": sid}).json()
    assert [j["job_id"] for j in listed["jobs"]] == [job["job_id"]]
    http.delete(f"/sessions/{sid}")


def test_cancel_interrupts_a_running_infinite_loop_and_the_queue_moves(http: httpx.Client) -> None:
    loop = http.post("/jobs", json={"code": "while True:\n    pass"}).json()
    _wait(http, loop["job_id"], {"running"})
    queued = http.post("/jobs", json={"code": "print('after the loop')"}).json()
    time.sleep(0.3)
    # --max-jobs 1: the second job waits behind the loop.
    assert http.get(f"/jobs/{queued['job_id']}/status").json()["status"] == "pending"
    assert queued["job_id"] in [j["job_id"] for j in http.get("/jobs", params={"status": "pending"}).json()["jobs"]]
    started = time.monotonic()
    cancelled = http.delete(f"/jobs/{loop['job_id']}").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_requested"] is True
    assert time.monotonic() - started < 5
    assert _wait(http, queued["job_id"], FINAL)["status"] == "completed"
    assert http.get(f"/results/{queued['job_id']}").json()["stdout"] == "after the loop\n"
    # Cancelling a pending job: it never runs.
    blocker = http.post("/jobs", json={"code": "import time\ntime.sleep(30)"}).json()
    _wait(http, blocker["job_id"], {"running"})
    never = http.post("/jobs", json={"code": "print('never')"}).json()
    assert http.delete(f"/jobs/{never['job_id']}").json()["status"] == "cancelled"
    assert http.delete(f"/jobs/{blocker['job_id']}").json()["status"] == "cancelled"
    assert http.get(f"/results/{never['job_id']}").json()["stdout"] == ""
    # A finished job stays as it is; purge deletes its record.
    assert http.delete(f"/jobs/{queued['job_id']}").json()["status"] == "completed"
    http.delete(f"/jobs/{queued['job_id']}", params={"purge": "true"})
    assert http.get(f"/jobs/{queued['job_id']}/status").status_code == 404


def test_execute_async_tasks_are_jobs(http: httpx.Client) -> None:
    sid = http.post("/v1/sessions/session", json={}).json()["session_id"]
    task = http.post("/execute_async", json={"session_id": sid, "command": "print('task')"}).json()
    assert task["task_id"] == task["job_id"]
    deadline = time.monotonic() + 30
    while not (view := http.get(f"/v1/executions/{task['task_id']}").json())["is_complete"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert view["serialized_stdout"] == "task\n"
    assert view["serialized_stderr"] == ""
    assert {"cpu_time", "execution_time", "created_at"} <= set(view)
    as_job = http.get(f"/jobs/{task['task_id']}/results").json()
    assert as_job["kind"] == "task" and as_job["stdout"] == "task\n"
    http.post("/kill", json={"session_id": sid})


def test_restart_keeps_finished_jobs_and_fails_interrupted_ones(live_server_factory: Callable[..., LiveServer]) -> None:
    first = live_server_factory(extra_args=("--max-jobs", "1"))
    with first.client() as http:
        done = http.post("/jobs", json={"code": "print('kept')", "metadata": {"n": 1}}).json()
        _wait(http, done["job_id"], FINAL)
        running = http.post("/jobs", json={"code": "import time\ntime.sleep(600)"}).json()
        _wait(http, running["job_id"], {"running"})
        pending = http.post("/jobs", json={"code": "print('queued')"}).json()
    first.stop(crash=True)  # SIGKILL: the server cannot tidy up its records

    second = live_server_factory(db_path=first.db_path, runtime_dir=first.runtime_dir, extra_args=("--max-jobs", "1"))
    try:
        with second.client() as http:
            kept = http.get(f"/jobs/{done['job_id']}/results").json()
            assert kept["status"] == "completed" and kept["stdout"] == "kept\n" and kept["metadata"] == {"n": 1}
            lost = http.get(f"/jobs/{running['job_id']}/status").json()
            assert lost["status"] == "failed"
            assert "server stopped" in lost["error_message"] and "running" in lost["error_message"]
            never = http.get(f"/jobs/{pending['job_id']}/status").json()
            assert never["status"] == "failed" and "pending" in never["error_message"]
            assert http.get("/health").json()["totals"]["jobs_recovered_at_start"] == 2
    finally:
        second.stop()
        shutil.rmtree(first.workdir, ignore_errors=True)
