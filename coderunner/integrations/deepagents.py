"""A LangChain Deep Agents sandbox backend (``BaseSandbox``) whose shell and files live in a coderunner session.

::

    from deepagents import create_deep_agent
    from coderunner.integrations.deepagents import CoderunnerSandbox

    with CoderunnerSandbox() as sandbox:            # CODERUNNER_BACKEND picks inprocess, docker, ...
        agent = create_deep_agent(model=model, backend=sandbox)
        agent.invoke({"messages": [{"role": "user", "content": "Count the lines of /etc/passwd"}]})

Each sandbox is one coderunner session running its persistent ``bash``: ``export``, ``cd`` and files carry
from one ``execute`` to the next. ``read``/``ls``/``grep``/``glob``/``edit`` are Deep Agents' own helpers run
through :meth:`CoderunnerSandbox.execute`; uploads and downloads go through coderunner's file API. A command
that runs past its time limit is interrupted (exit code 124, like GNU ``timeout``) and the session survives.

This module needs ``deepagents`` (``pip install 'coderunner-sandbox[deepagents]'``); importing it without
that raises :class:`~coderunner.errors.MissingDependencyError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from types import TracebackType
from typing import Any

from coderunner._core import MAX_TIMEOUT
from coderunner.errors import (
    FileNotFoundInSessionError,
    InvalidRequestError,
    MissingDependencyError,
    PathError,
    PermissionDeniedError,
    SessionNotFoundError,
)
from coderunner.integrations._runner import RunnerSource, sync_runner
from coderunner.models import ExecutionResult

try:
    from deepagents.backends.protocol import (
        ExecuteResponse,
        FileDownloadResponse,
        FileOperationError,
        FileUploadResponse,
    )
    from deepagents.backends.sandbox import BaseSandbox
except ImportError as exc:  # the [deepagents] extra is optional
    raise MissingDependencyError("deepagents", "deepagents", "The Deep Agents integration") from exc

__all__ = ["CoderunnerSandbox", "CoderunnerSandboxProvider"]

_MAX_OUTPUT_BYTES = 16 * 1024 * 1024
"""Most combined output :meth:`CoderunnerSandbox.execute` returns; past it the output is cut (``truncated``)."""


def _file_error(exc: Exception) -> FileOperationError | str:
    """The protocol's error literal for a coderunner file error (anything else keeps its own code)."""
    if isinstance(exc, PermissionDeniedError):
        return "permission_denied"
    if isinstance(exc, FileNotFoundInSessionError):
        return "file_not_found"
    if isinstance(exc, PathError):
        return "invalid_path"
    if isinstance(exc, InvalidRequestError) and "is a directory" in exc.message:
        return "is_directory"
    if isinstance(exc, InvalidRequestError):
        return "invalid_path"
    return f"{getattr(exc, 'code', 'error')}: {exc}"


class CoderunnerSandbox(BaseSandbox):
    """A Deep Agents sandbox backed by one coderunner session (its persistent bash and its filesystem).

    Args:
        runner: See :data:`~coderunner.integrations._runner.RunnerSource`: a runner of either colour (used as
            is, not closed), a backend name, or None for a runner of its own from ``CODERUNNER_*`` settings.
        session_id: Reattach to this existing session instead of creating one (it is closed by
            :meth:`close` all the same: the sandbox is the session).
        max_output_bytes: Most combined output returned per command.
        **session_options: Session options for a new session (``env``, ``working_dir``, ``lifetime``,
            ``idle_timeout``, ``metadata`` or the backend's own, e.g. ``memory="2g"`` on docker).
    """

    def __init__(
        self,
        runner: RunnerSource = None,
        *,
        session_id: str | None = None,
        max_output_bytes: int = _MAX_OUTPUT_BYTES,
        **session_options: Any,
    ) -> None:
        if session_id is not None and session_options:
            raise InvalidRequestError("Session options apply to a new session; drop them to reattach by session_id.")
        self._runner, self._owns_runner = sync_runner(runner)
        self._max_output_bytes = max_output_bytes
        self._closed = False
        try:
            if session_id is None:
                session_id = self._runner.session(language="bash", **session_options).session_id
            elif not self._runner.is_session_active(session_id):
                raise SessionNotFoundError(f"Session {session_id!r} does not exist (closed or expired).")
        except BaseException:
            if self._owns_runner:
                self._runner.close()
            raise
        self._session_id = session_id

    @property
    def id(self) -> str:
        """The coderunner session id (pass it as ``session_id`` to reattach)."""
        return self._session_id

    # -- execution ----------------------------------------------------------------------------------

    def execute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        """Run a shell command in the session's bash; stdout and stderr come back combined, in arrival order.

        Args:
            command: The shell command (it runs in the persistent shell: ``cd``/``export`` persist).
            timeout: Seconds before it is interrupted (exit code 124, the session survives); 0 means
                coderunner's longest limit; None the runner's default.

        Raises:
            ValueError: ``timeout`` is negative or longer than coderunner allows.
        """
        seconds = self._timeout(timeout)
        chunks: list[str] = []
        lock = threading.Lock()

        def collect(text: str) -> None:
            with lock:
                chunks.append(text)

        result = self._runner.execute(
            command, "bash", seconds, session_id=self._session_id, on_stdout=collect, on_stderr=collect
        )
        return self._response(result, "".join(chunks), timeout)

    async def aexecute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        """Async twin of :meth:`execute` (runs it in a worker thread; the runner is thread-safe)."""
        return await asyncio.to_thread(self.execute, command, timeout=timeout)

    @staticmethod
    def _timeout(timeout: int | None) -> float | None:
        if timeout is None:
            return None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}.")
        if timeout > MAX_TIMEOUT:
            raise ValueError(f"timeout must be at most {MAX_TIMEOUT:.0f} seconds, got {timeout}.")
        return MAX_TIMEOUT if timeout == 0 else float(timeout)

    def _response(self, result: ExecutionResult, streamed: str, timeout: int | None) -> ExecuteResponse:
        output = streamed
        truncated = False
        if result.truncated:
            # coderunner capped the streams and saved them in full: fetch them, so the model sees everything
            # up to our own bound (the order of stdout against stderr is then stdout first).
            output, truncated = self._full_output(result, streamed)
        encoded = output.encode("utf-8", "surrogateescape")
        if len(encoded) > self._max_output_bytes:
            output = encoded[: self._max_output_bytes].decode("utf-8", "ignore")
            truncated = True
        notes: list[str] = []
        if result.status == "timeout":
            limit = "its" if timeout is None else f"the {timeout} s"
            notes.append(
                f"Error: Command timed out ({limit} limit) and was interrupted; the session is still usable. "
                "For long-running commands, re-run with a larger timeout."
            )
        elif result.status == "cancelled":
            notes.append("Error: Command was cancelled.")
        if result.state_lost:
            notes.append("Note: the shell was restarted: exported variables and the working directory were reset.")
        if notes:
            output = (output.rstrip("\n") + "\n" if output else "") + "\n".join(notes)
        return ExecuteResponse(output=output, exit_code=result.exit_code, truncated=truncated)

    def _full_output(self, result: ExecutionResult, streamed: str) -> tuple[str, bool]:
        parts: list[str] = []
        for kept, spilled in ((result.stdout, result.stdout_file), (result.stderr, result.stderr_file)):
            if spilled is None:
                parts.append(kept)
                continue
            try:
                parts.append(
                    self._runner.download_file(spilled, session_id=self._session_id).decode("utf-8", "replace")
                )
            except (FileNotFoundInSessionError, PathError):
                return streamed, True
        return "".join(parts), False

    # -- files --------------------------------------------------------------------------------------

    def upload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        """Write each file (absolute paths; parents are created), reporting each one's error apart."""
        responses: list[FileUploadResponse] = []
        for path, content in files:
            if not path.startswith("/"):
                responses.append(FileUploadResponse(path=path, error="invalid_path"))
                continue
            try:
                self._runner.write_file(path, content, session_id=self._session_id)
            except (InvalidRequestError, FileNotFoundInSessionError) as exc:
                responses.append(FileUploadResponse(path=path, error=_file_error(exc)))
            else:
                responses.append(FileUploadResponse(path=path, error=None))
        return responses

    def download_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        """Read each file (absolute paths), reporting each one's error apart."""
        responses: list[FileDownloadResponse] = []
        for path in paths:
            if not path.startswith("/"):
                responses.append(FileDownloadResponse(path=path, content=None, error="invalid_path"))
                continue
            try:
                data = self._runner.download_file(path, session_id=self._session_id)
            except (InvalidRequestError, FileNotFoundInSessionError) as exc:
                responses.append(FileDownloadResponse(path=path, content=None, error=_file_error(exc)))
            else:
                responses.append(FileDownloadResponse(path=path, content=data, error=None))
        return responses

    async def aupload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        """Async twin of :meth:`upload_files`."""
        return await asyncio.to_thread(self.upload_files, files)

    async def adownload_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        """Async twin of :meth:`download_files`."""
        return await asyncio.to_thread(self.download_files, paths)

    # -- lifecycle ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the session (and the runner, if this sandbox made it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.suppress(SessionNotFoundError):
                self._runner.close_session(self._session_id)
        finally:
            if self._owns_runner:
                self._runner.close()

    def delete(self, file_path: str | None = None) -> Any:
        """With no argument, close the sandbox (as LangChain's sandbox suites call it); with a path, delete it."""
        if file_path is None:
            self.close()
            return None
        return super().delete(file_path)

    def __enter__(self) -> CoderunnerSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class CoderunnerSandboxProvider:
    """Deep Agents Code sandbox provider: creates, reattaches to and deletes :class:`CoderunnerSandbox` es.

    Args:
        runner: See :data:`~coderunner.integrations._runner.RunnerSource` (None: one runner of its own from
            ``CODERUNNER_*`` settings, shared by the sandboxes it creates, closed with :meth:`close`).
    """

    def __init__(self, runner: RunnerSource = None) -> None:
        self._runner, self._owns_runner = sync_runner(runner)
        self._sandboxes: dict[str, CoderunnerSandbox] = {}

    @property
    def metadata(self) -> Any:
        """Deep Agents Code's ``SandboxProviderMetadata`` when ``deepagents_code`` is installed, else None."""
        try:
            from deepagents_code.integrations.sandbox_provider import SandboxProviderMetadata
        except ImportError:
            return None
        # Docker sessions start in /work; elsewhere each session has a private directory, so name the temp root.
        working_dir = "/work" if self._runner.backend.name == "docker" else tempfile.gettempdir()
        return SandboxProviderMetadata(
            name="coderunner",
            working_dir=working_dir,
            supports_sandbox_id=True,
            backend_module="coderunner.integrations.deepagents",
        )

    def get_or_create(self, *, sandbox_id: str | None = None, **kwargs: Any) -> CoderunnerSandbox:
        """The sandbox ``sandbox_id`` names (reattached), or a new one with ``kwargs`` as session options."""
        if sandbox_id is not None and sandbox_id in self._sandboxes:
            return self._sandboxes[sandbox_id]
        sandbox = CoderunnerSandbox(self._runner, session_id=sandbox_id, **kwargs)
        self._sandboxes[sandbox.id] = sandbox
        return sandbox

    def delete(self, *, sandbox_id: str, **kwargs: Any) -> None:
        """Close the sandbox's session (an unknown or already closed id is not an error)."""
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is not None:
            sandbox.close()
            return
        self._runner.close_session(sandbox_id)

    async def aget_or_create(self, *, sandbox_id: str | None = None, **kwargs: Any) -> CoderunnerSandbox:
        """Async twin of :meth:`get_or_create`."""
        return await asyncio.to_thread(lambda: self.get_or_create(sandbox_id=sandbox_id, **kwargs))

    async def adelete(self, *, sandbox_id: str, **kwargs: Any) -> None:
        """Async twin of :meth:`delete`."""
        await asyncio.to_thread(lambda: self.delete(sandbox_id=sandbox_id, **kwargs))

    def close(self) -> None:
        """Close every sandbox this provider created, and its runner if it made it."""
        for sid in list(self._sandboxes):
            self.delete(sandbox_id=sid)
        if self._owns_runner:
            self._runner.close()
