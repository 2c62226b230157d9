"""A stateful Google ADK code executor (``BaseCodeExecutor``): each ADK session's code in a coderunner session.

::

    from google.adk.agents import LlmAgent
    from coderunner.integrations.google_adk import CoderunnerCodeExecutor

    executor = CoderunnerCodeExecutor()                      # CODERUNNER_BACKEND picks inprocess, docker, ...
    agent = LlmAgent(name="analyst", model=model, code_executor=executor)
    ...
    executor.close()                                         # or use it as a context manager

Unlike ADK's own container executor (stateless, one container shared by every session, files ignored), each
ADK session gets a coderunner session of its own, keyed by the session id ADK passes as ``execution_id``:
variables and files carry from one code block to the next, and sessions never see each other. ``input_files``
are written into the session's directory (once each: the code may change them), files the code creates or
changes come back as ``output_files`` (ADK saves them as artifacts), and so do the images it displays.

ADK's conventions hold: a non-empty ``stderr`` marks a failed execution (it drives the retry counter), so
``stderr`` carries the traceback of an error and is empty when the code succeeded; a timeout interrupts the
code, keeps the session and says so in ``stderr``.

This module needs ``google-adk`` (``pip install 'coderunner-sandbox[google-adk]'``); importing it without that
raises :class:`~coderunner.errors.MissingDependencyError`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import mimetypes
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coderunner.client import CodeRunner, Session
from coderunner.errors import CodeRunnerError, MissingDependencyError, SessionNotFoundError
from coderunner.integrations._runner import RunnerSource, sync_runner
from coderunner.models import ExecutionResult

try:
    from google.adk.code_executors.base_code_executor import BaseCodeExecutor
    from google.adk.code_executors.code_execution_utils import CodeExecutionInput, CodeExecutionResult, File
    from pydantic import ConfigDict, Field, PrivateAttr
except ImportError as exc:  # the [google-adk] extra is optional
    raise MissingDependencyError("google-adk", "google-adk", "The Google ADK integration") from exc

if TYPE_CHECKING:
    from google.adk.agents.invocation_context import InvocationContext

__all__ = ["CoderunnerCodeExecutor"]

MAX_OUTPUT_FILE_BYTES = 32 * 1024 * 1024
"""Largest file returned as an output file (ADK keeps artifacts in memory); a larger one is named in stdout."""

_IMAGE_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/svg+xml": ".svg"}


@dataclass
class _Box:
    """One ADK session's coderunner session and the input files already written into it."""

    session: Session
    written: dict[str, str] = field(default_factory=dict)
    """Input file name -> digest of the content written, so an unchanged file is not written again."""
    images: int = 0


def _content_bytes(content: str | bytes) -> bytes:
    """An ADK ``File``'s bytes: ``bytes`` are the content itself, ``str`` is base64 (ADK's own reading)."""
    if isinstance(content, bytes):
        return content
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return content.encode()  # plain text where base64 was expected: keep it rather than fail the run


def _stderr(result: ExecutionResult, timeout: float | None) -> str:
    """ADK's stderr: empty on success (a non-empty one means failure to ADK), else what says why it failed."""
    if result.success:
        return ""
    parts = [result.stderr.rstrip("\n")] if result.stderr.strip() else []
    if result.status == "timeout":
        limit = f"{timeout:g} seconds" if timeout is not None else "its time limit"
        parts.append(f"Code execution timed out after {limit}; the session and its variables were kept.")
    elif result.error is not None:
        parts.append(result.error.traceback or str(result.error))
    else:
        parts.append(f"Code execution exited with status {result.exit_code}.")
    return "\n".join(parts)


class CoderunnerCodeExecutor(BaseCodeExecutor):
    """ADK's ``BaseCodeExecutor`` over coderunner: one stateful Python session per ADK session.

    Attributes:
        runner: See :data:`~coderunner.integrations._runner.RunnerSource`: a runner of either colour (used as
            is, not closed), a backend name, or None for a runner of its own from ``CODERUNNER_*`` settings
            (made at the first execution, closed by :meth:`close`).
        session_options: Options for each coderunner session, e.g. ``{"memory": "1g", "cpus": 1}`` on docker.
        timeout_seconds: Seconds one code block may run before it is interrupted (the session is kept).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    stateful: bool = True
    timeout_seconds: int | None = 300
    runner: Any = Field(default=None, exclude=True)
    session_options: dict[str, Any] = Field(default_factory=dict)

    _runner: CodeRunner | None = PrivateAttr(default=None)
    _owns_runner: bool = PrivateAttr(default=False)
    _boxes: dict[str, _Box] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _closed: bool = PrivateAttr(default=False)

    def _the_runner(self) -> CodeRunner:
        with self._lock:
            if self._closed:
                raise RuntimeError("this CoderunnerCodeExecutor was closed; make a new one")
            if self._runner is None:
                source: RunnerSource = self.runner
                self._runner, self._owns_runner = sync_runner(source)
            return self._runner

    def _box(self, key: str) -> _Box:
        """The session for ``key``, made if needed."""
        runner = self._the_runner()
        with self._lock:
            box = self._boxes.get(key)
        if box is not None:
            return box
        session = runner.session("python", metadata={"adk_execution_id": key[:200]}, **self.session_options)
        made = _Box(session)
        with self._lock:
            raced = self._boxes.setdefault(key, made)
        if raced is not made:  # another thread made this key's session first: keep one
            with contextlib.suppress(CodeRunnerError):
                session.close()
            return raced
        return made

    def _forget(self, key: str, box: _Box) -> None:
        with self._lock:
            if self._boxes.get(key) is box:
                del self._boxes[key]

    def execute_code(
        self,
        invocation_context: InvocationContext,
        code_execution_input: CodeExecutionInput,
    ) -> CodeExecutionResult:
        """Run one code block in the session of its ADK session (a fresh one per call when not stateful)."""
        stateful = self.stateful and code_execution_input.execution_id is not None
        key = code_execution_input.execution_id if stateful else f"once-{uuid.uuid4().hex}"
        assert key is not None
        notes: list[str] = []
        box = self._box(key)
        try:
            try:
                result = self._run(box, code_execution_input)
            except SessionNotFoundError as exc:
                # The session expired (idle) or was closed behind us: the code never ran, so running it in a
                # fresh session is safe; the model is told its earlier variables are gone.
                self._forget(key, box)
                notes.append(f"[sandbox] {exc.message}; a new session was started: earlier variables are gone.")
                box = self._box(key)
                result = self._run(box, code_execution_input)
            files = self._output_files(box, result, notes)
        finally:
            if not stateful:
                self._forget(key, box)
                with contextlib.suppress(CodeRunnerError):
                    box.session.close()
        notes += [f"[sandbox] {warning}" for warning in result.warnings]
        stdout = result.stdout + "".join(f"\n{note}" for note in notes)
        return CodeExecutionResult(
            stdout=stdout,
            stderr=_stderr(result, self.timeout_seconds),
            output_files=files,
            exit_code=result.exit_code,
        )

    def _run(self, box: _Box, request: CodeExecutionInput) -> ExecutionResult:
        for item in request.input_files:
            data = _content_bytes(item.content)
            digest = hashlib.sha256(data).hexdigest()
            if box.written.get(item.name) != digest:
                box.session.write_file(item.name, data)
                box.written[item.name] = digest
        timeout = float(self.timeout_seconds) if self.timeout_seconds else None
        return box.session.execute(request.code, timeout=timeout)

    def _output_files(self, box: _Box, result: ExecutionResult, notes: list[str]) -> list[File]:
        """The files the code created or changed, then the images it displayed, as ADK output files."""
        files: list[File] = []
        for name in [*result.files_created, *result.files_modified]:
            if name.startswith(".") or "/." in name:
                continue  # coderunner's and the tools' own dot-files (captured output, caches)
            try:
                data = box.session.download_file(name)
            except CodeRunnerError as exc:
                notes.append(f"[sandbox] {name} was not returned: {exc.message}")
                continue
            if len(data) > MAX_OUTPUT_FILE_BYTES:
                notes.append(
                    f"[sandbox] {name} ({len(data)} bytes) is over the {MAX_OUTPUT_FILE_BYTES} byte limit for "
                    "output files: it stays in the session; write a smaller file to return it."
                )
                continue
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            files.append(File(name=name, content=data, mime_type=mime))
        for out in result.outputs:
            image = next((m for m in _IMAGE_EXTENSIONS if m in out.data), None)
            if image is None:
                continue
            box.images += 1
            raw = out.data[image]
            data = raw.encode() if image == "image/svg+xml" else base64.b64decode(raw)
            files.append(File(name=f"output_{box.images}{_IMAGE_EXTENSIONS[image]}", content=data, mime_type=image))
        return files

    @property
    def session_ids(self) -> dict[str, str]:
        """ADK execution id -> the coderunner session running it (for inspection)."""
        with self._lock:
            return {key: box.session.session_id for key, box in self._boxes.items()}

    def close_session(self, execution_id: str) -> bool:
        """Close the coderunner session of one ADK session (e.g. when the ADK session is deleted)."""
        with self._lock:
            box = self._boxes.pop(execution_id, None)
        if box is None:
            return False
        with contextlib.suppress(SessionNotFoundError):
            box.session.close()
        return True

    def close(self) -> None:
        """Close every session this executor made and, when it made the runner, the runner. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            boxes, self._boxes = list(self._boxes.values()), {}
            runner, owns = self._runner, self._owns_runner
        for box in boxes:
            with contextlib.suppress(CodeRunnerError):
                box.session.close()
        if runner is not None and owns:
            runner.close()

    def __enter__(self) -> CoderunnerCodeExecutor:
        """Use the executor as a context manager that closes it on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the executor."""
        self.close()
