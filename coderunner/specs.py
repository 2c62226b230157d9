"""What crosses the Backend seam: a ``SessionSpec`` (a session to create) and an ``ExecRequest`` (code to run).

Both are frozen and checked once, in their constructor, with the rules and messages of :mod:`coderunner._core`;
every layer below (client core, server, Docker host, in-container agent, engine) passes them on instead of a
dozen keyword arguments, so adding a session option is one field here and the one place that honours it.
They cross process boundaries as plain JSON (:meth:`SessionSpec.to_wire`, :meth:`ExecRequest.to_wire`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from coderunner import _core
from coderunner.errors import ConfigurationError, InvalidRequestError

__all__ = ["SESSION_FIELDS", "ExecRequest", "SessionSpec"]

SESSION_FIELDS = ("env", "working_dir", "lifetime", "idle_timeout", "metadata")
"""The SessionSpec fields besides language: every backend takes them; any other option is the backend's own."""


@dataclasses.dataclass(frozen=True)
class SessionSpec:
    """A session to create: its language, environment, directory, durations, labels and backend options.

    Raises:
        ConfigurationError: An unsupported language.
        InvalidRequestError: A bad environment variable, duration or working directory.
    """

    language: str = "python"
    """Default language of the session (an alias such as ``py`` is normalised)."""
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Environment variables for the session's interpreters."""
    working_dir: str | None = None
    """A host directory to use as the session directory instead of a fresh one (kept at close)."""
    lifetime: float | None = None
    """Hard lifetime in seconds (None: until closed or idle)."""
    idle_timeout: float | None = None
    """Seconds of inactivity before the session expires (None: the backend's default)."""
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Labels, returned in the session's description."""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The backend's own session options (Docker: ``cpus``, ``memory``, ``network``, ...)."""

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: the normalised values replace the given ones once, here
        put(self, "language", _core.normalize_language(self.language))
        put(self, "env", MappingProxyType(_core.merge_env({}, self.env)))
        wd = self.working_dir
        if wd is not None and (not isinstance(wd, str) or not wd.strip() or "\x00" in wd):
            raise InvalidRequestError("working_dir must be a directory path (text without NUL bytes).")
        put(self, "lifetime", _core.validate_duration(self.lifetime, "lifetime"))
        put(self, "idle_timeout", _core.validate_duration(self.idle_timeout, "idle_timeout"))
        put(self, "metadata", MappingProxyType({str(k): str(v) for k, v in (self.metadata or {}).items()}))
        put(self, "options", MappingProxyType(dict(self.options or {})))

    def replace(self, **changes: Any) -> SessionSpec:
        """A copy with ``changes`` applied (and checked again)."""
        return dataclasses.replace(self, **changes)

    def check_options(self, backend_name: str, takes: Collection[str] = ()) -> None:
        """Refuse backend options that ``backend_name`` does not take, naming the ones it does.

        Raises:
            ConfigurationError: An option the backend does not know (e.g. ``cpus`` on InProcess).
        """
        unknown = sorted(set(self.options) - set(takes))
        if not unknown:
            return
        known = ", ".join(sorted({*SESSION_FIELDS, *takes}))
        raise ConfigurationError(
            f"The {backend_name} backend has no session option {', '.join(unknown)}; it takes: {known}. "
            "Container options such as cpus or memory need backend='docker'."
        )

    def to_wire(self) -> dict[str, Any]:
        """The parts of the spec another process can honour, as JSON.

        Never ``working_dir`` or ``options``: both are about the host that holds the session.
        """
        return {
            "language": self.language,
            "env": dict(self.env),
            "lifetime": self.lifetime,
            "idle_timeout": self.idle_timeout,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], **host_side: Any) -> SessionSpec:
        """The spec :meth:`to_wire` wrote, with ``host_side`` fields (``working_dir``) of the receiving process.

        Raises:
            InvalidRequestError: ``data`` is not what :meth:`to_wire` writes.
        """
        fields = {"language", "env", "lifetime", "idle_timeout", "metadata"}
        if not isinstance(data, Mapping) or set(data) - fields:
            raise InvalidRequestError(f"A session spec has only the fields {', '.join(sorted(fields))}.")
        return cls(**{k: v for k, v in data.items() if v is not None}, **host_side)


@dataclasses.dataclass(frozen=True)
class ExecRequest:
    """Code to run in a session: the source, its language (None: the session's) and time limit.

    ``timeout`` None means the backend's default (``CODERUNNER_TIMEOUT``); the clients fill in their own
    default before they send, so a runner's setting wins over the backend's.

    Raises:
        InvalidRequestError: Empty or oversized code, or a time limit out of range.
        ConfigurationError: An unsupported language.
    """

    code: str
    """Source code (python, bash or javascript)."""
    language: str | None = None
    """Language to run it as (an alias is normalised); None: the session's default language."""
    timeout: float | None = None
    """Seconds before the execution is interrupted, its state kept; None: the backend's default."""

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "code", _core.validate_code(self.code))
        if self.language is not None:
            put(self, "language", _core.normalize_language(self.language))
        put(self, "timeout", _core.validate_timeout(self.timeout, None))

    def language_or(self, default: str) -> str:
        """The language to run as: this request's, else ``default`` (the session's)."""
        return self.language or default

    def timeout_or(self, default: float | None) -> float | None:
        """The time limit: this request's, else ``default`` (the backend's setting)."""
        return self.timeout if self.timeout is not None else default

    def replace(self, **changes: Any) -> ExecRequest:
        """A copy with ``changes`` applied (and checked again)."""
        return dataclasses.replace(self, **changes)

    def to_wire(self) -> dict[str, Any]:
        """The request as JSON."""
        return {"code": self.code, "language": self.language, "timeout": self.timeout}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ExecRequest:
        """The request :meth:`to_wire` wrote.

        Raises:
            InvalidRequestError: ``data`` is not what :meth:`to_wire` writes.
        """
        if not isinstance(data, Mapping) or "code" not in data or set(data) - {"code", "language", "timeout"}:
            raise InvalidRequestError("An exec request has the fields code, language and timeout.")
        return cls(data["code"], data.get("language"), data.get("timeout"))
