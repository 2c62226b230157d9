"""What the two clients share, free of I/O: argument checks, session options, install commands, replacements."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from coderunner import _core, languages
from coderunner.config import Settings
from coderunner.errors import ConfigurationError, InvalidRequestError
from coderunner.models import ExecutionResult, TaskInfo
from coderunner.specs import SESSION_FIELDS, ExecRequest, SessionSpec
from coderunner.tasks import TaskTable

_SETTING_NAMES = (
    "timeout",
    "max_output_chars",
    "max_sessions",
    "idle_timeout",
    "pool_size",
    "pool_max",
    "runtime_dir",
    "interrupt_grace",
    "track_files",
    "shared_engine",
    "max_answer_bytes",
    "max_download_bytes",
)
# A package spec or local path: a name, optional extras/version/url-ish characters; never an option flag.
_PACKAGE = re.compile(r"^[A-Za-z0-9@./][A-Za-z0-9._\-\[\],=<>!~@/:+]*$")
TASK_POLL = 0.05


class ClientCore:
    """Non-I/O state and argument handling shared by both clients."""

    def __init__(
        self,
        backend: str | object | None,
        *,
        language: str,
        env: Mapping[str, str] | None,
        working_dir: str | None,
        lifetime: float | None,
        options: dict[str, Any],
    ) -> None:
        setting_overrides = {k: options.pop(k) for k in list(options) if k in _SETTING_NAMES}
        self.settings = Settings.from_env(backend=backend if isinstance(backend, str) else None, **setting_overrides)
        self.backend_options = options
        self.session_language = _core.normalize_language(language)
        self.session_env = _core.merge_env({}, env)
        self.session_working_dir = working_dir
        self.session_lifetime = lifetime
        self.session_id: str | None = None
        self.tasks = TaskTable()
        self.owned_sessions: set[str] = set()
        self.closed = False

    def prepare(self, code: str, language: str | None, timeout: float | None) -> ExecRequest:
        """The request for an execution: checked, in ``language`` (None: python), the runner's timeout by default."""
        if self.closed:
            raise ConfigurationError("This runner is closed; create a new one.")
        return ExecRequest(code, language or "python", timeout if timeout is not None else self.settings.timeout)

    def default_spec(self, language: str | None = None, **overrides: Any) -> SessionSpec:
        """The runner's default session (its language, env, working_dir, lifetime) with ``overrides`` on top.

        ``overrides`` are :class:`~coderunner.specs.SessionSpec` fields or, for any other name, the backend's
        own session options (``cpus=2`` on Docker); None values are ignored.
        """
        fields: dict[str, Any] = {
            "env": self.session_env,
            "working_dir": self.session_working_dir,
            "lifetime": self.session_lifetime,
        }
        options: dict[str, Any] = {}
        for name, value in overrides.items():
            if value is not None:
                (fields if name in SESSION_FIELDS else options)[name] = value
        return SessionSpec(language or self.session_language, options=options, **fields)

    def session_spec(
        self,
        language: str,
        env: Mapping[str, str] | None,
        working_dir: str | None,
        lifetime: float | None,
        idle_timeout: float | None,
        metadata: Mapping[str, str] | None,
        options: Mapping[str, Any],
    ) -> SessionSpec:
        """An explicit session: the runner's env under ``env``; nothing else inherited from the runner."""
        return SessionSpec(
            language,
            env=_core.merge_env(self.session_env, env),
            working_dir=working_dir,
            lifetime=lifetime,
            idle_timeout=idle_timeout,
            metadata=metadata or {},
            options=options,
        )

    @staticmethod
    def replaced(result: ExecutionResult, old_id: str, reason: str) -> ExecutionResult:
        """``result`` marked as run in a new default session, because the old one was gone for ``reason``."""
        note = (
            f"The previous default session ({old_id}) was gone ({reason}); this code ran in a new session, "
            "so earlier variables are not defined."
        )
        return result.model_copy(update={"state_lost": True, "warnings": [*result.warnings, note]})

    @staticmethod
    def install_command(packages: Sequence[str] | str, language: str) -> tuple[str, str]:
        """Return (language, code) that installs ``packages`` for ``language``."""
        pkgs = [packages] if isinstance(packages, str) else list(packages)
        if not pkgs:
            raise InvalidRequestError("install_packages needs at least one package name.")
        for pkg in pkgs:
            if not isinstance(pkg, str) or not _PACKAGE.match(pkg.strip()):
                raise InvalidRequestError(f"{pkg!r} is not a valid package name or requirement.")
        lang = _core.normalize_language(language)
        installer = languages.by_name(lang).installer
        if installer == "pip":
            # Install into the interpreter the session runs, whatever backend that is.
            code = (
                "import subprocess as _s, sys as _y\n"
                f"_r = _s.run([_y.executable, '-m', 'pip', 'install', '--disable-pip-version-check', '-q', "
                f"*{[p.strip() for p in pkgs]!r}], capture_output=True, text=True)\n"
                "print(_r.stdout, end=''); print(_r.stderr, end='', file=_y.stderr)\n"
                "if _r.returncode: raise RuntimeError(f'pip install failed with status {_r.returncode}')\n"
            )
            return "python", code
        if installer == "npm":
            quoted = " ".join(shlex.quote(p.strip()) for p in pkgs)
            return "bash", f"npm install --no-audit --no-fund --loglevel=error {quoted}"
        raise InvalidRequestError("install_packages supports python (pip) and javascript (npm).")

    @staticmethod
    def read_local(local_path: str | os.PathLike[str]) -> bytes:
        """The bytes of a local file to upload (a clear error when it is not a file)."""
        path = Path(local_path).expanduser()
        if not path.is_file():
            raise InvalidRequestError(f"Local file {str(path)!r} does not exist or is not a file.")
        return path.read_bytes()

    @staticmethod
    def to_bytes(content: str | bytes) -> bytes:
        """File content as bytes (text is UTF-8)."""
        if isinstance(content, str):
            return content.encode("utf-8")
        if isinstance(content, (bytes, bytearray, memoryview)):
            return bytes(content)
        raise InvalidRequestError(f"content must be str or bytes, not {type(content).__name__}.")


def task_result(task: TaskInfo) -> ExecutionResult:
    """The result a finished task gives its caller: its own, an empty cancelled one, or the error it failed with."""
    from coderunner.errors import BackendError

    if task.result is not None:
        return task.result
    if task.status == "cancelled":
        return _core.build_result(
            language=task.language,
            session_id=task.session_id,
            stdout="",
            stderr="",
            exit_code=_core.EXIT_CANCELLED,
            error=None,
            outputs=[],
            execution_time=0.0,
            cancelled=True,
        )
    raise BackendError(f"Task {task.task_id} could not run: {task.error_message}")
