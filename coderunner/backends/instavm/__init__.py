"""The InstaVM backend: run code on an InstaVM-protocol server (the InstaVM cloud, or ``coderunner serve``).

Sync :class:`InstaVMBackend` (``httpx.Client``) and async :class:`AsyncInstaVMBackend`
(``httpx.AsyncClient``), in ``clients.py``, are twins over ``protocol.InstaVMProtocol``, which builds every
request and parses every answer without doing I/O; the twins only send.

Configuration: ``api_key`` > ``INSTAVM_API_KEY``; ``base_url`` > ``INSTAVM_BASE_URL`` >
``https://api.instavm.io``. A key is required unless the server is on loopback (a local
``coderunner serve`` without ``--api-key``).

What the protocol gives, and what it does not:

* Rich result fields (``status``, ``error``, ``outputs``, ``files_created``, ...) are read when the
  server sends them (``coderunner serve`` does) and derived from ``stdout``/``stderr``/``exit_code``
  otherwise.
* ``timeout`` travels as whole seconds, at most 600 (a longer or absent limit is capped, with a
  warning on the result). With ``on_stdout``/``on_stderr``, output is streamed as it comes through
  coderunner serve's ``/execute/stream`` route; other servers deliver it in one piece after the run.
* ``interrupt`` and ``list_files`` use routes only ``coderunner serve`` has; other servers give
  :class:`~coderunner.errors.UnsupportedOperationError`.
* Sessions always have a lifetime on this protocol: ``lifetime`` defaults to one hour.
* The browser capability (:mod:`coderunner.browser.protocol`) goes over the ``/v1/browser/...``
  routes, so ``CodeRunner(backend="instavm", base_url=...).browser`` drives the server's browser.
  A server without a browser answers 501 (:class:`~coderunner.errors.UnsupportedOperationError`);
  element not found, timeouts and the other browser errors come back as the
  :mod:`coderunner.browser.errors` classes (from the server's ``code``, or from the status: 404 on
  an element action is ElementNotFoundError, 408 BrowserTimeoutError).

Errors: an error answer's ``code`` (coderunner serve sends a stable one, e.g. 403
``destination_blocked`` for a browser egress refusal) gives the exception of that code; without one
(the InstaVM cloud), the status does (401/403: AuthenticationError naming ``INSTAVM_API_KEY``, 429:
RateLimitError, unknown session: SessionNotFoundError, 5xx: BackendError). A 401 is always
AuthenticationError; an unreachable server is BackendUnavailableError. No ``httpx`` exception
escapes. Only failures to connect (nothing was sent) are retried, with backoff: code that may have
run is never sent twice.
"""

from __future__ import annotations

from coderunner.backends.instavm.clients import AsyncInstaVMBackend, InstaVMBackend, factory
from coderunner.backends.instavm.protocol import DEFAULT_BASE_URL

__all__ = ["DEFAULT_BASE_URL", "AsyncInstaVMBackend", "InstaVMBackend", "factory"]
