"""Async task records for ``execute_async``: the state machine shared by the sync and async clients."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from datetime import datetime, timezone

from coderunner.errors import CodeRunnerError, TaskNotFoundError
from coderunner.models import ExecutionResult, TaskInfo, TaskStatus

__all__ = ["TaskTable", "task_status_for"]

MAX_FINISHED_TASKS = 1000


def _now() -> datetime:
    return datetime.now(timezone.utc)


def task_status_for(result: ExecutionResult) -> TaskStatus:
    """Map an execution's status to the task vocabulary (pending/running/completed/failed/timeout/cancelled)."""
    return {"ok": "completed", "error": "failed", "timeout": "timeout", "cancelled": "cancelled"}[result.status]  # type: ignore[return-value]


class TaskTable:
    """Thread-safe table of tasks; keeps the most recent finished ones, drops the oldest."""

    def __init__(self, keep: int = MAX_FINISHED_TASKS) -> None:
        self._lock = threading.Lock()
        self._tasks: OrderedDict[str, TaskInfo] = OrderedDict()
        self._keep = keep

    def new(self, session_id: str | None, language: str) -> TaskInfo:
        """Create a pending task."""
        task = TaskInfo(
            task_id=str(uuid.uuid4()), status="pending", session_id=session_id, language=language, created_at=_now()
        )
        with self._lock:
            self._tasks[task.task_id] = task
            self._trim()
        return task

    def get(self, task_id: str) -> TaskInfo:
        """Look up a task.

        Raises:
            TaskNotFoundError: The id is unknown (or so old it was forgotten).
        """
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"No task {task_id!r}. Task ids come from execute_async().")
        return task

    def list(self) -> list[TaskInfo]:
        """All known tasks, oldest first."""
        with self._lock:
            return list(self._tasks.values())

    def _update(self, task_id: str, **changes: object) -> TaskInfo:
        with self._lock:
            task = self._tasks[task_id]
            if task.is_complete:  # final states never change (a late result after cancel is ignored)
                return task
            task = task.model_copy(update=changes)
            self._tasks[task_id] = task
            if task.is_complete:
                self._trim()
            return task

    def start(self, task_id: str) -> bool:
        """Mark running; False if it was cancelled before it started."""
        return self._update(task_id, status="running", started_at=_now()).status == "running"

    def finish(self, task_id: str, result: ExecutionResult, cancel_requested: bool = False) -> TaskInfo:
        """Record the result (a cancel request turns an interrupted run into 'cancelled')."""
        status = task_status_for(result)
        if cancel_requested and status in ("failed", "cancelled"):
            status = "cancelled"
        return self._update(task_id, status=status, result=result, finished_at=_now())

    def fail(self, task_id: str, exc: BaseException) -> TaskInfo:
        """Record that the task could not run at all."""
        message = exc.message if isinstance(exc, CodeRunnerError) else f"{type(exc).__name__}: {exc}"
        return self._update(task_id, status="failed", error_message=message, finished_at=_now())

    def cancel_pending(self, task_id: str) -> TaskInfo:
        """Mark a task cancelled if it has not started; return it either way."""
        with self._lock:
            task = self._tasks[task_id]
            if task.status == "pending":
                task = task.model_copy(update={"status": "cancelled", "finished_at": _now()})
                self._tasks[task_id] = task
            return task

    def _trim(self) -> None:
        finished = [tid for tid, t in self._tasks.items() if t.is_complete]
        for tid in finished[: max(0, len(finished) - self._keep)]:
            del self._tasks[tid]
