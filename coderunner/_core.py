"""Pure, I/O-free logic shared by every client and backend: validation, paths, result shaping."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from coderunner import languages
from coderunner.errors import ConfigurationError, InvalidRequestError, PathError
from coderunner.models import ErrorInfo, ExecutionResult, ExecutionStatus, Output

__all__ = [
    "ABSOLUTE_PATHS_RULE",
    "EXIT_CANCELLED",
    "EXIT_TIMEOUT",
    "LANGUAGES",
    "MAX_TIMEOUT",
    "FileSnapshot",
    "diff_snapshots",
    "exit_code_for_returncode",
    "normalize_language",
    "resolve_in_root",
    "strip_ansi",
    "validate_code",
    "validate_duration",
    "validate_timeout",
]

EXIT_TIMEOUT = 124  # GNU timeout(1)'s convention, so shell users recognise it
EXIT_CANCELLED = 130  # 128 + SIGINT, what a shell reports after Ctrl-C
MAX_TIMEOUT = 24 * 3600.0
MAX_CODE_CHARS = 10_000_000
MAX_SESSION_SECONDS = 30 * 24 * 3600.0
"""Longest ``lifetime`` or ``idle_timeout`` a session may ask for (30 days): longer is a mistake, not a plan."""

LANGUAGES = languages.LANGUAGES
_ALIASES = languages.ALIASES

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*(?:\x07|\x1b\\)")


def normalize_language(language: str | None) -> str:
    """Map a language name or alias to one of :data:`LANGUAGES`.

    Raises:
        ConfigurationError: The language is not supported; the message lists those that are.
    """
    if language is None:
        return "python"
    key = str(language).strip().lower()
    try:
        return _ALIASES[key]
    except KeyError:
        aliases = ", ".join(sorted(_ALIASES))
        raise ConfigurationError(
            f"Unsupported language {language!r}. Use one of: {', '.join(LANGUAGES)} (aliases: {aliases})."
        ) from None


def validate_code(code: object) -> str:
    """Check that ``code`` is a non-empty string of sane size and return it."""
    if not isinstance(code, str):
        raise InvalidRequestError(f"code must be a string, not {type(code).__name__}.")
    if not code.strip():
        raise InvalidRequestError("code is empty: pass the source code to run.")
    if len(code) > MAX_CODE_CHARS:
        raise InvalidRequestError(
            f"code is {len(code)} characters; the limit is {MAX_CODE_CHARS}. Upload large inputs as files instead."
        )
    return code


def validate_timeout(timeout: float | None, default: float | None) -> float | None:
    """Return the effective timeout in seconds (``None`` = no limit), rejecting nonsense values."""
    if timeout is None:
        return default
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidRequestError(f"timeout must be a number of seconds, not {type(timeout).__name__}.")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise InvalidRequestError(f"timeout must be between 0 and {MAX_TIMEOUT:.0f} seconds, got {timeout}.")
    return float(timeout)


def validate_duration(value: float | None, name: str) -> float | None:
    """Check a session duration (``lifetime``, ``idle_timeout``): None, or 0 < seconds <= 30 days.

    Raises:
        InvalidRequestError: Not a number, not positive, or longer than :data:`MAX_SESSION_SECONDS`; the message
            names the rule.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{name} must be a number of seconds, not {type(value).__name__}.")
    if not 0 < value <= MAX_SESSION_SECONDS:  # also false for NaN
        raise InvalidRequestError(
            f"{name} must be more than 0 and at most {MAX_SESSION_SECONDS:.0f} seconds (30 days), got {value}."
        )
    return float(value)


def strip_ansi(text: str) -> str:
    """Remove terminal colour and cursor escape sequences."""
    return _ANSI.sub("", text)


_MAX_NAME_BYTES = 255


def check_path_text(user_path: str) -> None:
    """Refuse a path no backend could resolve (empty, blank or with a NUL byte), before it goes anywhere.

    Remote backends check this on the client so that every backend raises the same :class:`PathError`; the
    containment check itself happens where the files are.

    Raises:
        PathError: The path is empty, blank or contains a NUL byte.
    """
    if not isinstance(user_path, str) or not user_path.strip() or "\x00" in user_path:
        raise PathError("The path is empty or contains a NUL byte: name a file inside the session directory.")


ABSOLUTE_PATHS_RULE = (
    "absolute paths name the sandbox's own filesystem, which only backends that isolate it have (docker); "
    "on inprocess they would be the host's, so they are refused unless the runner was made with "
    "absolute_paths=True (CODERUNNER_ABSOLUTE_PATHS=1), which lets file calls reach the host's files with "
    "this process's permissions"
)
"""Why an absolute path outside the session directory was refused: the end of that error's message."""


def resolve_in_root(root: Path, user_path: str, *, absolute: bool = False) -> Path:
    """Resolve ``user_path`` inside ``root``, refusing anything that would leave it.

    Relative paths are taken from ``root``; absolute paths are accepted only when they
    already point inside ``root``, or anywhere when ``absolute`` is True (the sandbox's
    filesystem is its own, e.g. inside a container). Symlinks are followed before the
    check, so a link pointing outside is refused too.

    Args:
        root: The session directory.
        user_path: The path the caller named.
        absolute: Accept absolute paths outside ``root`` as they are (the process's permissions apply).

    Raises:
        PathError: The path escapes ``root`` or is empty.
    """
    check_path_text(user_path)
    root = root.resolve()
    candidate = Path(user_path)
    for part in candidate.parts:
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
            raise PathError(
                f"A name in the path {user_path[:80]!r}... is longer than {_MAX_NAME_BYTES} bytes, the limit of a "
                "file name; use shorter names."
            )
    if absolute and candidate.is_absolute():
        # The whole filesystem is the sandbox's: no containment to check, only a name to normalise ('..').
        return Path(os.path.normpath(candidate))
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve()
    except OSError as exc:  # a symlink loop, a name the filesystem refuses
        raise PathError(f"Path {user_path!r} cannot be resolved ({exc.strerror}).") from None
    if resolved != root and root not in resolved.parents:
        if Path(user_path).is_absolute():
            raise PathError(
                f"Path {user_path!r} is outside the session directory: {ABSOLUTE_PATHS_RULE}. Use a path "
                "relative to the session directory such as 'data/file.csv'."
            )
        raise PathError(
            f"Path {user_path!r} is outside the session directory. Use a relative path such as 'data/file.csv'."
        )
    # A folder in the path that exists as a file: say so now, not as an OS error half-way through a write.
    for parent in reversed(resolved.relative_to(root).parents):
        here = root / parent
        if parent != Path(".") and here.exists() and not here.is_dir():
            raise PathError(f"Path {user_path!r} goes through {parent.as_posix()!r}, which is a file, not a directory.")
    return resolved


def relative_posix(root: Path, path: Path) -> str:
    """Return ``path`` relative to ``root`` with '/' separators; absolute when it is outside ``root``."""
    if path != root and root not in path.parents:
        return PurePosixPath(path).as_posix()
    return PurePosixPath(path.relative_to(root)).as_posix()


FileSnapshot = dict[str, tuple[int, int]]
"""Relative path -> (mtime_ns, size) for the files under a session directory."""

_SNAPSHOT_LIMIT = 5000
_HIDDEN_STATE_DIR = ".coderunner"


def snapshot_files(root: Path, limit: int = _SNAPSHOT_LIMIT) -> FileSnapshot | None:
    """Record every regular file under ``root`` (``None`` when there are more than ``limit``).

    The ``.coderunner`` folder (our own spill files) is left out. Symlinks are not followed.
    """
    import os

    snap: FileSnapshot = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if folder == root and entry.name == _HIDDEN_STATE_DIR:
                        continue
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    snap[relative_posix(root, Path(entry.path))] = (st.st_mtime_ns, st.st_size)
                    if len(snap) > limit:
                        return None
            except OSError:
                continue
    return snap


def diff_snapshots(before: FileSnapshot | None, after: FileSnapshot | None) -> tuple[list[str], list[str]]:
    """Return (created, modified) relative paths between two snapshots, sorted."""
    if before is None or after is None:
        return [], []
    created = sorted(p for p in after if p not in before)
    modified = sorted(p for p, sig in after.items() if p in before and before[p] != sig)
    return created, modified


def exit_code_for_returncode(returncode: int | None) -> int:
    """Turn a process return code into a shell-style exit status (signal N -> 128+N)."""
    if returncode is None:
        return 1
    if returncode < 0:
        return 128 - returncode
    return returncode


def status_for(exit_code: int, error: ErrorInfo | None, timed_out: bool, cancelled: bool) -> ExecutionStatus:
    """Derive the result status from how an execution ended."""
    if timed_out:
        return "timeout"
    if cancelled:
        return "cancelled"
    if error is not None or exit_code != 0:
        return "error"
    return "ok"


def build_result(
    *,
    language: str,
    session_id: str | None,
    stdout: str,
    stderr: str,
    exit_code: int,
    error: ErrorInfo | None,
    outputs: list[Output],
    execution_time: float,
    timed_out: bool = False,
    cancelled: bool = False,
    **extra: Any,
) -> ExecutionResult:
    """Assemble an :class:`ExecutionResult`, deriving ``status`` from the other fields."""
    return ExecutionResult(
        status=status_for(exit_code, error, timed_out, cancelled),
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        error=error,
        outputs=outputs,
        execution_time=execution_time,
        language=language,
        session_id=session_id,
        **extra,
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot reach a child process's environment
        return False
    return True


def merge_env(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """Return ``base`` updated with ``extra``, checking that every key and value is a string."""
    env = dict(base)
    for key, value in (extra or {}).items():
        if isinstance(key, str) and isinstance(value, str) and not (_encodable(key) and _encodable(value)):
            raise InvalidRequestError(f"Environment variable {key!r} is not valid UTF-8 text.")
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise InvalidRequestError(f"Invalid environment variable name {key!r}.")
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidRequestError(f"Environment variable {key!r} must be a string without NUL bytes.")
        env[key] = value
    return env
