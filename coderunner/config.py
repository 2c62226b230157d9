"""Runner settings: explicit argument > ``CODERUNNER_*`` environment variable > default."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coderunner._env import Parser, parse_flag, parse_optional_seconds, settings_values
from coderunner.errors import ConfigurationError

__all__ = ["ENV_VARS", "Settings"]


def _default_runtime_dir() -> str:
    # Short on purpose: kernel ipc sockets live below it and AF_UNIX paths must stay < 108 bytes.
    return os.path.join(tempfile.gettempdir(), f"coderunner-{os.getuid()}")


@dataclass(frozen=True)
class Settings:
    """Options shared by the clients and the engine. Each field names the variable that feeds it."""

    backend: str = "inprocess"
    """Backend name (CODERUNNER_BACKEND): 'inprocess', 'docker', 'instavm', 'fake', or an entry point."""
    timeout: float | None = 300.0
    """Default per-execution time limit in seconds (CODERUNNER_TIMEOUT; 0 or 'none' = no limit)."""
    max_output_chars: int = 100_000
    """Cap on stdout and on stderr per execution; head and tail are kept (CODERUNNER_MAX_OUTPUT_CHARS)."""
    max_sessions: int = 32
    """Most sessions open at once per runner/server (CODERUNNER_MAX_SESSIONS)."""
    idle_timeout: float | None = 3600.0
    """Seconds without activity after which a session expires (CODERUNNER_SESSION_IDLE_TIMEOUT; 0 = never)."""
    pool_size: int = 1
    """Python kernels kept started and ready for new sessions (CODERUNNER_POOL_SIZE; 0 disables the pool).
    The InProcess pool's floor: it grows towards ``pool_max`` while sessions are taken quickly."""
    pool_max: int = 4
    """Most Python kernels the InProcess pool keeps warm when sessions are taken quickly: as many as were
    taken in the last 30 s, between ``pool_size`` and this (CODERUNNER_POOL_MAX; below ``pool_size``
    counts as ``pool_size``). Surplus kernels are shut down once demand falls."""
    runtime_dir: str = field(default_factory=_default_runtime_dir)
    """Where kernels' sockets and default session directories live (CODERUNNER_RUNTIME_DIR)."""
    interrupt_grace: float = 3.0
    """Seconds an interrupted execution gets before its interpreter is restarted (CODERUNNER_INTERRUPT_GRACE)."""
    track_files: bool = True
    """Report files each execution created or modified (CODERUNNER_TRACK_FILES)."""
    shared_engine: bool = True
    """InProcess runners of one process with the same ``runtime_dir`` share one engine: its loop thread
    and warm pool, so a second runner's first session is a pooled kernel (CODERUNNER_SHARED_ENGINE;
    0 = each runner starts an engine of its own, e.g. so a slow output callback, which runs on the
    engine's thread, cannot hold up other runners)."""
    max_answer_bytes: int = 64 * 1024**2
    """Longest answer the host reads from a sandbox's agent, e.g. one result (CODERUNNER_MAX_ANSWER_BYTES)."""
    max_download_bytes: int = 512 * 1024**2
    """Largest file a download reads from a sandbox (CODERUNNER_MAX_DOWNLOAD_BYTES)."""
    absolute_paths: bool = False
    """Let file calls (upload, download, list) take absolute paths (CODERUNNER_ABSOLUTE_PATHS). Backends that
    isolate a filesystem (docker) always do: there they are the sandbox's own. On inprocess they are the
    host's, reached with this process's permissions, so it is off unless asked for; relative paths always
    stay in the session directory."""
    kernel_start: str = "auto"
    """How Python kernels start (CODERUNNER_KERNEL_START): 'fork' from a per-engine fork server that has
    ipykernel imported (milliseconds), 'spawn' a fresh interpreter each (about half a second), or 'auto': fork
    where the system can (Linux and other POSIX systems except macOS), else spawn."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``overrides`` (non-None values win), then the environment, then defaults.

        Raises:
            ConfigurationError: An override name is unknown or a variable has an invalid value.
        """
        settings = cls(**settings_values(cls, _VARIABLES, environ, overrides))
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values that cannot work, saying which option is wrong."""
        if self.max_output_chars < 100:
            raise ConfigurationError("max_output_chars must be at least 100.")
        if self.max_sessions < 1:
            raise ConfigurationError("max_sessions must be at least 1.")
        if self.pool_size < 0:
            raise ConfigurationError("pool_size cannot be negative.")
        if self.pool_max < 0:
            raise ConfigurationError("pool_max cannot be negative.")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError("timeout must be positive (or None for no limit).")
        if self.interrupt_grace <= 0:
            raise ConfigurationError("interrupt_grace must be positive.")
        if self.max_answer_bytes < 1024**2:
            raise ConfigurationError("max_answer_bytes must be at least 1 MiB (1048576).")
        if self.max_download_bytes < 1:
            raise ConfigurationError("max_download_bytes must be at least 1.")
        if self.kernel_start not in ("auto", "fork", "spawn"):
            raise ConfigurationError(f"kernel_start must be 'auto', 'fork' or 'spawn', not {self.kernel_start!r}.")


ENV_VARS: dict[str, str] = {
    "backend": "CODERUNNER_BACKEND",
    "timeout": "CODERUNNER_TIMEOUT",
    "max_output_chars": "CODERUNNER_MAX_OUTPUT_CHARS",
    "max_sessions": "CODERUNNER_MAX_SESSIONS",
    "idle_timeout": "CODERUNNER_SESSION_IDLE_TIMEOUT",
    "pool_size": "CODERUNNER_POOL_SIZE",
    "pool_max": "CODERUNNER_POOL_MAX",
    "runtime_dir": "CODERUNNER_RUNTIME_DIR",
    "interrupt_grace": "CODERUNNER_INTERRUPT_GRACE",
    "track_files": "CODERUNNER_TRACK_FILES",
    "shared_engine": "CODERUNNER_SHARED_ENGINE",
    "max_answer_bytes": "CODERUNNER_MAX_ANSWER_BYTES",
    "max_download_bytes": "CODERUNNER_MAX_DOWNLOAD_BYTES",
    "kernel_start": "CODERUNNER_KERNEL_START",
    "absolute_paths": "CODERUNNER_ABSOLUTE_PATHS",
}

_PARSERS: dict[str, Parser] = {
    "timeout": parse_optional_seconds,
    "idle_timeout": parse_optional_seconds,
    "max_output_chars": int,
    "max_sessions": int,
    "pool_size": int,
    "pool_max": int,
    "max_answer_bytes": int,
    "max_download_bytes": int,
    "interrupt_grace": float,
    "track_files": parse_flag,
    "shared_engine": parse_flag,
    "absolute_paths": parse_flag,
}
_VARIABLES = {name: (var, _PARSERS.get(name, str)) for name, var in ENV_VARS.items()}
