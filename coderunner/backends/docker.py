"""The Docker backend: every session in its own locked-down container, running coderunner's own engine.

One engine, one protocol: each container runs the InProcess engine behind the coderunner REST server (the
"agent", :func:`run_agent`), and the host drives it over HTTP, through a unix socket in a bind-mounted
directory (the default: the container needs no network) or over TCP (remote engines, ``transport="tcp"``).
Every language, file rule, output cap, resource figure and timeout policy is therefore the same code as
InProcess; this module only adds the container lifecycle:

* **Isolation defaults** (:class:`ContainerOptions`): no network, a non-root user, all capabilities dropped,
  no-new-privileges, memory / CPU / pids limits, a read-only root filesystem with a writable ``/work``
  (bind-mounted session directory) and small tmpfs ``/tmp`` and ``$HOME``. Each is configurable per runner
  (``CodeRunner(backend="docker", memory="2g", network=True)``) and per session
  (``runner.start_session(cpus=2)``). ``runtime="runsc"`` runs the container under gVisor.
* **Image**: built locally when missing (never pulled), tagged by a hash of its content (the coderunner
  package, the Dockerfile, the base image and the build options), see :func:`ensure_image`.
* **Lifecycle**: a warm pool of started containers (``pool_size``); containers carry labels naming their
  owner process, so the leftovers of a crashed runner are removed when the next one starts; everything is
  removed on close, on expiry and at exit. A container that dies (OOM kill, pids exhaustion, killed agent)
  gives an ``InterpreterDied`` result with ``state_lost=True``, and the session gets a fresh container
  (same ``/work``).
* **Remote engines** (``DOCKER_HOST=tcp://...`` or ``ssh://...``): nothing can be bind-mounted from here, so
  ``/work`` is a tmpfs in the container (lost when a container is replaced), and the agent listens on the
  engine host's loopback with a per-container API key: the container then shares the engine host's network
  namespace, i.e. it is NOT network-isolated. Use remote engines for capacity, not for hostile code, until
  the transport goes through the engine's own attach stream.

Transport: the host speaks HTTP/JSON to the agent with httpx (session, files, streamed executions) and,
for the non-streaming execute every call makes, with a kept-alive ``http.client`` connection: httpx costs
about a millisecond more per request, a third of a whole Python round trip.

Errors (all from :mod:`coderunner.errors`; no ``docker.errors.*`` or ``httpx.*`` exception escapes)::

    MissingDependencyError   the 'docker' package is not installed (pip install 'coderunner-sandbox[docker]')
    BackendUnavailableError  no Docker engine answers (the message says how to install and start one)
    BackendError             the image could not be built, a container would not start
    ConfigurationError       a bad option (memory="lots"), a runtime the engine does not have

Environment variables (each the default of the option of the same name):

==================================  ================  ===========================================================
Variable                            Option            Meaning
==================================  ================  ===========================================================
DOCKER_HOST                         base_url          the engine (unix socket, tcp://, ssh://); Podman's works too
CODERUNNER_DOCKER_IMAGE             image             use this image as is (never built); default: build one
CODERUNNER_DOCKER_BASE              base              base of the built image (default python:3.12-slim, or the
                                                      offline coderunner-base:bookworm when that exists locally)
CODERUNNER_DOCKER_DATASCIENCE       datascience       1/0: numpy, pandas, matplotlib, pillow in the image (1)
CODERUNNER_DOCKER_BROWSER           browser           1/0: Chromium and Playwright in the image (1)
CODERUNNER_DOCKER_NETWORK           network           none (default), default/1 (the engine's default network),
                                                      host, or a network name
CODERUNNER_DOCKER_BROWSER_NETWORK   browser_options   the same for the browser container only (default: the
                                                      sessions' network)
CODERUNNER_DOCKER_MEMORY            memory            memory limit, no swap (default 1g)
CODERUNNER_DOCKER_CPUS              cpus              CPU limit (default 1)
CODERUNNER_DOCKER_PIDS_LIMIT        pids_limit        processes + threads (default 256)
CODERUNNER_DOCKER_RUNTIME           runtime           OCI runtime, e.g. runsc for gVisor (default: the engine's)
CODERUNNER_DOCKER_TRANSPORT         transport         uds (default for a local engine) or tcp
CODERUNNER_DOCKER_DISK_LIMIT        disk_limit        most a session may write to /work (default 2g; none: no cap);
                                                      a loop-mounted filesystem per session, needs root on the host
==================================  ================  ===========================================================
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

from coderunner import _core
from coderunner._version import __version__
from coderunner.backends.agent_client import (
    KEY_FILE,
    NONCE_HEADER,
    PROOF_HEADER,
    PROOF_TRAILER,
    AgentClient,
    AgentForged,
    AgentUnreachable,
    AnswerTooLarge,
    answer_proof,
    new_key,
    request_digest,
)
from coderunner.backends.docker_browser import AsyncDockerBrowserMixin, BrowserContainer, DockerBrowserMixin
from coderunner.backends.docker_disk import SessionStorage, disk_limit_support, unmount_below
from coderunner.browser.config import BrowserSettings
from coderunner.config import Settings
from coderunner.errors import (
    BackendError,
    BackendUnavailableError,
    CapacityError,
    CodeRunnerError,
    ConfigurationError,
    InvalidRequestError,
    MissingDependencyError,
    SessionNotFoundError,
    error_for_code,
)
from coderunner.models import ErrorInfo, ExecutionResult, FileInfo, SessionInfo

if TYPE_CHECKING:
    from fastapi import FastAPI

    from coderunner.backends.inprocess import AsyncInProcessBackend

__all__ = [
    "AsyncDockerBackend",
    "ContainerOptions",
    "DockerBackend",
    "ImageSpec",
    "connect",
    "ensure_image",
    "factory",
    "run_agent",
    "sweep_orphans",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
OutputCallback = Callable[[str], None]
DockerClient = Any
"""``docker.DockerClient`` (the SDK ships no type hints)."""

IMAGE_REPO = "coderunner-sandbox"
"""Repository name of the images this module builds; the tag is a content hash."""
DEFAULT_BASE = "python:3.12-slim"
"""Base image for machines that reach a registry."""
OFFLINE_BASE = "coderunner-base:bookworm"
"""Base image made by ``docker/build-base.sh`` (debootstrap + docker import); preferred when present."""
SANDBOX_UID = 1000
"""The image's unprivileged user; containers run as it when the host user is root, else as the host user."""

LABEL_MANAGED = "org.coderunner.managed"
LABEL_RUNNER = "org.coderunner.runner"
LABEL_OWNER_PID = "org.coderunner.owner-pid"
LABEL_OWNER_START = "org.coderunner.owner-start"
LABEL_OWNER_HOST = "org.coderunner.owner-host"
LABEL_ROLE = "org.coderunner.role"
LABEL_IMAGE = "org.coderunner.image"
LABEL_HASH = "org.coderunner.content-hash"
LABEL_BROWSER = "org.coderunner.browser"

_IN_WORK = "/work"
_IN_SOCK_DIR = "/run/coderunner"
_SOCK_NAME = "api.sock"
_AGENT_PREFIX = "/_agent"
_START_TIMEOUT = 90.0
_TOMBSTONES = 1000
_INSTALL_HINT = (
    "Install Docker (Debian/Ubuntu: apt-get install docker.io; elsewhere https://docs.docker.com/engine/install/) "
    "and start it (systemctl start docker, or run dockerd; this repository's scripts/docker-engine.sh does both "
    "without systemd). A Podman socket works too: set DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock."
)


# -- options ---------------------------------------------------------------------------------------

DEFAULT_DISK_LIMIT = "2g"
"""What a session may write to ``/work`` unless configured otherwise (``disk_limit``)."""
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(value: str | int, *, name: str = "memory") -> int:
    """Turn ``"512m"``, ``"1g"``, ``"1.5GiB"`` or a byte count into bytes.

    Raises:
        ConfigurationError: The value is not a size or is below 32 MiB.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a size such as '1g', not {value!r}.")
    if isinstance(value, int):
        size = value
    else:
        match = _MEMORY.match(str(value))
        if not match:
            raise ConfigurationError(f"{name}={value!r} is not a size; use e.g. '512m' or '2g'.")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < 32 * 1024**2:
        raise ConfigurationError(f"{name}={value!r} is too small; a session needs at least '32m' (use '256m' or more).")
    return size


@dataclasses.dataclass(frozen=True)
class ContainerOptions:
    """How a session's container is confined. Every field is a per-runner and per-session option.

    Attributes:
        network: False/'none' (default): loopback only. True/'default': the engine's default network.
            'host' or any network name: that network.
        memory: Memory limit (swap disabled), e.g. '512m', '2g'.
        cpus: CPU limit (fractions allowed).
        pids_limit: Most processes + threads at once (a fork bomb stops here); at least 64 under gVisor.
        runtime: OCI runtime ('runsc' for gVisor); None: the engine's default (runc).
        read_only: Read-only root filesystem (``/work``, ``/tmp`` and ``$HOME`` stay writable).
        tmpfs_size: Size of each of the ``/tmp`` and ``$HOME`` tmpfs mounts (counted in ``memory``).
        user: 'uid' or 'uid:gid' inside the container; None: yours, or 1000 when you are root.
        disk_limit: Most bytes the session may write to ``/work`` (a loop-mounted filesystem of that size on the
            host, see :mod:`coderunner.backends.docker_disk`); None: no cap. Not applied to a ``working_dir`` of
            your own, which is mounted as it is.
    """

    network: bool | str = False
    memory: str | int = "1g"
    cpus: float = 1.0
    pids_limit: int = 256
    runtime: str | None = None
    read_only: bool = True
    tmpfs_size: str = "256m"
    user: str | None = None
    disk_limit: str | int | None = DEFAULT_DISK_LIMIT

    NAMES = ("network", "memory", "cpus", "pids_limit", "runtime", "read_only", "tmpfs_size", "user", "disk_limit")

    def __post_init__(self) -> None:
        parse_memory(self.memory)
        parse_memory(self.tmpfs_size)
        if self.disk_limit is not None:
            parse_memory(self.disk_limit, name="disk_limit")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)) or not 0 < self.cpus <= 1024:
            raise ConfigurationError(f"cpus={self.cpus!r} must be a positive number such as 1 or 0.5.")
        if isinstance(self.pids_limit, bool) or not isinstance(self.pids_limit, int) or self.pids_limit < 16:
            raise ConfigurationError(f"pids_limit={self.pids_limit!r} must be a whole number of at least 16.")
        if self.runtime == "runsc" and self.pids_limit < 64:
            raise ConfigurationError("gVisor (runtime='runsc') needs pids_limit of at least 64.")
        if not isinstance(self.network, (bool, str)) or (isinstance(self.network, str) and not self.network.strip()):
            raise ConfigurationError(f"network={self.network!r} must be True/False, 'none', 'host' or a network name.")

    @property
    def network_mode(self) -> str | None:
        """The Docker network mode: 'none', None (the engine's default network), or a name."""
        if self.network is False or self.network in ("none", "0", "false", "off"):
            return "none"
        if self.network is True or self.network in ("default", "1", "true", "on"):
            return None
        return str(self.network)

    def with_overrides(self, overrides: Mapping[str, Any]) -> ContainerOptions:
        """A copy with ``overrides`` applied (None values are ignored).

        Raises:
            ConfigurationError: An unknown option name or an invalid value.
        """
        unknown = set(overrides) - set(self.NAMES)
        if unknown:
            raise ConfigurationError(
                f"Unknown Docker option(s): {', '.join(sorted(unknown))}. Known: {', '.join(self.NAMES)}."
            )
        values = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **values) if values else self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ContainerOptions:
        """Defaults overridden by the ``CODERUNNER_DOCKER_*`` variables."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        raw = env.get("CODERUNNER_DOCKER_NETWORK", "").strip()
        if raw:
            values["network"] = network_from_text(raw)
        if env.get("CODERUNNER_DOCKER_MEMORY", "").strip():
            values["memory"] = env["CODERUNNER_DOCKER_MEMORY"].strip()
        for var, name, kind in (
            ("CODERUNNER_DOCKER_CPUS", "cpus", float),
            ("CODERUNNER_DOCKER_PIDS_LIMIT", "pids_limit", int),
        ):
            text = env.get(var, "").strip()
            if text:
                try:
                    values[name] = kind(text)
                except ValueError:
                    raise ConfigurationError(f"{var}={text!r} is not a number.") from None
        if env.get("CODERUNNER_DOCKER_RUNTIME", "").strip():
            values["runtime"] = env["CODERUNNER_DOCKER_RUNTIME"].strip()
        disk = env.get("CODERUNNER_DOCKER_DISK_LIMIT", "").strip()
        if disk:
            values["disk_limit"] = None if disk.lower() in ("none", "0", "off", "false") else disk
        return cls(**values)


def network_from_text(raw: str) -> str:
    """A ``network`` option from a variable's text: the keywords lower-cased, a network's name as it is."""
    return raw.lower() if raw.lower() in ("none", "default", "host", "0", "1") else raw


# -- the engine --------------------------------------------------------------------------------------


def _docker_module() -> Any:
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
    docker = _docker_module()
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


def _translate_docker(exc: BaseException, doing: str) -> CodeRunnerError:
    docker = _docker_module()
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
def _docker_errors(doing: str) -> Iterator[None]:
    """Translate Docker SDK and requests exceptions into coderunner errors."""
    docker = _docker_module()
    import requests

    try:
        yield
    except CodeRunnerError:
        raise
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise _translate_docker(exc, doing) from None


# -- image -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What goes into the sandbox image.

    Attributes:
        base: Base image (None: ``CODERUNNER_DOCKER_BASE``, else the offline base if present, else python:3.12-slim).
        datascience: Install numpy, pandas, matplotlib and pillow (``CODERUNNER_DOCKER_DATASCIENCE``, default on).
        browser: Install Playwright, and Debian's Chromium when the base has none, for the backend's browser
            container (``CODERUNNER_DOCKER_BROWSER``, default on).
    """

    base: str | None = None
    datascience: bool | None = None
    browser: bool | None = None

    def resolved(self, client: DockerClient) -> ImageSpec:
        """A copy with every default filled in."""
        base = self.base or os.environ.get("CODERUNNER_DOCKER_BASE", "").strip() or None
        if base is None:
            base = OFFLINE_BASE if _image_exists(client, OFFLINE_BASE) else DEFAULT_BASE
        datascience = _env_flag("CODERUNNER_DOCKER_DATASCIENCE") if self.datascience is None else self.datascience
        browser = _env_flag("CODERUNNER_DOCKER_BROWSER") if self.browser is None else self.browser
        return ImageSpec(base=base, datascience=datascience, browser=browser)

    @property
    def extras(self) -> str:
        """The coderunner extras installed in the image."""
        return ",".join(
            ["server"] + (["datascience"] if self.datascience else []) + (["browser"] if self.browser else [])
        )


def _env_flag(name: str, default: bool = True) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return default
    return text not in ("0", "false", "no", "off")


def _image_exists(client: DockerClient, name: str) -> bool:
    docker = _docker_module()
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as exc:
        raise _translate_docker(exc, f"Looking up image {name}") from None
    return True


def _package_root() -> Path:
    return Path(__file__).resolve().parents[1]


def find_dockerfile() -> Path:
    """The sandbox Dockerfile: ``CODERUNNER_DOCKERFILE`` when set, else the one shipped in the package.

    ``coderunner/backends/sandbox.Dockerfile`` is package data, so an installed wheel builds the image as a
    source checkout does (the repository's ``docker/Dockerfile`` is a link to it).

    Raises:
        ConfigurationError: ``CODERUNNER_DOCKERFILE`` names no file, or the package lost its copy.
    """
    explicit = os.environ.get("CODERUNNER_DOCKERFILE", "").strip()
    path = Path(explicit) if explicit else Path(__file__).with_name("sandbox.Dockerfile")
    if path.is_file():
        return path
    raise ConfigurationError(
        f"Cannot find the sandbox Dockerfile at {path}. "
        + (
            "Fix or unset CODERUNNER_DOCKERFILE."
            if explicit
            else "Reinstall coderunner, or set CODERUNNER_DOCKER_IMAGE to an image built with 'coderunner image build'."
        )
    )


def content_hash(spec: ImageSpec, base_id: str) -> str:
    """Hash of everything that makes the image: the coderunner package's files, the Dockerfile, base, options."""
    digest = hashlib.sha256()
    digest.update(f"spec:{spec.base}|{base_id}|{spec.extras}|{SANDBOX_UID}\n".encode())
    digest.update(find_dockerfile().read_bytes())
    root = _package_root()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _base_id(client: DockerClient, base: str, progress: Callable[[str], None]) -> str:
    docker = _docker_module()
    try:
        return str(client.images.get(base).id)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as exc:
        raise _translate_docker(exc, f"Looking up base image {base}") from None
    progress(f"pulling the base image {base} (only the base is ever pulled)")
    try:
        return str(client.images.pull(base).id)
    except docker.errors.DockerException as exc:
        raise BackendError(
            f"The base image {base} is not on this machine and could not be pulled ({exc}). Without a registry, "
            f"build the offline base with 'sudo docker/build-base.sh' (it makes {OFFLINE_BASE}, used automatically), "
            "or set CODERUNNER_DOCKER_BASE to a local image with python3."
        ) from None


def expected_tag(client: DockerClient, spec: ImageSpec, progress: Callable[[str], None] | None = None) -> str:
    """The tag the image for ``spec`` has (``coderunner-sandbox:<content hash>``), built or not."""
    spec = spec.resolved(client)
    assert spec.base is not None
    return f"{IMAGE_REPO}:{content_hash(spec, _base_id(client, spec.base, progress or _stderr))[:12]}"


def ensure_image(
    client: DockerClient, spec: ImageSpec | None = None, *, progress: Callable[[str], None] | None = None
) -> str:
    """Return the sandbox image's tag, building it first when no image has this content hash yet.

    Never pulls the sandbox image; only a missing *base* is pulled (where a registry is reachable).
    """
    progress = progress or _stderr
    tag = expected_tag(client, spec or ImageSpec(), progress)
    if _image_exists(client, tag):
        return tag
    return build_image(client, spec or ImageSpec(), tag=tag, progress=progress)


def _stderr(message: str) -> None:
    print(f"coderunner: {message}", file=sys.stderr, flush=True)


_PROBE = (
    "import ctypes.util, json, platform, shutil, sys; libc = platform.libc_ver(); "
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], 'libc': libc[0], 'libc_version': libc[1], "
    "'machine': platform.machine(), 'tools': [t for t in ('bash', 'node', 'npm', 'chromium') if shutil.which(t)] "
    "+ (['libatomic'] if ctypes.util.find_library('atomic') else [])}))"
)


def _probe_base(client: DockerClient, base: str) -> dict[str, Any]:
    with _docker_errors(f"Inspecting base image {base}"):
        container = client.containers.create(base, ["python3", "-c", _PROBE], network_mode="none")
        try:
            container.start()
            status = container.wait(timeout=60)
            out = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            container.remove(force=True)
    if status.get("StatusCode") != 0:
        raise BackendError(
            f"The base image {base} cannot run python3 (the sandbox needs python >= 3.10): {out.strip()}"
        )
    info: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if tuple(int(p) for p in info["python"].split(".")) < (3, 10):
        raise BackendError(f"The base image {base} has Python {info['python']}; coderunner needs 3.10 or newer.")
    return info


def _source_tree() -> Path | None:
    from coderunner.backends.wheel import source_tree

    return source_tree()


def _run_pip(args: list[str], doing: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackendError(f"{doing} failed (pip exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _fetch_wheels(ctx: Path, spec: ImageSpec, probe: dict[str, Any], progress: Callable[[str], None]) -> None:
    """Fill ``ctx/own`` with a coderunner wheel and ``ctx/deps`` with its dependencies' wheels for the base.

    Two folders, two image layers: a change to coderunner's code rebuilds only the small last one. The
    coderunner wheel is built from the source tree when coderunner runs from one, else made from the
    installed package (:mod:`coderunner.backends.wheel`); it never comes from an index.
    """
    from coderunner.backends.wheel import WHEEL_NAME, build_installed_wheel

    own_dir, deps = ctx / "own", ctx / "deps"
    own_dir.mkdir()
    deps.mkdir()
    source = _source_tree()
    if source is not None:
        progress("building the coderunner wheel from the source tree")
        build = ["wheel", "-q", "--no-deps", "-w", str(own_dir), str(source)]
        try:
            # Without isolation when setuptools is at hand: no index is needed then.
            _run_pip([*build, "--no-build-isolation"], "pip wheel")
        except BackendError:
            _run_pip(build, "Building the coderunner wheel")
    else:
        # Never from an index: the image must run the code this host runs (and "coderunner" there is another project).
        progress("making the coderunner wheel from the installed package (no build, no index)")
        build_installed_wheel(own_dir)
    own = sorted(own_dir.glob(f"{WHEEL_NAME}-*.whl"))
    if not own:
        raise BackendError("No coderunner wheel was produced.")
    glibc = probe.get("libc_version") or "2.28"
    major, minor = [*glibc.split("."), "0"][:2]
    machine = probe["machine"]
    # pip does not widen an explicit --platform to older glibc tags: list every compatible one.
    tags = [f"manylinux_2_{m}_{machine}" for m in range(int(minor), 16, -1)] if major == "2" else []
    tags += [f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    progress(f"fetching wheels for Python {probe['python']} (glibc {glibc}, {machine}, extras {spec.extras})")
    _run_pip(
        [
            "download",
            "-q",
            "--only-binary=:all:",
            "--python-version",
            probe["python"],
            "--implementation",
            "cp",
            *(arg for tag in tags for arg in ("--platform", tag)),
            "-d",
            str(deps),
            f"{own[-1]}[{spec.extras}]",
            "pip",
        ],
        "Fetching the image's wheels",
    )
    for wheel in deps.glob(f"{WHEEL_NAME}-*.whl"):
        wheel.unlink()


def build_image(
    client: DockerClient,
    spec: ImageSpec | None = None,
    *,
    tag: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Build the sandbox image from :func:`find_dockerfile` and wheels fetched on this host; return its tag.

    The build runs with ``--network none`` whenever the base already has bash, node and npm (the offline
    base), so it works on machines without any registry.
    """
    progress = progress or _stderr
    spec = (spec or ImageSpec()).resolved(client)
    assert spec.base is not None
    base_id = _base_id(client, spec.base, progress)
    full_hash = content_hash(spec, base_id)
    tag = tag or f"{IMAGE_REPO}:{full_hash[:12]}"
    progress(f"building the Docker image {tag} from {spec.base} (first use only; about a minute)")
    started = time.monotonic()
    probe = _probe_base(client, spec.base)
    with tempfile.TemporaryDirectory(prefix="coderunner-image-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(find_dockerfile(), ctx / "Dockerfile")
        _fetch_wheels(ctx, spec, probe, progress)
        # libatomic: the node binary inside the playwright wheel links it.
        needed = {"bash", "node", "npm"} | ({"chromium", "libatomic"} if spec.browser else set())
        lacking = sorted(needed - set(probe.get("tools", [])))
        offline = not lacking
        progress(f"docker build ({'network none' if offline else 'with network: the base lacks ' + '/'.join(lacking)})")
        with _docker_errors(f"Building image {tag}"):
            stream = client.api.build(
                path=str(ctx),
                tag=tag,
                buildargs={"BASE": spec.base, "EXTRAS": spec.extras, "UID": str(SANDBOX_UID)},
                labels={
                    LABEL_IMAGE: "sandbox",
                    LABEL_HASH: full_hash,
                    LABEL_BROWSER: "1" if spec.browser else "0",
                    "org.coderunner.version": __version__,
                },
                network_mode="none" if offline else None,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    raise BackendError(f"Building image {tag} failed: {str(chunk['error']).strip()}")
                line = str(chunk.get("stream", "")).strip()
                if line.startswith("Step "):
                    progress(line if len(line) < 100 else line[:97] + "...")
            client.images.get(tag).tag(IMAGE_REPO, "latest")
    progress(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


# -- the agent (runs inside the container) -------------------------------------------------------------


class _AgentSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: str = "python"
    env: dict[str, str] | None = None
    metadata: dict[str, str] | None = None


class _AgentExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    language: str | None = None
    timeout: float | None = None
    stream: bool = True
    request_id: str | None = None
    """The host's id for this execution: a resent request (same id) gets the first one's result, never a rerun."""


class _Executions:
    """The agent's executions by request id, so that a request the host had to send again runs its code once."""

    _KEEP = 64

    def __init__(self, backend: AsyncInProcessBackend) -> None:
        self.backend = backend
        self._by_id: collections.OrderedDict[str, Any] = collections.OrderedDict()

    async def run(
        self,
        session_id: str,
        body: _AgentExecuteRequest,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``body`` in the session, or wait for the run of the same request id that is already there."""
        import asyncio

        known = self._by_id.get(body.request_id) if body.request_id else None
        if known is not None:
            result: ExecutionResult = await asyncio.shield(known)
            return result
        oom_before = _memory_events()
        task = asyncio.ensure_future(
            self.backend.execute(
                session_id, body.code, body.language, timeout=body.timeout, on_stdout=on_stdout, on_stderr=on_stderr
            )
        )
        if body.request_id:
            self._by_id[body.request_id] = task
            while len(self._by_id) > self._KEEP:
                self._by_id.popitem(last=False)
        # Shielded: a host whose connection broke sends the same request again and takes this result; it never
        # goes unasked (the host interrupts a call it gives up on).
        return _explain_oom(await asyncio.shield(task), oom_before)


def _memory_events() -> int | None:
    """The container's count of OOM kills (cgroup v2) or of hits on its memory limit (v1), if readable."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/sys/fs/cgroup/memory.events").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/sys/fs/cgroup/memory/memory.failcnt").read_text())
    return None


def _memory_limit() -> str | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            text = Path(path).read_text().strip()
            if text != "max" and int(text) < 1 << 60:
                return f"{int(text) / 1024**2:.0f} MiB"
    return None


def agent_app(backend: AsyncInProcessBackend, workdir: Path, api_key: str | None = None) -> FastAPI:
    """The in-container server: :func:`coderunner.server.app.create_app` plus the agent's two routes.

    ``POST /_agent/session`` creates the container's session in ``workdir`` (the bind-mounted ``/work``) from
    the warm kernel; ``POST /_agent/sessions/{id}/execute`` runs code and streams NDJSON events
    (``{"t": "out"|"err", "d": text}``, then ``{"t": "result", "r": ExecutionResult}`` or
    ``{"t": "error", "code", "message"}``), so output callbacks work across the socket.
    """
    import asyncio

    from fastapi.responses import JSONResponse, Response, StreamingResponse

    from coderunner.server.app import create_app

    app = create_app(backend.settings, backend=backend, api_key=api_key, db_path=":memory:", mcp=False)
    app.state.executions = executions = _Executions(backend)
    loop_time = time.monotonic

    @app.post(f"{_AGENT_PREFIX}/session", include_in_schema=False, response_model=None)
    async def agent_session(body: _AgentSessionRequest) -> JSONResponse:
        # One session per container: once it has taken the warm kernel, starting another would only waste
        # the container's memory and CPU.
        backend.engine.settings = dataclasses.replace(backend.engine.settings, pool_size=0)
        info = await backend.create_session(
            body.language, env=body.env, working_dir=str(workdir), metadata=body.metadata
        )
        return JSONResponse(info.model_dump(mode="json"))

    @app.get(f"{_AGENT_PREFIX}/ready", include_in_schema=False, response_model=None)
    async def agent_ready(timeout: float = 60.0) -> JSONResponse:
        # A pooled container counts as warm once its Python kernel is: that is what makes sessions fast.
        deadline = loop_time() + timeout
        while backend.engine.settings.pool_size > 0 and backend.stats()["pooled_kernels"] < 1:
            if loop_time() >= deadline:
                return JSONResponse({"ready": False})
            await asyncio.sleep(0.01)
        return JSONResponse({"ready": True})

    @app.post(f"{_AGENT_PREFIX}/sessions/{{session_id}}/execute", include_in_schema=False, response_model=None)
    async def agent_execute(session_id: str, body: _AgentExecuteRequest) -> Response:
        if not body.stream:
            # The hot path (no output callbacks): one plain JSON answer, no event machinery.
            result = await executions.run(session_id, body)
            return Response(result.model_dump_json(), media_type="application/json")
        await backend.get_session(session_id)  # an unknown session is a JSON 404, not a broken stream
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

        def forward(kind: str) -> OutputCallback:
            # Called on the engine's thread; items keep their order on this loop.
            def put(text: str) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, text))

            return put

        task = asyncio.ensure_future(executions.run(session_id, body, forward("out"), forward("err")))

        async def events() -> Any:
            while not task.done():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    kind, text = getter.result()
                    yield json.dumps({"t": kind, "d": text}) + "\n"
                else:
                    getter.cancel()
            while not queue.empty():
                kind, text = queue.get_nowait()
                yield json.dumps({"t": kind, "d": text}) + "\n"
            try:
                result = task.result()
            except CodeRunnerError as exc:
                yield json.dumps({"t": "error", **exc.to_dict()}) + "\n"
                return
            yield json.dumps({"t": "result", "r": result.model_dump(mode="json")}) + "\n"

        return StreamingResponse(events(), media_type="application/x-ndjson")

    return app


def _explain_oom(result: ExecutionResult, oom_before: int | None) -> ExecutionResult:
    """Say so when an interpreter died because the container hit its memory limit."""
    if result.error is None or result.error.name != "InterpreterDied" or oom_before is None:
        return result
    after = _memory_events()
    if after is None or after <= oom_before:
        return result
    limit = _memory_limit()
    note = (
        f"The session's container reached its memory limit{f' ({limit})' if limit else ''} and the kernel killed "
        "the interpreter (out of memory). Use less memory, or give the session more (memory='2g')."
    )
    error = ErrorInfo(name=result.error.name, value=f"{note} {result.error.value}", traceback=result.error.traceback)
    return result.model_copy(update={"error": error, "warnings": [*result.warnings, note]})


class _FastExecute:
    """ASGI front of the agent: answers the hot non-streaming execute itself, everything else goes to the app.

    An execution round trip is a few milliseconds; FastAPI's routing, dependency and validation layers add
    about half a millisecond to it, which is worth skipping on the one route every call uses.
    """

    def __init__(self, app: Any, executions: _Executions, api_key: str | None) -> None:
        self.app = app
        self.executions = executions
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and path.startswith(f"{_AGENT_PREFIX}/sessions/")
            and path.endswith("/execute")
        ):
            await self.app(scope, receive, send)
            return
        if self.api_key is not None:
            import hmac

            given = dict(scope.get("headers") or []).get(b"x-api-key", b"")
            if not hmac.compare_digest(given, self.api_key):
                await self.app(scope, receive, send)  # the app's middleware answers 401
                return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            request = _AgentExecuteRequest.model_validate_json(body)
        except ValueError:
            request = None
        if request is None or request.stream:
            await self.app(scope, _replay(body, receive), send)
            return
        session_id = path[len(f"{_AGENT_PREFIX}/sessions/") : -len("/execute")]
        try:
            result = await self.executions.run(session_id, request)
        except CodeRunnerError as exc:
            from coderunner.server.app import http_status_for

            status, payload = http_status_for(exc), json.dumps({"detail": exc.message, **exc.to_dict()}).encode()
        else:
            status, payload = 200, result.model_dump_json().encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class _ProveAnswers:
    """ASGI wrapper of the agent: every answer to the host carries the proof the host checks (see agent_client).

    The host sends a nonce with each request; the answer gets ``X-Coderunner-Proof``, an HMAC under the box's key
    of the nonce, the request and the answer. A streamed (NDJSON) answer cannot have its proof in a header, so it
    ends with a ``{"t": "proof"}`` line instead. Requests without a nonce (the sandboxed code calling its own
    agent) are answered without a proof.
    """

    def __init__(self, app: Any, key: bytes) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        nonce_raw = headers.get(NONCE_HEADER.lower().encode())
        if nonce_raw is None:
            await self.app(scope, receive, send)
            return
        nonce = nonce_raw.decode("ascii", "replace")
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the host went away before the body was in
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        digest = request_digest(scope["method"], target, body)
        key = self.key
        start: dict[str, Any] = {}
        held: list[bytes] = []
        streaming = False
        seen = hashlib.sha256()

        def with_proof(message: dict[str, Any], proof: str) -> dict[str, Any]:
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != PROOF_HEADER.lower().encode()]
            return {**message, "headers": [*kept, (PROOF_HEADER.lower().encode(), proof.encode())]}

        async def proving_send(message: dict[str, Any]) -> None:
            nonlocal streaming
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunk, more_body = message.get("body", b""), message.get("more_body", False)
            status = int(start["status"])
            if not streaming and not held and not more_body:  # the usual case: the whole answer at once
                proof = answer_proof(key, nonce, digest, status, hashlib.sha256(chunk).digest())
                await send(with_proof(start, proof))
                await send(message)
                return
            if not streaming and not held:
                content_type = dict(start.get("headers", [])).get(b"content-type", b"")
                streaming = content_type.startswith(b"application/x-ndjson")
                if streaming:
                    # No length: the proof line is added at the end.
                    head = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                    await send(with_proof({**start, "headers": head}, PROOF_TRAILER))
            if not streaming:  # any other answer in parts: held until whole (answers are bounded in size)
                held.append(chunk)
                if not more_body:
                    whole = b"".join(held)
                    proof = answer_proof(key, nonce, digest, status, hashlib.sha256(whole).digest())
                    head = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                    await send(
                        with_proof({**start, "headers": [*head, (b"content-length", str(len(whole)).encode())]}, proof)
                    )
                    await send({"type": "http.response.body", "body": whole})
                return
            seen.update(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not more_body:
                line = json.dumps({"t": "proof", "p": answer_proof(key, nonce, digest, status, seen.digest())})
                await send({"type": "http.response.body", "body": line.encode() + b"\n"})

        await self.app(scope, _replay(body, receive), proving_send)


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` that first hands back a body already read."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replayed


def run_agent(
    *,
    uds: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    workdir: str = _IN_WORK,
    api_key: str | None = None,
) -> int:
    """Serve the agent (the coderunner server plus the agent routes) until stopped; the container's main process.

    The agent proves its answers with the box's key (see :mod:`coderunner.backends.agent_client`), which the
    sandboxed code must never read: with ``uds`` it comes in the file ``agent.key`` beside the socket, which is
    read and deleted here before any kernel starts, and the process is made non-dumpable, so code of the same user
    can neither read its memory or ``/proc/<pid>/environ`` nor ptrace it.

    Args:
        uds: Listen on this unix socket (the default transport; the container needs no network).
        host: TCP interface when ``uds`` is None.
        port: TCP port (0: any; the chosen one is printed as ``coderunner-agent: listening on tcp://HOST:PORT``).
        workdir: The session directory (the bind-mounted ``/work``).
        api_key: Key clients must send (TCP transport); also the key of the answers' proofs there.
    """
    import site

    import uvicorn

    from coderunner.backends.inprocess import AsyncInProcessBackend

    key = _take_agent_key(uds, api_key)
    _make_undumpable()
    # Installing packages on the read-only root is a user install (pip does this by itself); the user
    # site directory must exist before the first kernel starts, or Python leaves it off sys.path.
    with contextlib.suppress(OSError):
        os.makedirs(site.getusersitepackages(), exist_ok=True)
    settings = Settings.from_env()
    backend = AsyncInProcessBackend(settings)
    inner = agent_app(backend, Path(workdir), api_key)
    app = _ProveAnswers(_FastExecute(inner, inner.state.executions, api_key), key)
    # Only the host that started the container connects: keep its connections open (no reconnects, and no
    # idle connection closed just as a request goes out on it).
    options: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "on",
        "access_log": False,
        "timeout_keep_alive": 86_400,
    }
    if uds is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(uds)
        config = uvicorn.Config(app, uds=uds, **options)
        uvicorn.Server(config).run()
        return 0
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    print(f"coderunner-agent: listening on tcp://{host}:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, **options)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _take_agent_key(uds: str | None, api_key: str | None) -> bytes:
    """The box's key: read from ``agent.key`` beside the socket and deleted (uds), or the API key (TCP)."""
    if uds is None:
        if not api_key:
            raise SystemExit("coderunner sandbox-agent: no key (CODERUNNER_AGENT_KEY) for the TCP transport")
        return api_key.encode()
    path = Path(uds).parent / KEY_FILE
    try:
        key = path.read_bytes()
        path.unlink()
    except OSError as exc:
        raise SystemExit(f"coderunner sandbox-agent: cannot take the agent key from {path}: {exc}") from None
    if len(key) < 16:
        raise SystemExit(f"coderunner sandbox-agent: the agent key in {path} is too short")
    return key


def _make_undumpable() -> None:
    """PR_SET_DUMPABLE 0: processes of the same user can no longer read this one's memory, environ or ptrace it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        raise SystemExit(f"coderunner sandbox-agent: prctl(PR_SET_DUMPABLE) failed: errno {ctypes.get_errno()}")


# -- the wire (host side) ------------------------------------------------------------------------------


def _agent_execute(
    wire: AgentClient,
    session_id: str,
    code: str,
    language: str | None,
    timeout: float | None,
    grace: float,
    request_id: str,
    on_stdout: OutputCallback | None,
    on_stderr: OutputCallback | None,
) -> ExecutionResult:
    """Run code through a box's agent; ``request_id`` makes sending it again safe (the agent runs it once)."""
    body = {
        "code": code,
        "language": language,
        "timeout": timeout,
        "stream": on_stdout is not None or on_stderr is not None,
        "request_id": request_id,
    }
    # The engine inside enforces the time limit; this only catches a container that stopped answering.
    read = None if timeout is None else timeout + grace + 30.0
    path = f"{_AGENT_PREFIX}/sessions/{session_id}/execute"
    if not body["stream"]:
        return ExecutionResult.model_validate_json(wire.request("POST", path, json_body=body, timeout=read).content)
    result: ExecutionResult | None = None
    for event in wire.stream("POST", path, json_body=body, timeout=read):
        kind = event.get("t")
        if kind == "out" and on_stdout is not None:
            on_stdout(str(event.get("d", "")))
        elif kind == "err" and on_stderr is not None:
            on_stderr(str(event.get("d", "")))
        elif kind == "result":
            result = ExecutionResult.model_validate(event["r"])
        elif kind == "error":
            raise error_for_code(str(event.get("code")), str(event.get("message")))
    if result is None:  # a proven stream without a result: the agent failed mid-way
        raise AgentUnreachable("the agent's stream ended without a result", sent=True)
    return result


# -- containers ----------------------------------------------------------------------------------------


def _is_socket(path: Path) -> bool:
    """True when ``path`` itself (not what a link there points to) is a socket."""
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def _hand_over_key(sock_dir: Path, key: bytes, uid: int, gid: int) -> None:
    """Write the box's key where only its agent reads it (``agent.key``), never following a planted link.

    The directory is writable from inside the sandbox (a container being replaced may still run), so the file
    is created afresh with ``O_EXCL | O_NOFOLLOW`` relative to the directory's own descriptor.
    """
    dir_fd = os.open(sock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(KEY_FILE, dir_fd=dir_fd)
        fd = os.open(
            KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400, dir_fd=dir_fd
        )
        try:
            os.write(fd, key)
            if os.getuid() == 0 and uid != 0:
                os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def _host_id() -> str:
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{socket.gethostname()}/{boot}"


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _owner_alive(labels: Mapping[str, str]) -> bool:
    try:
        pid, start = int(labels[LABEL_OWNER_PID]), float(labels[LABEL_OWNER_START])
    except (KeyError, ValueError):
        return False
    actual = _process_start(pid)
    return actual is not None and abs(actual - start) < 0.01


def sweep_orphans(client: DockerClient, runtime_dir: str | Path | None = None) -> int:
    """Remove the containers (and host directories) of runners of this host whose process is gone.

    Containers of other hosts sharing a remote engine are left alone. Returns how many containers went.
    """
    host = _host_id()
    removed = 0
    with _docker_errors("Listing leftover containers"):
        # The raw list: the SDK's containers.list() inspects each one and fails on any removed meanwhile.
        containers = client.api.containers(all=True, filters={"label": [LABEL_MANAGED, f"{LABEL_OWNER_HOST}={host}"]})
    for container in containers:
        if _owner_alive(container.get("Labels") or {}):
            continue
        with contextlib.suppress(Exception):  # already gone, or being removed by someone else: fine either way
            client.api.remove_container(container["Id"], force=True, v=True)
            removed += 1
    if runtime_dir is not None:
        root = Path(runtime_dir) / "docker"
        for runner_dir in root.glob("r-*") if root.is_dir() else []:
            try:
                owner = json.loads((runner_dir / "owner.json").read_text())
            except (OSError, ValueError):
                owner = {}
            alive = _owner_alive({LABEL_OWNER_PID: str(owner.get("pid")), LABEL_OWNER_START: str(owner.get("start"))})
            # Session disks first: deleting through a mount would only empty it, and leave it mounted.
            if not alive and unmount_below(runner_dir):
                shutil.rmtree(runner_dir, ignore_errors=True)
    if removed:
        log.info("removed %d containers left by runners that are gone", removed)
    return removed


@dataclasses.dataclass
class _Box:
    """One started container, its storage (``/work`` and the socket directory) and the way to talk to it."""

    container_id: str
    name: str
    options: ContainerOptions
    storage: SessionStorage
    wire: AgentClient
    owns_storage: bool = True
    """False once a replacement container took the storage over (or for a box that never had its own)."""

    @property
    def work(self) -> Path:
        """The host directory mounted as the container's ``/work``."""
        return self.storage.work


class _Fleet:
    """Starts, pools, watches and removes the containers of one backend. Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str | None,
        image: str | None,
        image_spec: ImageSpec,
        defaults: ContainerOptions,
        pool_size: int,
        transport: str | None,
        progress: Callable[[str], None] | None,
        disk_limit_explicit: bool = False,
    ) -> None:
        self.settings = settings
        self.client = connect(base_url)
        self.remote = not str(self.client.api.base_url).startswith("http+docker://localhost") or transport == "tcp"
        if transport not in (None, "uds", "tcp"):
            raise ConfigurationError(f"transport={transport!r} must be 'uds' or 'tcp'.")
        self.transport = transport or ("tcp" if self.remote else "uds")
        self.defaults = defaults
        self.disk_limit_explicit = disk_limit_explicit
        self._disk_unsupported = disk_limit_support() if self.transport == "uds" else None
        self._disk_warned = False
        self.pool_size = pool_size
        self.runner_id = uuid.uuid4().hex[:10]
        self.root = Path(settings.runtime_dir) / "docker" / f"r-{self.runner_id}"
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pool: collections.deque[_Box] = collections.deque()
        self._warming = 0
        self._boxes: dict[str, _Box] = {}
        self._counter = 0
        self._closed = False
        self._runtimes: set[str] | None = None
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="coderunner-docker")
        me = os.getpid()
        self.labels = {
            LABEL_MANAGED: "1",
            LABEL_RUNNER: self.runner_id,
            LABEL_OWNER_PID: str(me),
            LABEL_OWNER_START: repr(_process_start(me)),
            LABEL_OWNER_HOST: _host_id(),
        }
        Path(settings.runtime_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        sweep_orphans(self.client, settings.runtime_dir)
        self.root.mkdir(parents=True, mode=0o700)
        (self.root / "owner.json").write_text(json.dumps({"pid": me, "start": _process_start(me)}))
        self.image = image or os.environ.get("CODERUNNER_DOCKER_IMAGE", "").strip() or None
        try:
            if self.image is None:
                self.image = ensure_image(self.client, image_spec, progress=progress)
            elif not _image_exists(self.client, self.image):
                raise ConfigurationError(
                    f"The image {self.image} (CODERUNNER_DOCKER_IMAGE) is not on this Docker engine; the backend "
                    "never pulls it. Build one with 'coderunner image build --tag NAME', or unset "
                    "CODERUNNER_DOCKER_IMAGE."
                )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            self.client.close()
            raise
        _LIVE_FLEETS.add(self)
        self.fill_pool()

    # -- starting and stopping --------------------------------------------------------------------

    def _uid(self, options: ContainerOptions) -> tuple[int, int]:
        if options.user:
            uid, _, gid = options.user.partition(":")
            return int(uid), int(gid or uid)
        if self.remote or os.getuid() == 0:
            return SANDBOX_UID, SANDBOX_UID
        # Your own id: files the code writes in /work stay yours to read and delete.
        return os.getuid(), os.getgid()

    def _check_runtime(self, runtime: str | None) -> None:
        if runtime is None:
            return
        if self._runtimes is None:
            with _docker_errors("Reading the engine's runtimes"):
                self._runtimes = set((self.client.info().get("Runtimes") or {}).keys())
        if runtime not in self._runtimes:
            raise ConfigurationError(
                f"The Docker engine has no runtime {runtime!r} (it has: {', '.join(sorted(self._runtimes))}). For "
                "gVisor: apt-get install runsc, register it in /etc/docker/daemon.json and restart dockerd "
                "(scripts/docker-engine.sh does this when /usr/bin/runsc exists)."
            )

    def start(
        self,
        options: ContainerOptions,
        *,
        role: str,
        work: Path | None = None,
        storage: SessionStorage | None = None,
        env: Mapping[str, str] | None = None,
    ) -> _Box:
        """Start a container and wait until its agent answers.

        Args:
            options: The container's confinement.
            role: Label value ('pool', 'session', 'browser').
            work: A caller's directory to mount as ``/work`` (never capped, never removed).
            storage: Storage to take over from a container being replaced (its ``/work`` and socket directory).
            env: Adds to or overrides the agent's variables.
        """
        self._check_runtime(options.runtime)
        with self._lock:
            if self._closed:
                raise InvalidRequestError("This runner is closed; create a new one.")
            self._counter += 1
            n = self._counter
        name = f"coderunner-{self.runner_id}-{n}"
        uid, gid = self._uid(options)
        owns_storage = storage is None
        if storage is not None:
            storage.clear_sock_dir()  # the previous container is gone: nothing of it may pass for the new agent
        elif self.transport == "uds":
            storage = SessionStorage(
                self.root / str(n), disk_limit=self.disk_limit(options), uid=uid, gid=gid, work=work
            )
        else:  # remote engine: nothing is mounted from here; /work is a tmpfs in the container
            storage = SessionStorage(self.root / str(n), disk_limit=None, uid=uid, gid=gid, work=work)
        # Over TCP nothing can be handed over beside the socket: the agent proves its answers with the API key
        # it is started with (see _take_agent_key), so that is the key the host checks them with.
        api_key = secrets.token_urlsafe(24) if self.transport == "tcp" else None
        key = api_key.encode() if api_key is not None else new_key()
        try:
            if self.transport == "uds":
                _hand_over_key(storage.sock_dir, key, uid, gid)
            container = self._create(options, name, role, storage, uid, gid, env, api_key)
        except BaseException:
            if owns_storage:
                storage.remove()
            raise
        try:
            with _docker_errors(f"Starting container {name}"):
                container.start()
            wire = self._wait_ready(container, storage.sock_dir, key, api_key)
        except BaseException:
            self._remove_quietly(container.id)
            if owns_storage:
                storage.remove()
            raise
        box = _Box(container.id, name, options, storage, wire)  # a storage taken over is the new box's now
        with self._lock:
            self._boxes[container.id] = box
            if self._closed:
                self._boxes.pop(container.id, None)
                closed = True
            else:
                closed = False
        if closed:
            self._remove_box(box)
            raise InvalidRequestError("This runner is closed; create a new one.")
        return box

    def disk_limit(self, options: ContainerOptions) -> int | None:
        """Bytes a session of ``options`` may write to ``/work`` (None: no cap, because the host cannot cap).

        Raises:
            ConfigurationError: A limit was asked for explicitly and this host cannot enforce it.
        """
        if options.disk_limit is None:
            return None
        if self._disk_unsupported is None:
            return parse_memory(options.disk_limit)
        if self.disk_limit_explicit or options.disk_limit != self.defaults.disk_limit:
            raise ConfigurationError(
                f"disk_limit={options.disk_limit!r} cannot be enforced here: {self._disk_unsupported}. Run the "
                "runner as root, or pass disk_limit=None (CODERUNNER_DOCKER_DISK_LIMIT=none) to accept an uncapped "
                "/work."
            )
        if not self._disk_warned:
            self._disk_warned = True
            log.warning(
                "sessions' /work has no size limit (%s); set CODERUNNER_DOCKER_DISK_LIMIT=none to silence this",
                self._disk_unsupported,
            )
        return None

    def _create(
        self,
        options: ContainerOptions,
        name: str,
        role: str,
        storage: SessionStorage,
        uid: int,
        gid: int,
        env: Mapping[str, str] | None,
        api_key: str | None,
    ) -> Any:
        """Create (not start) a container for ``options``."""
        env = {
            "HOME": "/home/sandbox",
            "CODERUNNER_RUNTIME_DIR": "/tmp/coderunner",
            "CODERUNNER_POOL_SIZE": "1",
            "CODERUNNER_SESSION_IDLE_TIMEOUT": "0",
            "CODERUNNER_MAX_SESSIONS": "8",
            "CODERUNNER_MAX_OUTPUT_CHARS": str(self.settings.max_output_chars),
            "CODERUNNER_INTERRUPT_GRACE": str(self.settings.interrupt_grace),
            "CODERUNNER_TRACK_FILES": "1" if self.settings.track_files else "0",
            "CODERUNNER_TIMEOUT": "none",
            **(env or {}),
        }
        command = ["coderunner", "sandbox-agent", "--workdir", _IN_WORK]
        if self.transport == "uds":
            command += ["--uds", f"{_IN_SOCK_DIR}/{_SOCK_NAME}"]
        else:
            command += ["--host", "127.0.0.1", "--port", "0"]
            env["CODERUNNER_AGENT_KEY"] = api_key or ""
        tmpfs_opts = f"rw,nosuid,nodev,size={parse_memory(options.tmpfs_size)},mode=0700,uid={uid},gid={gid}"
        memory = parse_memory(options.memory)
        kwargs: dict[str, Any] = {
            "name": name,
            "command": command,
            "labels": {**self.labels, LABEL_ROLE: role},
            "user": f"{uid}:{gid}",
            "environment": env,
            "working_dir": _IN_WORK,
            "hostname": "sandbox",
            "read_only": options.read_only,
            "tmpfs": {"/tmp": tmpfs_opts.replace("mode=0700", "mode=1777"), "/home/sandbox": tmpfs_opts},
            "mem_limit": memory,
            "memswap_limit": memory,
            "nano_cpus": int(options.cpus * 1e9),
            "pids_limit": options.pids_limit,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "init": True,
            "detach": True,
        }
        if self.transport == "tcp":
            # The agent listens on the engine host's loopback: that needs the host's network namespace.
            kwargs["network_mode"] = "host"
        elif options.network_mode is not None:
            kwargs["network_mode"] = options.network_mode
        if options.runtime:
            kwargs["runtime"] = options.runtime
        if self.remote:
            size = parse_memory(options.disk_limit) if options.disk_limit is not None else 1024**3
            kwargs["tmpfs"][_IN_WORK] = tmpfs_opts.replace(f"size={parse_memory(options.tmpfs_size)}", f"size={size}")
        else:
            kwargs["volumes"] = {
                str(storage.work): {"bind": _IN_WORK, "mode": "rw"},
                str(storage.sock_dir): {"bind": _IN_SOCK_DIR, "mode": "rw"},
            }
        with _docker_errors(f"Starting a container from {self.image}"):
            return self.client.containers.create(self.image, **kwargs)

    def _wait_ready(self, container: Any, sock_dir: Path, key: bytes, api_key: str | None) -> AgentClient:
        deadline = time.monotonic() + _START_TIMEOUT
        sock = sock_dir / _SOCK_NAME
        checked = time.monotonic()
        cap = self.settings.max_answer_bytes
        while time.monotonic() < deadline:
            if self.transport == "uds" and _is_socket(sock):
                return AgentClient(key=key, uds=sock, max_bytes=cap)
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                with _docker_errors("Watching a starting container"):
                    container.reload()
                    if container.status not in ("created", "running"):
                        logs = container.logs(tail=30).decode("utf-8", "replace").strip()
                        raise BackendError(
                            f"The container {container.name} stopped while starting ({container.status}, exit "
                            f"{container.attrs['State'].get('ExitCode')}): {logs or 'no output'}"
                        )
                    if self.transport == "tcp":
                        match = re.search(rb"listening on tcp://([\d.]+):(\d+)", container.logs())
                        if match:
                            url = f"http://{match[1].decode()}:{match[2].decode()}"
                            return AgentClient(key=key, url=url, api_key=api_key, max_bytes=cap)
            time.sleep(0.005)
        raise BackendError(f"The container {container.name} did not become ready within {_START_TIMEOUT:g} s.")

    def _remove_quietly(self, container_id: str) -> None:
        with contextlib.suppress(Exception):  # gone already, or the engine went away: nothing left to do
            self.client.api.remove_container(container_id, force=True, v=True)

    def _remove_box(self, box: _Box) -> None:
        box.wire.close()
        self._remove_quietly(box.container_id)
        with self._lock:
            self._boxes.pop(box.container_id, None)
        if box.owns_storage:
            box.storage.remove()  # the caller's own working_dir stays

    def remove(self, box: _Box, *, wait: bool = False, keep_storage: bool = False) -> None:
        """Remove a container (in the background unless ``wait``) and, unless ``keep_storage``, its storage."""
        if keep_storage:
            box.owns_storage = False
        if wait:
            self._remove_box(box)
            return
        with self._lock:
            closed = self._closed
        if closed:
            self._remove_box(box)
        else:
            self._threads.submit(self._remove_box, box)

    def answers(self, box: _Box) -> bool:
        """True when the box's container runs and its agent answers with its proof (a hiccup, not a death)."""
        if not self.state(box).get("Running"):
            return False
        try:
            box.wire.request("GET", f"{_AGENT_PREFIX}/ready", params={"timeout": "0"}, timeout=10)
        except (AgentUnreachable, AgentForged, CodeRunnerError):
            return False
        return True

    def state(self, box: _Box) -> dict[str, Any]:
        """The container's State from ``docker inspect`` (empty when it is gone)."""
        docker = _docker_module()
        try:
            attrs = self.client.api.inspect_container(box.container_id)
        except docker.errors.NotFound:
            return {}
        except docker.errors.DockerException as exc:
            raise _translate_docker(exc, "Inspecting a session's container") from None
        state: dict[str, Any] = attrs.get("State", {})
        return state

    # -- the warm pool ----------------------------------------------------------------------------

    def fill_pool(self) -> None:
        """Start containers in the background until the pool holds ``pool_size`` (ready or warming)."""
        with self._lock:
            if self._closed:
                return
            missing = self.pool_size - len(self._pool) - self._warming
            self._warming += max(missing, 0)
        for _ in range(max(missing, 0)):
            self._threads.submit(self._warm_one)

    def _warm_one(self) -> None:
        box = None
        try:
            box = self.start(self.defaults, role="pool")
            if not box.wire.request("GET", f"{_AGENT_PREFIX}/ready", timeout=_START_TIMEOUT).json().get("ready"):
                raise BackendError("its Python kernel did not start")
        except Exception as exc:  # the pool is an optimisation: a failed warm start must not surface here
            if box is not None:
                self.remove(box)
                box = None
            if not self._closed:
                log.warning("could not pre-start a container: %s", getattr(exc, "message", exc))
        with self._ready:
            self._warming -= 1
            if box is not None and not self._closed:
                self._pool.append(box)
            self._ready.notify_all()

    def take(self, options: ContainerOptions) -> _Box:
        """A started container with ``options``: from the pool when they are the defaults, else a new one."""
        if options == self.defaults and self.pool_size > 0:
            with self._ready:
                deadline = time.monotonic() + _START_TIMEOUT
                # A warm start under way is faster to join than a cold start from scratch.
                while not self._pool and self._warming > 0 and time.monotonic() < deadline:
                    self._ready.wait(deadline - time.monotonic())
                box = self._pool.popleft() if self._pool else None
            self.fill_pool()
            if box is not None:
                return box
        return self.start(options, role="session")

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every container of this fleet and its directory. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            boxes = list(self._boxes.values())
            self._pool.clear()
        self._threads.shutdown(wait=True, cancel_futures=True)
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(self._remove_box, boxes))
        except RuntimeError:  # at interpreter exit no new threads start: kill_now() below removes them all
            pass
        self.kill_now()
        with contextlib.suppress(Exception):
            self.client.close()

    def kill_now(self) -> None:
        """Remove every container of this runner without waiting for threads (also used at exit)."""
        with contextlib.suppress(Exception):  # at interpreter exit the engine may be gone: nothing to do then
            for container in self.client.api.containers(
                all=True, filters={"label": f"{LABEL_RUNNER}={self.runner_id}"}
            ):
                self._remove_quietly(container["Id"])
        shutil.rmtree(self.root, ignore_errors=True)
        _LIVE_FLEETS.discard(self)


_LIVE_FLEETS: weakref.WeakSet[_Fleet] = weakref.WeakSet()


@atexit.register
def _remove_all_at_exit() -> None:
    for fleet in list(_LIVE_FLEETS):
        fleet.kill_now()


# -- sessions --------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass
class _Session:
    session_id: str
    language: str
    env: dict[str, str]
    metadata: dict[str, str]
    options: ContainerOptions
    box: _Box
    inner_id: str
    idle_timeout: float | None
    expires_at: datetime | None
    created_at: datetime = dataclasses.field(default_factory=_now)
    last_activity_at: datetime = dataclasses.field(default_factory=_now)
    last_activity: float = dataclasses.field(default_factory=time.monotonic)
    busy: int = 0
    busy_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    lost: str | None = None
    """A loss of state (a replaced container) that no result has reported yet: the next execution says it."""

    def touch(self) -> None:
        self.last_activity = time.monotonic()
        self.last_activity_at = _now()

    def enter(self, delta: int) -> None:
        """Count an execution in (+1) or out (-1): busy sessions never expire."""
        with self.busy_lock:
            self.busy += delta

    def expiry_reason(self, now: float) -> str | None:
        if self.busy:
            return None
        if self.expires_at is not None and _now() >= self.expires_at:
            return "its lifetime ended"
        if self.idle_timeout is not None and now - self.last_activity > self.idle_timeout:
            return f"it was idle for more than {self.idle_timeout:g} s"
        return None


def death_cause(state: Mapping[str, Any], limit: str | int) -> str:
    """What happened to a container, from its ``docker inspect`` State: 'was removed', 'stopped (exit status 1)'."""
    if state.get("OOMKilled"):
        return f"was killed because it reached its memory limit ({limit}; out of memory)"
    if not state:
        return "was removed"
    if state.get("Running"):
        return "stopped answering and was killed"
    return f"stopped (exit status {int(state.get('ExitCode') or 137)})"


_TAMPERED = (
    "answered without its agent's proof (something inside the sandbox took over the agent's socket), so it was removed"
)
_DISK_FULL = 1024**2
"""Free bytes below which a session's disk counts as full."""


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def _death_message(state: Mapping[str, Any], limit: str | int) -> tuple[str, int]:
    """(explanation, exit code) for a container that stopped under a running execution."""
    exit_code = int(state.get("ExitCode") or 137)
    return (
        f"The session's container {death_cause(state, limit)} during this execution. The session continues in a "
        "fresh container: all variables and imports were lost; files in the session directory remain.",
        exit_code if exit_code > 0 else 137,
    )


class DockerBackend(DockerBrowserMixin):
    """Synchronous Docker backend: each session in its own container. See :class:`coderunner.backend.Backend`.

    It has the browser capability (:class:`coderunner.browser.protocol.BrowserBackend`): browser sessions run
    in a browser container of their own, see :mod:`coderunner.backends.docker_browser`.

    Args:
        settings: Runner settings (``pool_size`` is the number of warm containers).
        base_url: Docker engine address (default ``DOCKER_HOST`` or the local socket).
        image: Image to run as is (default ``CODERUNNER_DOCKER_IMAGE``, else built by content hash).
        base: Base image when building (default ``CODERUNNER_DOCKER_BASE``, see :class:`ImageSpec`).
        datascience: Put numpy, pandas, matplotlib and pillow in a built image (default on).
        browser: Put Chromium and Playwright in a built image, for browser sessions (default on).
        browser_settings: Egress rules and limits of the browser (default: ``CODERUNNER_BROWSER_*``).
        browser_options: Container options of the browser container that differ from the sessions', e.g.
            ``{"network": "host"}`` to let the browser, and only it, reach this machine's network.
        transport: 'uds' (unix socket, the default for a local engine) or 'tcp' (remote engines).
        progress: Called with progress lines while an image is built (default: printed to stderr).
        **container_options: Defaults for every session's container: ``network``, ``memory``, ``cpus``,
            ``pids_limit``, ``runtime``, ``read_only``, ``tmpfs_size``, ``user`` (see :class:`ContainerOptions`).
    """

    name = "docker"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        base_url: str | None = None,
        image: str | None = None,
        base: str | None = None,
        datascience: bool | None = None,
        browser: bool | None = None,
        browser_settings: BrowserSettings | None = None,
        browser_options: Mapping[str, Any] | None = None,
        transport: str | None = None,
        progress: Callable[[str], None] | None = None,
        **container_options: Any,
    ) -> None:
        self.settings = settings or Settings.from_env()
        defaults = ContainerOptions.from_env().with_overrides(container_options)
        transport = transport or os.environ.get("CODERUNNER_DOCKER_TRANSPORT", "").strip() or None
        self._fleet = _Fleet(
            self.settings,
            base_url=base_url,
            image=image,
            image_spec=ImageSpec(base=base, datascience=datascience, browser=browser),
            defaults=defaults,
            pool_size=self.settings.pool_size,
            transport=transport,
            progress=progress,
        )
        self._browser = BrowserContainer(self._fleet, browser_settings, browser_options)
        try:
            self._browser.options()  # a bad browser option fails now, not at the first browser session
        except BaseException:
            self._fleet.close()
            raise
        self._sessions: dict[str, _Session] = {}
        self._tombstones: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._expire_loop, name="coderunner-docker-expiry", daemon=True)
        self._reaper.start()
        self._finalizer = weakref.finalize(self, DockerBackend._shutdown, self._fleet, self._stop)

    @property
    def image(self) -> str:
        """The image sessions run in."""
        assert self._fleet.image is not None
        return self._fleet.image

    @property
    def defaults(self) -> ContainerOptions:
        """The container options sessions get unless they override them."""
        return self._fleet.defaults

    def container_id(self, session_id: str) -> str:
        """The id of the container currently running a session (for inspection and tests)."""
        return self._get(session_id).box.container_id

    # -- sessions ---------------------------------------------------------------------------------

    def _get(self, session_id: str) -> _Session:
        with self._lock:
            session = self._sessions.get(session_id)
            reason = self._tombstones.get(session_id)
        if session is not None:
            return session
        if reason:
            raise SessionNotFoundError(f"Session {session_id} is gone: {reason}. Start a new session.")
        raise SessionNotFoundError(f"Session {session_id!r} does not exist. Create one with create_session().")

    def _adopt(self, box: _Box, language: str, env: Mapping[str, str], metadata: Mapping[str, str]) -> str:
        response = box.wire.request(
            "POST",
            f"{_AGENT_PREFIX}/session",
            json_body={"language": language, "env": dict(env) or None, "metadata": dict(metadata) or None},
            timeout=_START_TIMEOUT,
        )
        inner_id: str = response.json()["session_id"]
        return inner_id

    def _open(
        self,
        options: ContainerOptions,
        language: str,
        env: Mapping[str, str],
        metadata: Mapping[str, str],
        *,
        work: Path | None = None,
        storage: SessionStorage | None = None,
    ) -> tuple[_Box, str]:
        """A container with a ready session in it; a pooled container that turns out dead is skipped."""
        for _ in range(3):
            if work is None and storage is None:
                box = self._fleet.take(options)
            else:
                box = self._fleet.start(options, role="session", work=work, storage=storage)
            try:
                return box, self._adopt(box, language, env, metadata)
            except (AgentUnreachable, AgentForged) as exc:
                log.warning("discarding a container that does not answer: %s", exc)
                self._fleet.remove(box, keep_storage=storage is not None)
            except BaseException:
                self._fleet.remove(box, keep_storage=storage is not None)
                raise
        raise BackendError("Three containers in a row did not answer; see the Docker engine's logs.")

    def create_session(
        self,
        language: str = "python",
        *,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        lifetime: float | None = None,
        idle_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **container_options: Any,
    ) -> SessionInfo:
        """Create a session in its own container (from the warm pool when the options are the defaults).

        Args:
            language: The session's default language.
            env: Environment variables for the session's interpreters.
            working_dir: A host directory to mount as the session directory (``/work``) instead of a fresh one;
                it is not removed at close. The container's user must be able to write it.
            lifetime: Hard lifetime in seconds.
            idle_timeout: Seconds of inactivity before it expires (default: the runner's).
            metadata: Labels.
            **container_options: Overrides of the runner's container options for this session
                (``network``, ``memory``, ``cpus``, ``pids_limit``, ``runtime``, ...).
        """
        # Everything is checked before a container is taken: a bad value must not cost (or leak) one.
        language = _core.normalize_language(language)
        env = _core.merge_env({}, env)
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        options = self._fleet.defaults.with_overrides(container_options)
        lifetime = _core.validate_duration(lifetime, "lifetime")
        idle_timeout = _core.validate_duration(idle_timeout, "idle_timeout")
        self._fleet.disk_limit(options)  # a limit this host cannot enforce fails now
        with self._lock:
            if len(self._sessions) >= self.settings.max_sessions:
                raise CapacityError(
                    f"This runner already has {len(self._sessions)} sessions (max_sessions="
                    f"{self.settings.max_sessions}). Close one, or raise CODERUNNER_MAX_SESSIONS."
                )
        work = None
        if working_dir is not None:
            work = Path(working_dir).expanduser().resolve()
            if self._fleet.remote:
                raise ConfigurationError("working_dir cannot be mounted from this machine into a remote Docker engine.")
            work.mkdir(parents=True, exist_ok=True)
        box, inner = self._open(options, language, env, meta, work=work)
        try:
            session_id = str(uuid.uuid4())
            session = _Session(
                session_id=session_id,
                language=language,
                env=env,
                metadata=meta,
                options=options,
                box=box,
                inner_id=inner,
                idle_timeout=idle_timeout if idle_timeout is not None else self.settings.idle_timeout,
                expires_at=datetime.fromtimestamp(time.time() + lifetime, timezone.utc) if lifetime else None,
            )
            with self._lock:
                self._sessions[session_id] = session
            return self._info(session, languages=[language])
        except BaseException:
            self._fleet.remove(box)  # taken, so given back: nothing counts or expires a box without a session
            raise

    def _info(self, session: _Session, languages: list[str] | None = None) -> SessionInfo:
        if languages is None:
            try:
                inner = SessionInfo.model_validate(
                    session.box.wire.request("GET", f"/sessions/{session.inner_id}", timeout=10).json()
                )
                languages = inner.languages
            except (AgentUnreachable, AgentForged, CodeRunnerError):
                languages = []
        return SessionInfo(
            session_id=session.session_id,
            status="active",
            language=session.language,
            languages=languages,
            working_dir=_IN_WORK,
            created_at=session.created_at,
            last_activity_at=session.last_activity_at,
            expires_at=session.expires_at,
            idle_timeout=session.idle_timeout,
            backend=self.name,
            metadata=session.metadata,
        )

    def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return self._info(self._get(session_id))

    def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        with self._lock:
            sessions = list(self._sessions.values())
        return [self._info(s) for s in sessions]

    def close_session(self, session_id: str) -> None:
        """Remove a session's container (and its directory, unless it was yours). Closing twice is a no-op."""
        with self._lock:
            if session_id not in self._sessions and session_id in self._tombstones:
                return
        self._get(session_id)
        self._drop(session_id, "it was closed")

    def _drop(self, session_id: str, reason: str) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
            self._tombstones[session_id] = reason
            while len(self._tombstones) > _TOMBSTONES:
                self._tombstones.popitem(last=False)
        if session is not None:
            self._fleet.remove(session.box)  # its /work too, unless it was the caller's directory

    def _expire_loop(self) -> None:
        while not self._stop.wait(self._expiry_period()):
            now = time.monotonic()
            with self._lock:
                sessions = list(self._sessions.values())
            for session in sessions:
                reason = session.expiry_reason(now)
                if reason:
                    stamp = _now().isoformat(timespec="seconds")
                    log.info("session %s expired: %s", session.session_id, reason)
                    with contextlib.suppress(Exception):  # the loop must survive a failed removal
                        self._drop(session.session_id, f"it expired at {stamp} because {reason}")
            with contextlib.suppress(Exception):
                self._browser.stop_if_idle()

    def _expiry_period(self) -> float:
        limits = [5.0]
        if self._browser.idle_after:
            limits.append(self._browser.idle_after / 4)
        with self._lock:
            for s in self._sessions.values():
                if s.idle_timeout:
                    limits.append(s.idle_timeout / 4)
                if s.expires_at is not None:
                    limits.append(s.expires_at.timestamp() - time.time())
        return max(0.1, min(limits))

    # -- replacing dead containers ----------------------------------------------------------------

    def _replace(self, session: _Session, dead: _Box) -> None:
        """Give the session a fresh container with the same options and storage (once per dead box)."""
        with session.lock:
            if session.box is not dead:
                return  # another thread replaced it already
            # Gone before anything else touches its storage: the socket directory gets the new box's key, and
            # a container that merely stopped answering must not see it.
            self._fleet.remove(dead, wait=True, keep_storage=True)
            box, inner = self._open(
                session.options, session.language, session.env, session.metadata, storage=dead.storage
            )
            session.box, session.inner_id = box, inner

    def _replace_noting(self, session: _Session, dead: _Box, why: str) -> None:
        """Replace a dead box outside an execution, and have the next execution report the loss."""
        self._replace(session, dead)
        session.lost = (
            f"The session's container {why}, so the session continues in a fresh container: all variables and "
            "imports were lost (files in the session directory remain)."
        )

    def _call(self, session: _Session, method: str, path: str, **kwargs: Any) -> Any:
        """A request to the session's agent (file calls, all safe to send twice).

        A connection hiccup is retried on the same container; only a container found dead (or one whose agent
        does not prove itself) is replaced, and the next execution reports the lost state.
        """
        box = session.box
        try:
            return box.wire.request(method, path.format(sid=session.inner_id), **kwargs)
        except AgentUnreachable:
            if self._fleet.answers(box):
                return box.wire.request(method, path.format(sid=session.inner_id), **kwargs)
            self._replace_noting(session, box, death_cause(self._fleet.state(box), session.options.memory))
        except AgentForged:
            self._replace_noting(session, box, _TAMPERED)
        except AnswerTooLarge:
            if self._fleet.answers(box):
                raise  # a real answer, too long to read
            self._replace_noting(session, box, _TAMPERED)
        return session.box.wire.request(method, path.format(sid=session.inner_id), **kwargs)

    # -- execution and files ----------------------------------------------------------------------

    def execute(
        self,
        session_id: str,
        code: str,
        language: str | None = None,
        *,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run code in the session's container; a container that dies gives an ``InterpreterDied`` result."""
        session = self._get(session_id)
        lang = _core.normalize_language(language or session.language)
        code = _core.validate_code(code)
        limit = _core.validate_timeout(timeout, self.settings.timeout)
        session.enter(1)
        session.touch()
        notes: list[str] = []
        if session.lost:
            notes.append(session.lost)
            session.lost = None
        # One id for every send of this execution: the agent runs the code once, however often it is sent.
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            for _ in range(3):
                box = session.box
                try:
                    result = _agent_execute(
                        box.wire,
                        session.inner_id,
                        code,
                        lang,
                        limit,
                        self.settings.interrupt_grace,
                        request_id,
                        on_stdout,
                        on_stderr,
                    )
                    break
                except AgentForged:
                    return self._died(session, box, lang, time.perf_counter() - started, why=_TAMPERED, notes=notes)
                except AnswerTooLarge as exc:
                    if not self._fleet.answers(box):  # no agent would have sent it: something took the socket over
                        return self._died(session, box, lang, time.perf_counter() - started, why=_TAMPERED, notes=notes)
                    raise BackendError(
                        f"{exc.message} The code ran and the session keeps its state; make the result smaller "
                        "(fewer or smaller rich outputs), or raise max_answer_bytes."
                    ) from None
                except AgentUnreachable as exc:
                    if self._fleet.answers(box):
                        continue  # a hiccup of the connection, not a death: send it again (same request id)
                    if exc.sent:
                        return self._died(session, box, lang, time.perf_counter() - started, notes=notes)
                    # The container was gone before the code was sent: run it in a fresh one, and say so.
                    self._replace(session, box)
                    notes.append(
                        "The session's container had stopped before this call, so it ran in a fresh container: "
                        "earlier variables are not defined (files in the session directory remain)."
                    )
            else:
                raise BackendError("The session's container is running but its agent does not answer; try again.")
        finally:
            session.enter(-1)
            session.touch()
        update: dict[str, Any] = {"session_id": session_id}
        disk = self._disk_note(session.box, result)
        if notes or disk:
            update["warnings"] = [*result.warnings, *notes, *([disk] if disk else [])]
        if notes:
            update["state_lost"] = True
        if disk and result.error is not None:
            update["error"] = result.error.model_copy(update={"value": f"{result.error.value} ({disk})"})
        return result.model_copy(update=update)

    def _disk_note(self, box: _Box, result: ExecutionResult) -> str | None:
        """Say so when an execution filled the session's disk (or another of its filesystems)."""
        texts = [result.stdout, result.stderr, *((result.error.value, result.error.traceback) if result.error else ())]
        full_text = any("No space left on device" in t or "ENOSPC" in t for t in texts)
        free, limit = box.storage.free(), box.storage.disk_limit
        if limit is not None and free is not None and (free < _DISK_FULL or (full_text and free < 64 * 1024**2)):
            return (
                f"disk limit reached: the session's /work is full ({_size(free)} free of its {_size(limit)} "
                "disk_limit). Delete files, or start the session with a larger disk_limit (e.g. "
                "disk_limit='4g', CODERUNNER_DOCKER_DISK_LIMIT)."
            )
        if full_text:
            return (
                f"a filesystem of the session is full (No space left on device): /tmp and $HOME are memory-backed, "
                f"{box.options.tmpfs_size} each (tmpfs_size)"
                + (f"; /work has {_size(free)} free" if free is not None else "")
                + "."
            )
        return None

    def _died(
        self,
        session: _Session,
        box: _Box,
        language: str,
        elapsed: float,
        *,
        why: str | None = None,
        notes: list[str] | None = None,
    ) -> ExecutionResult:
        if why is None:
            message, exit_code = _death_message(self._fleet.state(box), session.options.memory)
        else:
            message, exit_code = (
                f"The session's container {why} during this execution. The session continues in a fresh "
                "container: all variables and imports were lost; files in the session directory remain.",
                137,
            )
        self._replace_in_background(session, box)
        return _core.build_result(
            language=language,
            session_id=session.session_id,
            stdout="",
            stderr="",
            exit_code=exit_code,
            error=ErrorInfo(name="InterpreterDied", value=message),
            outputs=[],
            execution_time=round(elapsed, 6),
            state_lost=True,
            warnings=[*(notes or []), message],
        )

    def _replace_in_background(self, session: _Session, box: _Box) -> None:
        def replace() -> None:
            try:
                self._replace(session, box)
            except Exception as exc:  # the next call retries the replacement and reports its error
                log.warning("could not replace the container of session %s: %s", session.session_id, exc)

        self._fleet._threads.submit(replace)

    def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution (state kept, as with InProcess)."""
        session = self._get(session_id)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                response = session.box.wire.request("POST", f"/sessions/{session.inner_id}/interrupt", timeout=30)
            except (AgentUnreachable, AgentForged):
                return False
            if response.json().get("interrupted"):
                return True
            # An execute may be on its way to the container (sent, not started yet, e.g. a kernel still
            # starting): an interrupt that arrives first would be lost, so keep asking while one is in flight.
            if session.busy <= 0 or time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes into the session directory (same path rules as InProcess)."""
        _core.check_path_text(path)
        session = self._get(session_id)
        session.touch()
        response = self._call(
            session, "PUT", "/sessions/{sid}/files/content", params={"path": path}, body=data, timeout=300
        )
        return FileInfo.model_validate(response.json())

    def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory."""
        _core.check_path_text(path)
        session = self._get(session_id)
        session.touch()
        limit = self.settings.max_download_bytes
        try:
            answer = self._call(
                session,
                "GET",
                "/sessions/{sid}/files/content",
                params={"path": path},
                timeout=300,
                max_bytes=limit,
                too_large=f"The file {path!r} is {{size}} bytes, more than max_download_bytes ({{limit}}): raise "
                "CODERUNNER_MAX_DOWNLOAD_BYTES, or split the file in the session (split -b 100M) and download "
                "the parts.",
            )
        except AnswerTooLarge as exc:
            raise InvalidRequestError(exc.message) from None
        content: bytes = answer.content
        return content

    def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session."""
        _core.check_path_text(path)
        session = self._get(session_id)
        session.touch()
        response = self._call(session, "GET", "/sessions/{sid}/files", params={"path": path}, timeout=60)
        return [FileInfo.model_validate(f) for f in response.json()["files"]]

    # -- closing ----------------------------------------------------------------------------------

    @staticmethod
    def _shutdown(fleet: _Fleet, stop: threading.Event) -> None:
        stop.set()
        fleet.close()

    def close(self) -> None:
        """Remove every container and directory this backend made. Idempotent."""
        with self._lock:
            for sid in list(self._sessions):
                self._tombstones[sid] = "the runner was closed"
            self._sessions.clear()
        self._browser.close()
        self._finalizer()


class AsyncDockerBackend(AsyncDockerBrowserMixin):
    """Asynchronous Docker backend: the synchronous one's calls, run in worker threads.

    The Docker SDK is synchronous, and the HTTP calls to a container are a few milliseconds; running both
    in threads keeps one implementation of the lifecycle and leaves the caller's loop free.
    """

    name = "docker"
    sync: DockerBackend

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        self.sync = DockerBackend(settings, **options)
        self.settings = self.sync.settings

    async def create_session(
        self,
        language: str = "python",
        *,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        lifetime: float | None = None,
        idle_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **container_options: Any,
    ) -> SessionInfo:
        """Create a session in its own container. See :meth:`DockerBackend.create_session`."""
        return await self._run(
            self.sync.create_session,
            language,
            env=env,
            working_dir=working_dir,
            lifetime=lifetime,
            idle_timeout=idle_timeout,
            metadata=metadata,
            **container_options,
        )

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return await self._run(self.sync.get_session, session_id)

    async def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        return await self._run(self.sync.list_sessions)

    async def close_session(self, session_id: str) -> None:
        """Remove a session's container."""
        await self._run(self.sync.close_session, session_id)

    async def execute(
        self,
        session_id: str,
        code: str,
        language: str | None = None,
        *,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run code in the session's container (callbacks are called from a worker thread)."""
        import asyncio

        try:
            return await self._run(
                self.sync.execute, session_id, code, language, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr
            )
        except asyncio.CancelledError:
            # Our caller went away: the worker thread keeps waiting, so stop the code it waits for.
            with contextlib.suppress(CodeRunnerError):
                await asyncio.shield(self._run(self.sync.interrupt, session_id))
            raise

    async def interrupt(self, session_id: str) -> bool:
        """Interrupt the session's running execution."""
        return await self._run(self.sync.interrupt, session_id)

    async def upload_file(self, session_id: str, path: str, data: bytes) -> FileInfo:
        """Write bytes into the session directory."""
        return await self._run(self.sync.upload_file, session_id, path, data)

    async def download_file(self, session_id: str, path: str) -> bytes:
        """Read a file from the session directory."""
        return await self._run(self.sync.download_file, session_id, path)

    async def list_files(self, session_id: str, path: str = ".") -> list[FileInfo]:
        """List a directory of the session."""
        return await self._run(self.sync.list_files, session_id, path)

    async def aclose(self) -> None:
        """Remove every container and directory this backend made."""
        await self._run(self.sync.close)


def factory(settings: Settings, *, asynchronous: bool, **options: Any) -> DockerBackend | AsyncDockerBackend:
    """Registry entry: build the Docker backend (options: see :class:`DockerBackend`)."""
    return AsyncDockerBackend(settings, **options) if asynchronous else DockerBackend(settings, **options)
