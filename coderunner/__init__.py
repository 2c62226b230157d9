"""coderunner: run code for AI agents, safely and statefully, on local kernels, Docker or the InstaVM cloud."""

from coderunner._version import __version__
from coderunner.backend import (
    AsyncBackend,
    Backend,
    available_backends,
    create_async_backend,
    create_backend,
    register_backend,
)
from coderunner.client import AsyncCodeRunner, AsyncSession, CodeRunner, Session
from coderunner.config import Settings
from coderunner.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    CapacityError,
    CodeRunnerError,
    ConfigurationError,
    FileNotFoundInSessionError,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
    PathError,
    PermissionDeniedError,
    RateLimitError,
    SessionNotFoundError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from coderunner.models import ErrorInfo, ExecutionResult, FileInfo, Output, SessionInfo, TaskInfo
from coderunner.specs import ExecRequest, SessionSpec

__all__ = [
    "AsyncBackend",
    "AsyncCodeRunner",
    "AsyncSession",
    "AuthenticationError",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "CapacityError",
    "CodeRunner",
    "CodeRunnerError",
    "ConfigurationError",
    "ErrorInfo",
    "ExecRequest",
    "ExecutionResult",
    "FileInfo",
    "FileNotFoundInSessionError",
    "InvalidRequestError",
    "MissingDependencyError",
    "NotFoundError",
    "Output",
    "PathError",
    "PermissionDeniedError",
    "RateLimitError",
    "Session",
    "SessionInfo",
    "SessionNotFoundError",
    "SessionSpec",
    "Settings",
    "TaskInfo",
    "TaskNotFoundError",
    "UnsupportedOperationError",
    "__version__",
    "available_backends",
    "create_async_backend",
    "create_backend",
    "register_backend",
]
