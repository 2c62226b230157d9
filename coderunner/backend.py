"""The Backend protocols (sync and async twins) and the registry that picks one by name.

A backend runs code in sessions and moves files in and out of them; nothing
else. Everything built on top (default sessions, async tasks, package
installs, tool adapters) is derived once in the clients.

Selection: explicit argument > ``CODERUNNER_BACKEND`` > ``"inprocess"``.
Third-party backends register a factory in the ``coderunner.backends``
entry-point group: ``factory(settings, *, asynchronous, **options)``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from typing import Any, Protocol, runtime_checkable

from coderunner.config import Settings
from coderunner.errors import ConfigurationError
from coderunner.models import ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

__all__ = [
    "AsyncBackend",
    "Backend",
    "BackendFactory",
    "available_backends",
    "create_async_backend",
    "create_backend",
    "register_backend",
]

OutputCallback = Callable[[str], None]


@runtime_checkable
class Backend(Protocol):
    """A place where code runs, driven synchronously."""

    name: str

    def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session as ``spec`` says (None: a Python session with the defaults).

        Options in ``spec.options`` the backend does not take are refused (ConfigurationError) before
        anything starts.
        """
        ...

    def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session (raises SessionNotFoundError when it is gone)."""
        ...

    def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session of this backend instance."""
        ...

    def close_session(self, session_id: str) -> None:
        """Stop a session and free its resources."""
        ...

    def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``request`` in a session; the user's failures come back in the result."""
        ...

    def interrupt(self, session_id: str) -> bool:
        """Interrupt the running execution of a session; False if none ran."""
        ...

    def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes to a path inside the session directory."""
        ...

    def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory."""
        ...

    def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory inside the session directory."""
        ...

    def close(self) -> None:
        """Close every session and release the backend."""
        ...


@runtime_checkable
class AsyncBackend(Protocol):
    """The same operations as :class:`Backend`, awaited."""

    name: str

    async def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session as ``spec`` says (None: a Python session with the defaults).

        Options in ``spec.options`` the backend does not take are refused (ConfigurationError) before
        anything starts.
        """
        ...

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        ...

    async def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        ...

    async def close_session(self, session_id: str) -> None:
        """Stop a session."""
        ...

    async def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run code in a session."""
        ...

    async def interrupt(self, session_id: str) -> bool:
        """Interrupt the running execution of a session."""
        ...

    async def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes into the session directory."""
        ...

    async def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory."""
        ...

    async def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory inside the session directory."""
        ...

    async def aclose(self) -> None:
        """Close every session and release the backend."""
        ...


BackendFactory = Callable[..., Any]
"""``factory(settings, *, asynchronous: bool, **options) -> Backend | AsyncBackend``."""

_ALIASES = {"local": "inprocess", "in_process": "inprocess", "in-process": "inprocess", "localdocker": "docker"}
_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``factory`` selectable as ``name`` (overrides an existing registration)."""
    _REGISTRY[name.lower()] = factory


_BUILTINS = {
    "inprocess": "coderunner.backends.inprocess",
    "fake": "coderunner.testing",
    "instavm": "coderunner.backends.instavm",
    "docker": "coderunner.backends.docker",
}


def _builtin(name: str) -> BackendFactory | None:
    module = _BUILTINS.get(name)
    if module is None or importlib.util.find_spec(module) is None:
        return None
    factory: BackendFactory = importlib.import_module(module).factory
    return factory


def _entry_point(name: str) -> BackendFactory | None:
    for ep in importlib_metadata.entry_points(group="coderunner.backends"):
        if ep.name.lower() == name:
            loaded: BackendFactory = ep.load()
            return loaded
    return None


def available_backends() -> list[str]:
    """Names that can be passed as ``backend=``."""
    names = {n for n, module in _BUILTINS.items() if importlib.util.find_spec(module) is not None}
    names.update(_REGISTRY)
    names.update(ep.name.lower() for ep in importlib_metadata.entry_points(group="coderunner.backends"))
    return sorted(names)


def _resolve(name: str) -> tuple[str, BackendFactory]:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    factory = _REGISTRY.get(key) or _builtin(key) or _entry_point(key)
    if factory is None:
        raise ConfigurationError(
            f"Unknown backend {name!r}. Available: {', '.join(available_backends())}. "
            "Set it with backend=... or CODERUNNER_BACKEND."
        )
    return key, factory


def create_backend(name: str | None = None, settings: Settings | None = None, **options: Any) -> Backend:
    """Build a synchronous backend by name (argument > CODERUNNER_BACKEND > 'inprocess')."""
    settings = settings or Settings.from_env(backend=name)
    _, factory = _resolve(name or settings.backend)
    backend = factory(settings, asynchronous=False, **options)
    if not isinstance(backend, Backend):
        raise ConfigurationError(f"The {name or settings.backend!r} factory did not return a Backend.")
    return backend


def create_async_backend(name: str | None = None, settings: Settings | None = None, **options: Any) -> AsyncBackend:
    """Build an asynchronous backend by name (argument > CODERUNNER_BACKEND > 'inprocess')."""
    settings = settings or Settings.from_env(backend=name)
    _, factory = _resolve(name or settings.backend)
    backend = factory(settings, asynchronous=True, **options)
    if not isinstance(backend, AsyncBackend):
        raise ConfigurationError(f"The {name or settings.backend!r} factory did not return an AsyncBackend.")
    return backend
