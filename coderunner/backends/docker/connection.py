"""The Docker engine: connecting to it (DOCKER_HOST, Podman) and turning its SDK's errors into coderunner's."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from coderunner.errors import (
    BackendError,
    BackendUnavailableError,
    CodeRunnerError,
    ConfigurationError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)

DockerClient = Any
"""``docker.DockerClient`` (the SDK ships no type hints)."""

_INSTALL_HINT = (
    "Install Docker (Debian/Ubuntu: apt-get install docker.io; elsewhere https://docs.docker.com/engine/install/) "
    "and start it (systemctl start docker, or run dockerd; this repository's scripts/docker-engine.sh does both "
    "without systemd). A Podman socket works too: set DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock."
)


# -- the engine --------------------------------------------------------------------------------------


def docker_module() -> Any:
    """The ``docker`` SDK module, or a :class:`MissingDependencyError` saying how to install it."""
    try:
        import docker
    except ImportError:
        raise MissingDependencyError("docker", "docker", "The Docker backend") from None
    return docker


def connect(base_url: str | None = None, *, timeout: float = 120.0) -> DockerClient:
    """A Docker SDK client for ``base_url`` (default: ``DOCKER_HOST`` or the local socket), checked with a ping.

    Raises:
        MissingDependencyError: The ``docker`` package is missing.
        BackendUnavailableError: No engine answers; the message says how to install or start one.
    """
    docker = docker_module()
    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout) if base_url else docker.from_env(timeout=timeout)
        )
        client.ping()
    except docker.errors.DockerException as exc:
        reason = str(exc)
        if "Permission denied" in reason:
            raise BackendUnavailableError(
                f"The Docker engine at {where} refused this user (permission denied). Add yourself to the "
                "'docker' group (sudo usermod -aG docker $USER, then log in again) or use a rootless engine."
            ) from None
        if shutil.which("dockerd") is None and where.startswith("unix://"):
            hint = f"Docker is not installed. {_INSTALL_HINT}"
        else:
            hint = f"Docker is installed but the engine is not running. {_INSTALL_HINT}"
        raise BackendUnavailableError(f"No Docker engine answers at {where}: {hint} ({reason})") from None
    return client


def translate_docker(exc: BaseException, doing: str) -> CodeRunnerError:
    """The coderunner error for an SDK error raised while ``doing`` something (never a ``docker.errors`` one)."""
    docker = docker_module()
    if isinstance(exc, docker.errors.ImageNotFound):
        return BackendError(f"{doing}: image not found ({exc.explanation or exc}).")
    if isinstance(exc, docker.errors.APIError):
        text = str(exc.explanation or exc)
        if "unknown or invalid runtime" in text or ("runtime" in text and "not" in text and "found" in text):
            return ConfigurationError(
                f"{doing}: the Docker engine has no such runtime ({text}). For gVisor install 'runsc' and register "
                "it in /etc/docker/daemon.json (scripts/docker-engine.sh does this when /usr/bin/runsc exists)."
            )
        return BackendError(f"{doing}: the Docker engine said: {text}")
    if isinstance(exc, docker.errors.DockerException):
        return BackendUnavailableError(f"{doing}: lost the Docker engine ({exc}). {_INSTALL_HINT}")
    return BackendError(f"{doing}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def docker_errors(doing: str) -> Iterator[None]:
    """Translate Docker SDK and requests exceptions into coderunner errors."""
    docker = docker_module()
    import requests

    try:
        yield
    except CodeRunnerError:
        raise
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise translate_docker(exc, doing) from None
