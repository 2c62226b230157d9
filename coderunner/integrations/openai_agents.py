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
    from agents.sandbox.capabilities.capability import Capability
    from agents.sandbox.errors import ExecTimeoutError, ExecTransportError
    from agents.sandbox.manifest import Manifest
    from agents.sandbox.session.base_sandbox_session import BaseSandboxSession
    from agents.sandbox.session.sandbox_client import BaseSandboxClient, BaseSandboxClientOptions
    from agents.sandbox.session.sandbox_session import SandboxSession
    from agents.sandbox.session.sandbox_session_state import SandboxSessionState
    from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
    from agents.sandbox.types import ExecResult, User
    from agents.tool import Tool
except ImportError as exc:  # pragma: no cover - exercised by test_missing_extras
    raise MissingDependencyError("openai-agents", "openai-agents", "The OpenAI Agents SDK integration") from exc

from coderunner.client import AsyncCodeRunner
from coderunner.models import ExecutionResult

__all__ = [
    "CoderunnerSandboxClient",
    "CoderunnerSandboxClientOptions",
    "CoderunnerSandboxSession",
    "CoderunnerSandboxSessionState",
    "StatefulPython",
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
        """The live coderunner session id: the state's while it lives, else a fresh one (root remapped)."""
        sid = self.state.coderunner_session_id
        if sid is not None and await self._runner.is_session_active(sid):
            return sid
        session = await self._runner.session(language="bash")
        self.state.coderunner_session_id = session.session_id
        self.state.backend = self._runner.backend.name
        pwd = await self._runner.execute("pwd", language="bash", session_id=session.session_id)
        # The SDK's root (/workspace by default) is mapped onto the session dir: on docker the root fs is
        # read-only, so the manifest is told where the workspace really is and every path follows from it.
        self.state.manifest = self.state.manifest.model_copy(update={"root": pwd.stdout.strip()}, deep=True)
        return session.session_id

    async def _ensure_backend_started(self) -> None:
        sid = self.state.coderunner_session_id
        reattached = sid is not None and await self._runner.is_session_active(sid)
        if not reattached:
            # A fresh session's workspace is empty: the SDK then applies the manifest or restores the snapshot.
            self.state.workspace_root_ready = False
        self._set_start_state_preserved(reattached)
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

    _ARCHIVE_PREFIX = ".coderunner-workspace-"

    def _archive_path(self) -> str:
        # In the workspace itself (left out of the tar): a path outside the session directory is refused by
        # runners without absolute paths (a remote inprocess server), and the session's /tmp may be small.
        return str(Path(self.state.manifest.root) / f"{self._ARCHIVE_PREFIX}{uuid.uuid4().hex}.tar")

    async def persist_workspace(self) -> io.IOBase:
        """A tar of the workspace root with workspace-relative member paths."""
        sid = await self._ensure_session()
        archive = self._archive_path()
        root = shlex.quote(self.state.manifest.root)
        # Paths the SDK registered as not persisted (its runtime helpers, ephemeral mounts) stay out of the tar.
        skipped = [f"./{p.as_posix()}" for p in sorted(self._persist_workspace_skip_relpaths())]
        excludes = " ".join(f"--exclude={shlex.quote(p)}" for p in [*skipped, f"./{self._ARCHIVE_PREFIX}*.tar"])
        result = await self._runner.execute(
            f"tar -cf {archive} {excludes} -C {root} .", language="bash", session_id=sid
        )
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
            archive, payload.encode() if isinstance(payload, str) else bytes(payload), session_id=sid
        )
        root = shlex.quote(self.state.manifest.root)
        try:
            result = await self._runner.execute(f"tar -xf {archive} -C {root}", language="bash", session_id=sid)
        finally:
            await self._runner.execute(f"rm -f {archive}", language="bash", session_id=sid)
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


def python_tool(session: BaseSandboxSession, *, timeout: float | None = 30.0) -> FunctionTool:
    """A ``run_python`` tool on the same coderunner session as ``session``: variables persist between calls.

    Args:
        session: A session :class:`CoderunnerSandboxClient` made (the SDK's wrapper or the inner session).
        timeout: Seconds each call may run; past it the code is interrupted, the kernel and its variables kept.

    Raises:
        TypeError: ``session`` is not a coderunner session (the SDK's own backends have no persistent kernel).
    """
    inner = session._inner if isinstance(session, SandboxSession) else session
    if not isinstance(inner, CoderunnerSandboxSession):
        raise TypeError(
            "python_tool needs a session made by CoderunnerSandboxClient: "
            "pass RunConfig(sandbox=SandboxRunConfig(client=CoderunnerSandboxClient()))"
        )
    coderunner_session = inner

    @function_tool(name_override="run_python")
    async def run_python(code: str) -> str:
        """Run Python code in a persistent kernel in the sandbox workspace; variables persist between calls.

        Args:
            code: Python source; the value of a final expression is shown, like in a notebook.
        """
        sid = await coderunner_session._ensure_session()
        result = await coderunner_session.runner.execute(code, language="python", timeout=timeout, session_id=sid)
        return _python_result_text(result, timeout)

    return run_python


def _python_result_text(result: ExecutionResult, timeout: float | None) -> str:
    parts = [result.stdout]
    parts.extend(str(output.data.get("text/plain", "")) for output in result.outputs if output.data.get("text/plain"))
    if result.stderr:
        parts.append(f"[stderr]\n{result.stderr}")
    if result.status == "timeout":
        parts.append(
            f"[timeout] the code ran past {timeout} s and was interrupted; the session and its variables remain"
        )
    elif result.error is not None:
        parts.append(f"[error] {result.error.name}: {result.error.value}")
    return "\n".join(part for part in parts if part) or "(no output)"


class StatefulPython(Capability):
    """Sandbox-agent capability: a ``run_python`` tool whose kernel lives in the agent's coderunner session.

    Add it to ``SandboxAgent(capabilities=[*Capabilities.default(), StatefulPython()])``; the SDK binds the
    run's session to it, so the tool works on the same workspace as the shell and file tools.
    """

    type: Literal["coderunner_python"] = "coderunner_python"
    timeout: float | None = 30.0
    """Seconds each call may run before it is interrupted (the kernel and its variables are kept)."""

    def tools(self) -> list[Tool]:
        """The ``run_python`` tool on the bound session."""
        if self.session is None:
            raise ValueError("StatefulPython is not bound to a sandbox session (use it on a SandboxAgent)")
        return [python_tool(self.session, timeout=self.timeout)]

    async def instructions(self, manifest: Manifest) -> str | None:
        """Tell the model the Python kernel keeps its state."""
        return (
            "Use `run_python` for Python: it is one persistent kernel (variables, imports and definitions "
            f"survive between calls) whose working directory is the workspace root {manifest.root}."
        )
