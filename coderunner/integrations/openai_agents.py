"""OpenAI Agents SDK sandbox backend: coderunner sessions behind the SDK's ``BaseSandboxClient``/``BaseSandboxSession``.

Select it with ``RunConfig(sandbox=SandboxRunConfig(client=CoderunnerSandboxClient()))``. The SDK's workspace root
(``Manifest.root``, ``/workspace`` by default) is mapped onto the coderunner session directory (``/work`` in docker,
a private temp dir on inprocess): docker's root filesystem is read-only, so ``/workspace`` cannot be created there.
Each ``exec`` runs in a subshell of the session's bash starting in the workspace root (the SDK's commands are
independent), while :func:`python_tool` adds what the SDK's own backends lack: a Python kernel on the same session
whose variables persist between calls.
"""

from __future__ import annotations

import io
import shlex
import uuid
from pathlib import Path
from typing import Any, Literal

from coderunner.errors import CodeRunnerError, FileNotFoundInSessionError, MissingDependencyError
from coderunner.integrations._runner import RunnerSource, async_runner

try:
    from agents import FunctionTool, function_tool
    from agents.sandbox.errors import ExecTimeoutError, ExecTransportError
    from agents.sandbox.manifest import Manifest
    from agents.sandbox.session.base_sandbox_session import BaseSandboxSession
    from agents.sandbox.session.sandbox_client import BaseSandboxClient, BaseSandboxClientOptions
    from agents.sandbox.session.sandbox_session import SandboxSession
    from agents.sandbox.session.sandbox_session_state import SandboxSessionState
    from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
    from agents.sandbox.types import ExecResult, User
except ImportError as exc:  # pragma: no cover - exercised by test_missing_extras
    raise MissingDependencyError("openai-agents", "openai-agents", "The OpenAI Agents SDK integration") from exc

from coderunner.client import AsyncCodeRunner

__all__ = [
    "CoderunnerSandboxClient",
    "CoderunnerSandboxClientOptions",
    "CoderunnerSandboxSession",
    "CoderunnerSandboxSessionState",
    "python_tool",
]


class CoderunnerSandboxClientOptions(BaseSandboxClientOptions):
    """Options for :class:`CoderunnerSandboxClient` (none needed: the backend comes from the client's runner)."""

    type: Literal["coderunner"] = "coderunner"


class CoderunnerSandboxSessionState(SandboxSessionState):
    """Serialisable state: the SDK's state plus the coderunner session id and backend name."""

    type: Literal["coderunner"] = "coderunner"
    coderunner_session_id: str | None = None
    """The coderunner session this state names (reattached on resume while it lives)."""
    backend: str = ""
    """The coderunner backend the session ran on (``inprocess``, ``docker``, ...)."""


class CoderunnerSandboxSession(BaseSandboxSession):
    """One SDK sandbox session over one coderunner session (bash for ``exec``, files through the runner)."""

    state: CoderunnerSandboxSessionState

    def __init__(self, *, state: CoderunnerSandboxSessionState, runner: AsyncCodeRunner) -> None:
        """Wrap ``state``; the coderunner session is started (or reattached) in :meth:`_prepare_backend_workspace`."""
        self.state = state
        self._runner = runner

    @property
    def runner(self) -> AsyncCodeRunner:
        """The runner this session's coderunner session lives on."""
        return self._runner

    async def _ensure_session(self) -> str:
        sid = self.state.coderunner_session_id
        if sid is not None and await self._runner.is_session_active(sid):
            return sid
        session = await self._runner.session(language="bash")
        self.state.coderunner_session_id = session.session_id
        pwd = await self._runner.execute("pwd", language="bash", session_id=session.session_id)
        root = pwd.stdout.strip()
        # The SDK's root (/workspace) is mapped onto the session dir: the manifest says where files really are.
        self.state.manifest = self.state.manifest.model_copy(update={"root": root}, deep=True)
        return session.session_id

    async def _prepare_backend_workspace(self) -> None:
        await self._ensure_session()

    @property
    def session_id_or_raise(self) -> str:
        """The coderunner session id; raises if the session was never started."""
        if self.state.coderunner_session_id is None:
            raise RuntimeError("the coderunner session is not started: use `async with session:` or start() first")
        return self.state.coderunner_session_id

    async def _exec_internal(self, *command: str | Path, timeout: float | None = None) -> ExecResult:
        sid = await self._ensure_session()
        line = " ".join(shlex.quote(str(part)) for part in command)
        # A subshell keeps each exec independent (cwd, variables) as the SDK's backends are, in the persistent bash.
        script = f"(cd {shlex.quote(self.state.manifest.root)} && {line})"
        try:
            result = await self._runner.execute(script, language="bash", timeout=timeout, session_id=sid)
        except CodeRunnerError as exc:
            raise ExecTransportError(command=command, cause=exc) from exc
        if result.status == "timeout":
            raise ExecTimeoutError(command=command, timeout_s=timeout)
        exit_code = result.exit_code if result.exit_code is not None else (0 if result.status == "ok" else 1)
        return ExecResult(stdout=result.stdout.encode(), stderr=result.stderr.encode(), exit_code=exit_code)

    def _absolute(self, path: Path | str) -> str:
        candidate = Path(path)
        return str(candidate if candidate.is_absolute() else Path(self.state.manifest.root) / candidate)

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        """Read a file (absolute, or relative to the workspace root) as a byte stream."""
        try:
            data = await self._runner.download_file(self._absolute(path), session_id=await self._ensure_session())
        except FileNotFoundInSessionError as exc:
            raise FileNotFoundError(str(path)) from exc
        return io.BytesIO(data)

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        """Write a byte (or text) stream to a file (absolute, or relative to the workspace root)."""
        payload = data.read()
        content = payload.encode() if isinstance(payload, str) else bytes(payload)
        await self._runner.write_file(self._absolute(path), content, session_id=await self._ensure_session())

    async def running(self) -> bool:
        """Whether the coderunner session is alive."""
        sid = self.state.coderunner_session_id
        return sid is not None and await self._runner.is_session_active(sid)

    def _archive_path(self) -> str:
        return f"/tmp/.coderunner-workspace-{uuid.uuid4().hex}.tar"

    async def persist_workspace(self) -> io.IOBase:
        """A tar of the workspace root with workspace-relative member paths."""
        sid = await self._ensure_session()
        archive = self._archive_path()
        root = shlex.quote(self.state.manifest.root)
        result = await self._runner.execute(f"tar -cf {archive} -C {root} .", language="bash", session_id=sid)
        if result.exit_code not in (0, None) or result.status != "ok":
            raise ExecTransportError(command=("tar", "-cf", archive), context={"stderr": result.stderr})
        try:
            return io.BytesIO(await self._runner.download_file(archive, session_id=sid))
        finally:
            await self._runner.execute(f"rm -f {archive}", language="bash", session_id=sid)

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        """Extract a tar made by :meth:`persist_workspace` under the workspace root."""
        sid = await self._ensure_session()
        archive = self._archive_path()
        payload = data.read()
        await self._runner.write_file(
            archive, payload if isinstance(payload, bytes) else bytes(payload), session_id=sid
        )
        root = shlex.quote(self.state.manifest.root)
        result = await self._runner.execute(f"tar -xf {archive} -C {root}", language="bash", session_id=sid)
        if result.exit_code not in (0, None) or result.status != "ok":
            raise ExecTransportError(command=("tar", "-xf", archive), context={"stderr": result.stderr})


class CoderunnerSandboxClient(BaseSandboxClient[CoderunnerSandboxClientOptions | None]):
    """SDK sandbox client whose sessions are coderunner sessions (backend from configuration by default)."""

    backend_id = "coderunner"
    supports_default_options = True

    def __init__(self, source: RunnerSource = None, **options: Any) -> None:
        """Drive the runner ``source`` names (see :data:`~coderunner.integrations._runner.RunnerSource`)."""
        self._runner, self._owned = async_runner(source, **options)

    @property
    def runner(self) -> AsyncCodeRunner:
        """The runner the client's sessions live on."""
        return self._runner

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: Manifest | None = None,
        options: CoderunnerSandboxClientOptions | None = None,
    ) -> SandboxSession:
        """A new session (its coderunner session starts when the SDK starts the sandbox session)."""
        manifest = self._validate_manifest_for_create(manifest if manifest is not None else Manifest())
        session_id = uuid.uuid4()
        state = CoderunnerSandboxSessionState(
            session_id=session_id,
            manifest=manifest,
            snapshot=resolve_snapshot(snapshot, str(session_id)),
            backend=self._runner.settings.backend,
        )
        return self._wrap_session(CoderunnerSandboxSession(state=state, runner=self._runner))

    async def delete(self, session: SandboxSession) -> SandboxSession:
        """Close the coderunner session (which removes its directory or container)."""
        inner = session._inner
        if not isinstance(inner, CoderunnerSandboxSession):
            raise TypeError("CoderunnerSandboxClient.delete expects a session it created")
        if inner.state.coderunner_session_id is not None:
            await self._runner.close_session(inner.state.coderunner_session_id)
        return session

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        """Reattach to the coderunner session while it lives; else a fresh one the SDK hydrates from the snapshot."""
        if not isinstance(state, CoderunnerSandboxSessionState):
            raise TypeError("CoderunnerSandboxClient.resume expects a CoderunnerSandboxSessionState")
        return self._wrap_session(CoderunnerSandboxSession(state=state, runner=self._runner))

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        """Rebuild a :class:`CoderunnerSandboxSessionState` from its JSON payload."""
        return self._deserialize_session_state_payload(payload, CoderunnerSandboxSessionState)

    async def aclose(self) -> None:
        """Close the runner if this client made it."""
        if self._owned:
            await self._runner.aclose()


def python_tool(session: CoderunnerSandboxSession | SandboxSession, *, timeout: float | None = 30.0) -> FunctionTool:
    """A ``run_python`` tool on the same coderunner session: variables persist between calls."""
    inner = session._inner if isinstance(session, SandboxSession) else session

    @function_tool(name_override="run_python")
    async def run_python(code: str) -> str:
        """Run Python code in a persistent kernel (variables persist between calls); returns its output."""
        sid = await inner._ensure_session()
        result = await inner.runner.execute(code, language="python", timeout=timeout, session_id=sid)
        parts = [result.stdout]
        if result.stderr:
            parts.append(f"[stderr]\n{result.stderr}")
        if result.status == "timeout":
            parts.append(f"[timeout] the code ran past {timeout} s and was interrupted; the session still works")
        elif result.error is not None:
            parts.append(f"[error] {result.error.ename}: {result.error.evalue}")
        return "\n".join(p for p in parts if p) or "(no output)"

    return run_python
