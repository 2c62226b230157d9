"""InstaVM-compatible clients bound to the ``instavm`` backend: the one-line migration from the InstaVM SDK.

::

    from coderunner.cloud import InstaVM as CodeRunner

    runner = CodeRunner(api_key="...")              # or INSTAVM_API_KEY
    print(runner.execute("print(6 * 7)")["stdout"])  # results also allow dict access

``base_url`` (or ``INSTAVM_BASE_URL``) points it at another InstaVM-protocol server, such as a
``coderunner serve`` on this machine. Unlike the InstaVM SDK, whose ``timeout`` argument is the VM's
lifetime, ``timeout`` here is the default per-execution limit (as everywhere in coderunner) and
``lifetime`` is the session's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coderunner.client import AsyncCodeRunner, CodeRunner

__all__ = ["AsyncInstaVM", "InstaVM"]


class InstaVM(CodeRunner):
    """A :class:`~coderunner.client.CodeRunner` on the InstaVM backend.

    Args:
        api_key: InstaVM API key (default ``INSTAVM_API_KEY``); optional for a server on loopback.
        base_url: Server URL (default ``INSTAVM_BASE_URL`` or https://api.instavm.io).
        language: Default language of the default session.
        env: Environment variables for the sessions it creates.
        lifetime: Lifetime of the default session in seconds (default one hour).
        **options: Other :class:`CodeRunner` options (``timeout``, ``max_output_chars``, ...) and backend
            options (``http_timeout``, ``max_retries``).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        language: str = "python",
        env: Mapping[str, str] | None = None,
        lifetime: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            "instavm", language=language, env=env, lifetime=lifetime, api_key=api_key, base_url=base_url, **options
        )


class AsyncInstaVM(AsyncCodeRunner):
    """An :class:`~coderunner.client.AsyncCodeRunner` on the InstaVM backend; arguments as :class:`InstaVM`."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        language: str = "python",
        env: Mapping[str, str] | None = None,
        lifetime: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            "instavm", language=language, env=env, lifetime=lifetime, api_key=api_key, base_url=base_url, **options
        )
