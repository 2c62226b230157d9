"""A pydantic-ai workspace backend and capability over one coderunner session (commands, files, stateful Python).

::

    from pydantic_ai import Agent
    from coderunner.integrations.pydantic_ai import CoderunnerWorkspace

    workspace = CoderunnerWorkspace()                  # backend from CODERUNNER_BACKEND: inprocess, docker, ...
    agent = Agent("openai:gpt-5.2", capabilities=[workspace])
    ...
    await workspace.aclose()                           # closes the sessions it created (and its runner)

Commands run as independent processes launched from the session's persistent bash (a subshell each: they start
in the working directory, stdin at EOF, per-call ``env``), their output captured to files in the session and read
back as bytes, so undecodable bytes become U+FFFD and nothing is cut. File data goes through coderunner's file API;
metadata operations (stat, list, mkdir, remove, realpath) and error classification run in the session's Python
interpreter with ``os`` semantics, so pydantic-ai gets its builtin file errors. ``run_python`` is the extra:
Python whose variables persist between calls, on the same filesystem as the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from types import TracebackType
from typing import Any

from coderunner.client import AsyncCodeRunner
from coderunner.client.aio import AsyncSession
from coderunner.errors import (
    BackendError,
    CodeRunnerError,
    MissingDependencyError,
    SessionNotFoundError,
)
from coderunner.integrations._runner import RunnerSource, async_runner
from coderunner.models import ExecutionResult
from coderunner.tools.rendering import format_execution_result

try:
    import anyio
    from pydantic_ai import BinaryContent, RunContext
    from pydantic_ai.capabilities import AbstractCapability
    from pydantic_ai.toolsets import FunctionToolset
    from pydantic_ai.workspaces import (
        CommandResult,
        FileEntry,
        WorkspaceBackend,
        WorkspaceCommand,
        WorkspaceError,
        WorkspaceOutputLimitError,
        WorkspaceRef,
        WorkspaceTimeoutError,
        WorkspaceUnavailableError,
    )
    from pydantic_ai.workspaces.protocol import validate_timeout
except ImportError as exc:  # the [pydantic-ai] extra is optional
    raise MissingDependencyError("pydantic-ai-slim", "pydantic-ai", "The pydantic-ai integration") from exc

__all__ = ["PROVIDER", "CoderunnerWorkspace", "CoderunnerWorkspaceBackend"]

PROVIDER = "coderunner"
"""The ``WorkspaceRef.provider`` of coderunner workspaces; the ref's ``id`` is the session id."""

_MAX_CAPTURE_BYTES = 10 * 1024 * 1024
"""Ceiling on a command's combined stdout and stderr, as pydantic-ai's local backend has."""
_PREVIEW_BYTES = 64 * 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MARK = "__coderunner_workspace__"

# Runs in the session's Python interpreter inside a fresh namespace, so the user's variables are untouched.
_FS_HELPER = r"""
import json as _json, os as _os, shutil as _shutil, stat as _stat

def _entry(path):
    info = _os.stat(path)
    is_dir = _stat.S_ISDIR(info.st_mode)
    return {"name": _os.path.basename(path), "path": path, "is_dir": is_dir, "size": None if is_dir else info.st_size}

def _op(op, path, wd):
    if op == "stat":
        return _entry(path)
    if op == "list_dir":
        out = []
        with _os.scandir(path) as scan:
            children = sorted(scan, key=lambda child: child.path)
        for child in children:
            try:
                is_dir = child.is_dir()
            except OSError:  # a symlink loop: keep the entry, not the failure
                is_dir = False
            try:
                size = None if is_dir else child.stat().st_size
            except OSError:
                size = None
            out.append({"name": child.name, "path": child.path, "is_dir": is_dir, "size": size})
        return out
    if op == "make_dir":
        _os.makedirs(path, exist_ok=True)
        return None
    if op == "remove":
        root = _os.path.realpath(wd)
        if not _os.path.islink(path):
            real = _os.path.realpath(path)
            if real == root or root.startswith(real.rstrip("/") + "/"):
                raise ValueError("cannot remove the workspace's working directory or one of its ancestors")
        if _os.path.isdir(path) and not _os.path.islink(path):
            _shutil.rmtree(path)
        else:
            _os.unlink(path)
        return None
    if op == "realpath":
        return _os.path.realpath(path)
    if op == "probe_read":
        fd = _os.open(path, _os.O_RDONLY | _os.O_NONBLOCK)
        try:
            mode = _os.fstat(fd).st_mode
        finally:
            _os.close(fd)
        if _stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", path)
        if not _stat.S_ISREG(mode):
            raise OSError("not a regular file: " + path)
        return None
    if op == "prepare_write":
        target = _os.path.realpath(path)
        try:
            _os.makedirs(_os.path.dirname(target), exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(20, "Not a directory", path) from None
        if _os.path.lexists(target):
            mode = _os.stat(target).st_mode
            if _stat.S_ISDIR(mode):
                raise IsADirectoryError(21, "Is a directory", path)
            if not _stat.S_ISREG(mode):
                raise OSError("not a regular file: " + path)
            if not _os.access(target, _os.W_OK):
                raise PermissionError(13, "Permission denied", path)
        elif not _os.access(_os.path.dirname(target), _os.W_OK):
            raise PermissionError(13, "Permission denied", path)
        return target
    raise ValueError("unknown operation " + op)

def _main(op, path, wd, mark):
    try:
        reply = {"ok": _op(op, path, wd)}
    except ValueError as error:
        reply = {"value_error": str(error)}
    except OSError as error:
        reply = {"errno": error.errno, "strerror": error.strerror or str(error)}
    print(mark + _json.dumps(reply))
"""


def _check_command_form(command: WorkspaceCommand, *, shell: bool) -> None:
    if isinstance(command, str):
        if not shell:
            raise TypeError("a string command requires shell=True; pass an argv sequence otherwise")
    elif shell:
        raise TypeError("an argv sequence cannot be combined with shell=True; pass a single command string")
    elif not command:
        raise ValueError("command must not be empty")


def _exports(env: Mapping[str, str] | None) -> str:
    parts = []
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not a valid shell identifier")
        if "\0" in value:
            raise ValueError(f"environment variable {name!r} contains a NUL byte")
        parts.append(f"export {name}={shlex.quote(value)}; ")
    return "".join(parts)


class CoderunnerWorkspaceBackend:
    """A pydantic-ai workspace backend (commands, filesystem, realpath) over one coderunner session.

    Built without I/O; the first operation creates the session (or attaches to the one ``ref`` names, raising
    ``WorkspaceUnavailableError`` when it is gone). The session lives until :meth:`aclose`, which closes the
    session this backend created and the runner it made; an attached backend closes nothing of the session.

    Args:
        source: A runner (used as is) or a backend name or None (a runner from configuration, owned).
        ref: Attach to this existing coderunner session instead of creating one.
        env: Environment variables for the session (commands and Python), under each call's ``env``.
        session_options: Backend session options (``cpus=2``, ``memory="2g"`` on docker).
    """

    def __init__(
        self,
        source: RunnerSource = None,
        *,
        ref: WorkspaceRef | None = None,
        env: Mapping[str, str] | None = None,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        if ref is not None and ref.provider != PROVIDER:
            raise ValueError(f"a coderunner backend attaches only to {PROVIDER!r} refs, not {ref.provider!r}")
        self._runner, self._owns_runner = async_runner(source)
        self._ref = ref
        self._attached = ref is not None
        self._env = dict(env or {})
        self._session_options = dict(session_options or {})
        self._session: AsyncSession | None = None
        self._working_dir: str | None = None
        self._lock = asyncio.Lock()
        self._setup: asyncio.Future[None] | None = None
        self._stale: list[str] = []
        self._closed = False

    @property
    def ref(self) -> WorkspaceRef | None:
        """``WorkspaceRef(provider='coderunner', id=<session id>)`` once the session exists."""
        return self._ref

    @property
    def runner(self) -> AsyncCodeRunner:
        """The runner this backend drives."""
        return self._runner

    async def _ensure(self) -> tuple[AsyncSession, str]:
        if self._closed:
            raise WorkspaceUnavailableError("this coderunner workspace backend was closed")
        if self._session is None or self._working_dir is None:
            async with self._lock:
                if self._setup is None or (self._setup.done() and self._setup.exception() is not None):
                    # A task of its own, awaited through a shield: a caller cancelled mid-create still leaves
                    # the ref recorded for the session that was made.
                    self._setup = asyncio.ensure_future(self._start())
                setup = self._setup
            await asyncio.shield(setup)
        assert self._session is not None and self._working_dir is not None
        return self._session, self._working_dir

    async def _start(self) -> None:
        if self._ref is None:
            self._session = await self._runner.session("bash", env=self._env or None, **self._session_options)
            self._ref = WorkspaceRef(provider=PROVIDER, id=self._session.session_id)
        else:
            if not await self._runner.is_session_active(self._ref.id):
                raise WorkspaceUnavailableError(f"coderunner session {self._ref.id!r} is gone")
            self._session = AsyncSession(self._runner, self._ref.id, "bash")
        result = await self._execute(self._session, "pwd -P", "bash")
        if result.exit_code != 0:
            raise WorkspaceError(f"could not read the session's working directory: {result.stderr.strip()}")
        self._working_dir = result.stdout.strip()

    async def _execute(
        self, session: AsyncSession, code: str, language: str, timeout: float | None = None
    ) -> ExecutionResult:
        try:
            return await session.execute(code, language, timeout)
        except SessionNotFoundError as exc:
            raise WorkspaceUnavailableError(exc.message) from exc
        except BackendError as exc:
            await self._raise_if_gone(session, exc)
            raise

    async def _raise_if_gone(self, session: AsyncSession, cause: BaseException | None = None) -> None:
        try:
            active = await session.is_active()
        except CodeRunnerError:
            active = False
        if not active:
            raise WorkspaceUnavailableError(f"coderunner session {session.session_id!r} is gone") from cause

    async def working_dir(self) -> str:
        """The session's working directory (``/work`` on docker), canonical."""
        return (await self._ensure())[1]

    # -- commands ----------------------------------------------------------------------------------

    async def run(
        self,
        command: WorkspaceCommand,
        *,
        shell: bool = False,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run a command as its own process in the working directory; see ``SupportsCommands.run``."""
        validate_timeout(timeout)
        _check_command_form(command, shell=shell)
        exports = _exports(env)
        session, wd = await self._ensure()
        if isinstance(command, str):
            launch = f"exec sh -c {shlex.quote(command)}"
        else:
            launch = "exec " + " ".join(shlex.quote(part) for part in command)
        captures = posixpath.join(wd, ".coderunner", "workspace")
        out = posixpath.join(captures, f"{secrets.token_hex(8)}.out")
        err = out[:-4] + ".err"
        stale, self._stale = self._stale, []
        cleanup = f"rm -f -- {' '.join(shlex.quote(p) for p in stale)}\n" if stale else ""
        code = (
            f"mkdir -p {shlex.quote(captures)}\n{cleanup}"
            f"( cd -- {shlex.quote(wd)} || exit 1; {exports}{launch} ) </dev/null >{shlex.quote(out)} "
            f"2>{shlex.quote(err)}\n"
            f"__cr_status=$?\n"
            f'printf \'%s %d %d %d\\n\' {_MARK} "$__cr_status" "$(wc -c <{shlex.quote(out)})" '
            f'"$(wc -c <{shlex.quote(err)})"\n'
            "unset __cr_status\n"
        )
        try:
            result = await self._execute(session, code, "bash", timeout)
        except BaseException:
            # Cancelled (or the transport failed): stop the command's processes before giving up.
            with anyio.CancelScope(shield=True), anyio.move_on_after(10), contextlib.suppress(CodeRunnerError):
                await session.interrupt()
            self._stale += [out, err]
            raise
        self._stale += [out, err]
        if result.status == "timeout":
            stdout, stderr = await self._captured(session, out, err)
            raise WorkspaceTimeoutError(f"command timed out after {timeout:g}s", stdout=stdout, stderr=stderr)
        marker = next((line for line in reversed(result.stdout.splitlines()) if line.startswith(_MARK)), None)
        if marker is None:
            await self._raise_if_gone(session)
            raise WorkspaceError(f"the command's shell did not report its status: {result.error or result.stderr}")
        _, status, out_size, err_size = marker.split()
        if int(out_size) + int(err_size) > _MAX_CAPTURE_BYTES:
            stdout, stderr = await self._captured(session, out, err)
            raise WorkspaceOutputLimitError(
                "command output exceeded the 10 MiB limit; redirect it to a file and read part of it instead",
                limit=_MAX_CAPTURE_BYTES,
                stdout=stdout[:_PREVIEW_BYTES],
                stderr=stderr[:_PREVIEW_BYTES],
            )
        stdout, stderr = await self._captured(session, out, err)
        await self._raise_if_gone(session)
        return CommandResult(exit_code=int(status), stdout=stdout, stderr=stderr)

    async def _captured(self, session: AsyncSession, *paths: str) -> tuple[str, str]:
        texts = []
        for path in paths:
            try:
                data = await session.download_file(path)
            except SessionNotFoundError as exc:
                raise WorkspaceUnavailableError(exc.message) from exc
            except CodeRunnerError:
                data = b""  # killed before its shell opened the file
            texts.append(data.decode("utf-8", errors="replace"))
        return texts[0], texts[1]

    # -- stateful Python ---------------------------------------------------------------------------

    async def run_python(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run Python in the session's persistent interpreter: variables and imports survive between calls.

        Errors in the code, and timeouts (the interpreter is interrupted, its state kept), are on the result.
        """
        validate_timeout(timeout)
        session, _ = await self._ensure()
        return await self._execute(session, code, "python", timeout)

    # -- filesystem --------------------------------------------------------------------------------

    @staticmethod
    def _absolute(path: str) -> str:
        if not posixpath.isabs(path):
            raise ValueError(f"path must be absolute, got {path!r}")
        return path  # not normalised: '..' after a symlink climbs from the link's target

    async def _fs(self, op: str, path: str) -> Any:
        session, wd = await self._ensure()
        call = f"{_FS_HELPER}\n_main({op!r}, {path!r}, {wd!r}, {_MARK!r})\n"
        code = f"exec(compile({call!r}, '<coderunner-workspace>', 'exec'), {{'__name__': '_coderunner_workspace'}})"
        result = await self._execute(session, code, "python")
        line = next((ln for ln in reversed(result.stdout.splitlines()) if ln.startswith(_MARK)), None)
        if line is None:
            await self._raise_if_gone(session)
            raise WorkspaceError(f"file operation {op} on {path!r} failed: {result.error or result.stderr}")
        reply = json.loads(line[len(_MARK) :])
        if "value_error" in reply:
            raise ValueError(reply["value_error"])
        if "errno" in reply:
            if reply["errno"] is None:
                raise OSError(reply["strerror"])
            raise OSError(reply["errno"], reply["strerror"], path)
        return reply["ok"]

    async def read_bytes(self, path: str) -> bytes:
        """A file's bytes, through coderunner's file API (the Python interpreter explains a refusal)."""
        path = self._absolute(path)
        session, _ = await self._ensure()
        try:
            return await session.download_file(path)
        except SessionNotFoundError as exc:
            raise WorkspaceUnavailableError(exc.message) from exc
        except CodeRunnerError as exc:
            await self._fs("probe_read", path)  # raises the builtin error that explains the refusal
            raise WorkspaceError(exc.message) from exc

    async def write_bytes(self, path: str, data: bytes) -> None:
        """Write a file through coderunner's file API, creating parents and writing through a symlink."""
        path = self._absolute(path)
        session, _ = await self._ensure()
        try:
            await session.write_file(path, data)
            return
        except SessionNotFoundError as exc:
            raise WorkspaceUnavailableError(exc.message) from exc
        except (CodeRunnerError, OSError) as exc:
            # coderunner refuses to write through a symlink: resolve it (and classify any other refusal).
            first: BaseException = exc
        target = await self._fs("prepare_write", path)
        if target == path:
            raise WorkspaceError(str(first)) from first
        try:
            await session.write_file(target, data)
        except CodeRunnerError as exc:
            raise WorkspaceError(exc.message) from exc

    async def stat(self, path: str) -> FileEntry:
        """Metadata for a file or directory, following symlinks."""
        return FileEntry(**await self._fs("stat", self._absolute(path)))

    async def list_dir(self, path: str) -> Sequence[FileEntry]:
        """The entries of a directory, sorted by path."""
        return [FileEntry(**entry) for entry in await self._fs("list_dir", self._absolute(path))]

    async def make_dir(self, path: str) -> None:
        """``mkdir -p``."""
        await self._fs("make_dir", self._absolute(path))

    async def remove(self, path: str) -> None:
        """Remove a file, symlink or tree; the working directory and its ancestors are refused with ValueError."""
        await self._fs("remove", self._absolute(path))

    async def realpath(self, path: str) -> str:
        """Resolve symlinks inside the session, like ``os.path.realpath``."""
        resolved: str = await self._fs("realpath", self._absolute(path))
        return resolved

    async def exists(self, path: str) -> bool:
        """Whether the path exists, through coderunner's file listing (it never waits behind a running command)."""
        path = self._absolute(path)
        session, wd = await self._ensure()
        if path == wd or wd.startswith(path.rstrip("/") + "/"):
            return True  # the live session's directory and its ancestors (listings name entries session-relative)
        parent, name = posixpath.split(path)
        try:
            entries = await session.list_files(parent)
        except SessionNotFoundError as exc:
            raise WorkspaceUnavailableError(exc.message) from exc
        except CodeRunnerError:
            return False
        return any(posixpath.basename(entry.path) == name for entry in entries)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def destroy(self) -> None:
        """Close the session behind this backend, whoever created it (the ref then names nothing)."""
        if self._ref is not None:
            await self._runner.close_session(self._ref.id)

    async def aclose(self) -> None:
        """Close the session this backend created and the runner it made. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._session is not None and not self._attached:
            await self._session.close()
        if self._owns_runner:
            await self._runner.aclose()

    async def __aenter__(self) -> CoderunnerWorkspaceBackend:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _backend_of(ctx: RunContext[Any]) -> CoderunnerWorkspaceBackend | None:
    backend = ctx.workspace.backend
    return backend if isinstance(backend, CoderunnerWorkspaceBackend) else None


async def run_command(ctx: RunContext[Any], command: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run a shell command (sh) in the workspace's working directory; each command is a fresh process.

    Args:
        ctx: The run context, whose workspace runs the command.
        command: The shell command line.
        timeout: Seconds before the command is stopped.
    """
    try:
        result = await ctx.workspace.run(command, shell=True, timeout=timeout)
    except WorkspaceTimeoutError as exc:
        return {"timed_out": True, "error": str(exc), "stdout": exc.stdout, "stderr": exc.stderr}
    except (OSError, ValueError, WorkspaceError) as exc:
        if isinstance(exc, WorkspaceUnavailableError):
            raise
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}


async def read_file(ctx: RunContext[Any], path: str) -> dict[str, Any]:
    """Read a text file of the workspace (relative paths start in the working directory).

    Args:
        ctx: The run context, whose workspace is used.
        path: The file to read.
    """
    try:
        return {"path": path, "content": await ctx.workspace.read_text(path)}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


async def write_file(ctx: RunContext[Any], path: str, content: str) -> dict[str, Any]:
    """Write a text file in the workspace, creating missing directories.

    Args:
        ctx: The run context, whose workspace is used.
        path: The file to write.
        content: Its new content.
    """
    try:
        await ctx.workspace.write_text(path, content)
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"path": path, "written_bytes": len(content.encode())}


async def list_directory(ctx: RunContext[Any], path: str = ".") -> dict[str, Any]:
    """List a directory of the workspace.

    Args:
        ctx: The run context, whose workspace is used.
        path: The directory (default: the working directory).
    """
    try:
        entries = await ctx.workspace.list_dir(path)
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"entries": [{"name": e.name, "is_dir": e.is_dir, "size": e.size} for e in entries]}


async def run_python(ctx: RunContext[Any], code: str, timeout: float = 60.0) -> list[Any] | str:
    """Run Python in the workspace's persistent interpreter: variables and imports stay between calls.

    Args:
        ctx: The run context, whose workspace is used.
        code: Python source; the value of the last expression is shown.
        timeout: Seconds before the code is interrupted (its variables are kept).
    """
    backend = _backend_of(ctx)
    if backend is None:
        return "Error: run_python needs a coderunner workspace; this run has another one."
    if ctx.workspace.read_only:
        return "Error: the workspace is read-only; run_python can change it, so it is not available."
    rendered = format_execution_result(await backend.run_python(code, timeout=timeout))
    if not rendered.images:
        return rendered.text
    return [rendered.text, *(BinaryContent(data=i.to_bytes(), media_type=i.mime_type) for i in rendered.images)]


@dataclass
class CoderunnerWorkspace(AbstractCapability[Any]):
    """Gives runs a coderunner session as their workspace, plus tools for the model to use it.

    Like pydantic-ai's ``LocalWorkspace`` it supplies ``ctx.workspace``; unlike it the commands run in a
    coderunner session (a locked-down container on docker), and the model also gets ``run_command``,
    ``read_file``, ``write_file``, ``list_directory`` and a stateful ``run_python``. A run without a ref gets a
    fresh session; a ref from history continues in its session, and only refs of sessions this capability
    created are claimed. Call :meth:`aclose` when done: it closes those sessions and the runner it made.
    """

    source: RunnerSource = None
    """A runner (used as is), a backend name, or None for ``CODERUNNER_BACKEND`` (the runner is then owned)."""

    _: KW_ONLY

    env: Mapping[str, str] | None = None
    """Environment variables for every session."""

    tools: bool = True
    """Whether to give the model the workspace tools (``ctx.workspace`` is there either way)."""

    session_options: Mapping[str, Any] | None = None
    """Backend session options (``cpus``, ``memory`` on docker)."""

    id: str | None = "coderunner_workspace"
    """Fixed, so a later ``CoderunnerWorkspace`` replaces an earlier one; pass distinct ids to keep both."""

    _runner: AsyncCodeRunner | None = field(default=None, init=False, repr=False)
    _owns_runner: bool = field(default=False, init=False, repr=False)
    _backends: list[CoderunnerWorkspaceBackend] = field(default_factory=list, init=False, repr=False)

    def _get_runner(self) -> AsyncCodeRunner:
        if self._runner is None:
            # No I/O: the runner builds its backend on first use.
            self._runner, self._owns_runner = async_runner(self.source)
        return self._runner

    def get_workspace(self, ctx: RunContext[Any], *, ref: WorkspaceRef | None) -> WorkspaceBackend | None:
        """A fresh session's backend for ``ref=None``; an attached one for a ref of a session made here."""
        if ref is not None:
            known = {backend.ref for backend in self._backends if not backend._attached}
            if ref not in known:
                return None  # history can't point this capability at another tenant's session
        backend = CoderunnerWorkspaceBackend(
            self._get_runner(), ref=ref, env=self.env, session_options=self.session_options
        )
        self._backends.append(backend)
        return backend

    def get_toolset(self) -> FunctionToolset[Any] | None:
        """The workspace tools, when ``tools`` is on."""
        if not self.tools:
            return None
        return FunctionToolset([run_command, read_file, write_file, list_directory, run_python])

    async def aclose(self) -> None:
        """Close the sessions this capability created and the runner it made."""
        backends, self._backends = self._backends, []
        for backend in backends:
            await backend.aclose()
        if self._runner is not None and self._owns_runner:
            await self._runner.aclose()
        self._runner = None
