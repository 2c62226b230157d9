"""Conformance: the async client matches the sync one; async tasks run, report and cancel."""

from __future__ import annotations

import time

import pytest

from coderunner import AsyncCodeRunner, CodeRunner, TaskNotFoundError

CASES = [
    ("python", "x = 6\nprint(x * 7)"),
    ("python", "1/0"),
    ("bash", "echo out; echo err >&2; (exit 3)"),
    ("javascript", "console.log([1,2,3].map(n => n * 2).join(','))"),
]


def _essentials(result: object) -> tuple[object, ...]:
    r = result  # type: ignore[assignment]
    return (r.status, r.stdout, r.stderr, r.exit_code, r.error.name if r.error else None)  # type: ignore[attr-defined]


async def test_sync_and_async_clients_agree(shared_runner: CodeRunner, arunner: AsyncCodeRunner) -> None:
    sync_session = shared_runner.session()
    async_session = await arunner.session()
    try:
        for language, code in CASES:
            a = sync_session.execute(code, language)
            b = await async_session.execute(code, language)
            assert _essentials(a) == _essentials(b), (language, code)
    finally:
        sync_session.close()
        await async_session.close()


async def test_async_default_session_and_files(arunner: AsyncCodeRunner) -> None:
    await arunner.execute("value = 'kept'")
    assert (await arunner.execute("print(value)")).stdout == "kept\n"
    await arunner.write_file("a.txt", "A")
    assert await arunner.download_file("a.txt") == b"A"
    assert await arunner.is_session_active()
    assert await arunner.close_session()
    assert not await arunner.is_session_active()


def test_execute_async_and_result(shared_runner: CodeRunner) -> None:
    with shared_runner.session() as s:
        task_id = s.execute_async("import time; time.sleep(0.3); print('done')")
        assert shared_runner.get_task(task_id).status in ("pending", "running")
        result = shared_runner.get_task_result(task_id, timeout=30)
        assert result.stdout == "done\n"
        task = shared_runner.get_task(task_id)
        assert task.status == "completed" and task.is_complete
        assert task.started_at is not None and task.finished_at is not None
        failing = shared_runner.get_task_result(s.execute_async("1/0"), timeout=30)
        assert failing.status == "error"


def test_cancel_running_task_interrupts_and_keeps_session(shared_runner: CodeRunner) -> None:
    with shared_runner.session() as s:
        s.execute("kept = 'yes'")
        task_id = s.execute_async("while True:\n    pass", timeout=120)
        deadline = time.monotonic() + 10
        while shared_runner.get_task(task_id).status == "pending" and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        shared_runner.cancel_task(task_id)
        result = shared_runner.get_task_result(task_id, timeout=30)
        assert result.status == "cancelled"
        assert shared_runner.get_task(task_id).status == "cancelled"
        checked = s.execute("print(kept)")
        assert checked.stdout == "yes\n", (result, checked)


def _wait_until_running(runner: CodeRunner, task_id: str) -> None:
    deadline = time.monotonic() + 10
    while runner.get_task(task_id).status == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)


def test_cancelling_a_queued_task_leaves_the_running_call_alone(shared_runner: CodeRunner) -> None:
    import threading

    with shared_runner.session() as s:
        first = s.execute_async("import time; time.sleep(1.5); print('first done')")
        _wait_until_running(shared_runner, first)
        queued = s.execute_async("print('queued ran')")
        time.sleep(0.2)
        assert shared_runner.get_task(queued).status == "pending"  # waits for its turn in the session
        shared_runner.cancel_task(queued)
        done = shared_runner.get_task_result(first, timeout=30)
        assert (done.status, done.stdout) == ("ok", "first done\n")
        assert shared_runner.get_task(queued).status == "cancelled"
        assert shared_runner.get_task(queued).result is None  # it never ran

        # The same when the running call is a plain execute from another thread.
        results = []
        worker = threading.Thread(
            target=lambda: results.append(s.execute("import time; time.sleep(1.5); print('direct done')"))
        )
        worker.start()
        time.sleep(0.3)
        queued = s.execute_async("print('queued ran')")
        time.sleep(0.2)
        shared_runner.cancel_task(queued)
        worker.join(30)
        assert (results[0].status, results[0].stdout) == ("ok", "direct done\n")
        assert shared_runner.get_task(queued).status == "cancelled"


def test_get_task_result_waits_with_a_limit(shared_runner: CodeRunner) -> None:
    with shared_runner.session() as s:
        task_id = s.execute_async("import time; time.sleep(5)")
        with pytest.raises(TimeoutError):
            shared_runner.get_task_result(task_id, timeout=0.2)
        shared_runner.cancel_task(task_id)
    with pytest.raises(TaskNotFoundError):
        shared_runner.get_task("no-such-task")


async def test_async_tasks(arunner: AsyncCodeRunner) -> None:
    task_id = await arunner.execute_async("print('async task')")
    result = await arunner.get_task_result(task_id, timeout=30)
    assert result.stdout == "async task\n"
    loop_id = await arunner.execute_async("while True: pass", timeout=120)
    for _ in range(200):
        if (await arunner.get_task(loop_id)).status == "running":
            break
        import asyncio

        await asyncio.sleep(0.02)
    await arunner.cancel_task(loop_id)
    assert (await arunner.get_task_result(loop_id, timeout=30)).status == "cancelled"


async def test_async_cancel_of_a_queued_task_leaves_the_running_one_alone(arunner: AsyncCodeRunner) -> None:
    import asyncio

    session = await arunner.session()
    try:
        first = await session.execute_async("import time; time.sleep(1.5); print('first done')")
        for _ in range(500):
            if (await arunner.get_task(first)).status == "running":
                break
            await asyncio.sleep(0.02)
        queued = await session.execute_async("print('queued ran')")
        await asyncio.sleep(0.2)
        assert (await arunner.get_task(queued)).status == "pending"
        await arunner.cancel_task(queued)
        done = await arunner.get_task_result(first, timeout=30)
        assert (done.status, done.stdout) == ("ok", "first done\n")
        assert (await arunner.get_task(queued)).status == "cancelled"
    finally:
        await session.close()
