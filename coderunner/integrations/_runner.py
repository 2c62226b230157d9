"""Which runner a framework sandbox adapter drives: built from configuration, or one the caller hands over.

Every adapter's main class constructs with no arguments (the backend, options and limits come from the same
configuration as ``CodeRunner()``: ``CODERUNNER_BACKEND`` and friends) and also takes an existing runner of
either colour or a backend name, so moving a framework's sandbox from local kernels to Docker to the cloud
is configuration, never code.

A runner the adapter builds itself allows absolute paths in file calls: the frameworks' file APIs speak
absolute POSIX paths. On docker they are the container's own; on inprocess they are the host's, exactly as
with the frameworks' own local backends (inprocess is not a security boundary: use docker for one).
"""

from __future__ import annotations

from typing import Any

from coderunner.backends.bridge import to_async_backend, to_sync_backend
from coderunner.client import AsyncCodeRunner, CodeRunner

__all__ = ["RunnerSource", "async_runner", "sync_runner"]

RunnerSource = CodeRunner | AsyncCodeRunner | str | None
"""What an adapter accepts: a runner of either colour (used as is, not closed by the adapter), a backend name
or None (a runner of its own from configuration, closed with the adapter)."""


def sync_runner(source: RunnerSource = None, **options: Any) -> tuple[CodeRunner, bool]:
    """The :class:`CodeRunner` an adapter drives, and whether the adapter made it (and so closes it).

    Args:
        source: See :data:`RunnerSource`. An :class:`AsyncCodeRunner` is reached through the sync bridge over
            its backend: the same sessions' engine, its state untouched.
        options: Runner options when the adapter makes the runner (``CodeRunner(**options)``).
    """
    if isinstance(source, CodeRunner):
        return source, False
    if isinstance(source, AsyncCodeRunner):
        return CodeRunner(backend=to_sync_backend(source.backend)), True
    return CodeRunner(backend=source, **{"absolute_paths": True, **options}), True


def async_runner(source: RunnerSource = None, **options: Any) -> tuple[AsyncCodeRunner, bool]:
    """The :class:`AsyncCodeRunner` an adapter drives, and whether the adapter made it (and so closes it).

    Args:
        source: See :data:`RunnerSource`. A :class:`CodeRunner` is reached through the async bridge over its
            backend (each call in a worker thread).
        options: Runner options when the adapter makes the runner (``AsyncCodeRunner(**options)``).
    """
    if isinstance(source, AsyncCodeRunner):
        return source, False
    if isinstance(source, CodeRunner):
        return AsyncCodeRunner(backend=to_async_backend(source.backend)), True
    return AsyncCodeRunner(backend=source, **{"absolute_paths": True, **options}), True
