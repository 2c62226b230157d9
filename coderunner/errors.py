"""The coderunner exception tree: few classes, each with a stable ``code`` string.

Failures in the *user's* code are never exceptions: they come back as data on
:class:`~coderunner.models.ExecutionResult` (``status``, ``exit_code``,
``error``). The exceptions below mean coderunner could not do what was asked::

    CodeRunnerError                     code="error"
    ├── ConfigurationError              code="configuration"       bad option, unknown language or backend
    ├── MissingDependencyError          code="missing_dependency"  an optional extra is not installed
    ├── InvalidRequestError             code="invalid_request"     bad argument (empty code, bad timeout)
    │   └── PathError                   code="path_not_allowed"    a path escapes the session directory
    │       └── PermissionDeniedError   code="permission_denied"   the sandbox user may not touch that path
    ├── NotFoundError                   code="not_found"           unknown session, task, file
    │   ├── SessionNotFoundError        code="session_not_found"
    │   ├── TaskNotFoundError           code="task_not_found"
    │   └── FileNotFoundInSessionError  code="file_not_found"
    ├── CapacityError                   code="capacity"            too many sessions or jobs (retryable)
    ├── BackendError                    code="backend"             the engine failed (kernel would not start)
    │   └── BackendUnavailableError     code="backend_unavailable" engine missing or unreachable (retryable)
    ├── AuthenticationError             code="authentication"      a remote backend refused the key
    ├── RateLimitError                  code="rate_limited"        a remote backend asked us to slow down (retryable)
    └── UnsupportedOperationError       code="unsupported"         the backend cannot do this

Every backend translates its own library's exceptions (``zmq``, ``httpx``,
``docker``) into this tree at its edge, so callers only ever catch these.

Over HTTP each code has one status, :data:`HTTP_STATUS` (what ``coderunner serve``
answers), and :func:`error_for_answer` turns an error answer back into the exception
(what its clients raise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

__all__ = [
    "HTTP_STATUS",
    "AuthenticationError",
    "BackendError",
    "BackendUnavailableError",
    "CapacityError",
    "CodeRunnerError",
    "ConfigurationError",
    "FileNotFoundInSessionError",
    "InvalidRequestError",
    "MissingDependencyError",
    "NotFoundError",
    "PathError",
    "PermissionDeniedError",
    "RateLimitError",
    "SessionNotFoundError",
    "TaskNotFoundError",
    "UnsupportedOperationError",
    "error_for_answer",
    "error_for_code",
]


class CodeRunnerError(Exception):
    """Base of every exception coderunner raises.

    Attributes:
        code: A stable machine-readable string; safe to branch on.
        retryable: True when the same call may succeed if tried again later.
        message: The human-readable explanation, saying what to do.
    """

    code: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready form used by the REST server and tool adapters."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class ConfigurationError(CodeRunnerError):
    """An option, language or backend name is not valid."""

    code = "configuration"


class MissingDependencyError(ConfigurationError):
    """An optional dependency is missing; the message names the extra to install."""

    code = "missing_dependency"

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'coderunner-sandbox[{extra}]'"
        )
        self.package = package
        self.extra = extra


class InvalidRequestError(CodeRunnerError):
    """An argument is not acceptable (empty code, timeout out of range, ...)."""

    code = "invalid_request"


class PathError(InvalidRequestError):
    """A file path would leave the session's working directory."""

    code = "path_not_allowed"


class PermissionDeniedError(PathError):
    """The sandbox's permissions do not let its user read or write that path (absolute paths)."""

    code = "permission_denied"


class NotFoundError(CodeRunnerError):
    """Something that was named does not exist."""

    code = "not_found"


class SessionNotFoundError(NotFoundError):
    """The session does not exist (never created, closed, or expired)."""

    code = "session_not_found"


class TaskNotFoundError(NotFoundError):
    """The async task or job id is unknown."""

    code = "task_not_found"


class FileNotFoundInSessionError(NotFoundError):
    """The file does not exist in the session's working directory."""

    code = "file_not_found"


class CapacityError(CodeRunnerError):
    """A limit was reached (sessions, jobs); close something or retry later."""

    code = "capacity"
    retryable = True


class BackendError(CodeRunnerError):
    """The execution engine failed in a way that is not the user's code's fault."""

    code = "backend"


class BackendUnavailableError(BackendError):
    """The engine is missing, not started, or unreachable."""

    code = "backend_unavailable"
    retryable = True


class AuthenticationError(CodeRunnerError):
    """A remote backend rejected the credentials."""

    code = "authentication"


class RateLimitError(CodeRunnerError):
    """A remote backend asked the client to slow down."""

    code = "rate_limited"
    retryable = True


class UnsupportedOperationError(CodeRunnerError):
    """The selected backend does not support this operation."""

    code = "unsupported"


_BY_CODE: dict[str, type[CodeRunnerError]] = {}


def _index(cls: type[CodeRunnerError]) -> None:
    _BY_CODE[cls.code] = cls
    for sub in cls.__subclasses__():
        _index(sub)


_index(CodeRunnerError)


def error_for_code(code: str, message: str) -> CodeRunnerError:
    """Rebuild the exception for a stable ``code`` (used by remote clients).

    Args:
        code: A code from :data:`CodeRunnerError.code`; unknown codes give the base class.
        message: The message to carry.

    Returns:
        An instance of the matching exception class.
    """
    cls = _BY_CODE.get(code, CodeRunnerError)
    if cls is MissingDependencyError:
        return ConfigurationError(message)
    return cls(message)


HTTP_STATUS: dict[str, int] = {
    "error": 500,
    "configuration": 400,
    "missing_dependency": 501,
    "invalid_request": 400,
    "path_not_allowed": 400,
    "permission_denied": 403,
    "not_found": 404,
    "session_not_found": 404,
    "task_not_found": 404,
    "file_not_found": 404,
    "capacity": 429,
    "backend": 502,
    "backend_unavailable": 503,
    # The caller's own key is refused before any handler runs (401). An AuthenticationError raised while
    # answering comes from the server's backend (a remote InstaVM refusing the server's key): a 401 would
    # make clients blame their own key, so it is a bad-gateway error.
    "authentication": 502,
    "rate_limited": 429,
    "unsupported": 501,
}
"""The HTTP status for each code of the tree above (the browser's codes are in
:data:`coderunner.browser.errors.HTTP_STATUS`)."""

# Not HTTP_STATUS turned round: a status several codes share stands for the general error (404 NotFoundError,
# 400 InvalidRequestError), and it covers statuses other servers send (401, 403, 413, 422).
_ERROR_FOR_STATUS: dict[int, type[CodeRunnerError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
    501: UnsupportedOperationError,
    503: BackendUnavailableError,
}


def error_for_answer(
    status: int,
    code: str | None,
    message: str,
    *,
    by_status: Callable[[type[CodeRunnerError]], CodeRunnerError] | None = None,
) -> CodeRunnerError:
    """Rebuild the exception an HTTP error answer stands for (the way back from :data:`HTTP_STATUS`).

    A ``code`` that names a class of the tree wins, because several classes share a status (404 is any
    not-found error, 429 is capacity or rate_limited, 403 is also the browser's destination_blocked).
    Without one (no code, the base ``"error"``, or a code this version does not know) the status
    decides: 400, 413 and 422 give InvalidRequestError, 401 and 403 AuthenticationError, 404
    NotFoundError, 429 RateLimitError, 501 UnsupportedOperationError, 503 BackendUnavailableError, and
    any other status BackendError.

    Args:
        status: The answer's HTTP status.
        code: The answer's ``code``, or None when it has none.
        message: The message to carry.
        by_status: Builds the exception when the status decides, from the class the status stands
            for: for a client that knows more than the status says (which thing a 404 on this route
            misses) or words the message its own way. Default: that class with ``message``.

    Returns:
        An instance of the matching exception class.
    """
    if code is not None and code != CodeRunnerError.code and code in _BY_CODE:
        return error_for_code(code, message)
    cls = _ERROR_FOR_STATUS.get(status, BackendError)
    return cls(message) if by_status is None else by_status(cls)
