"""The containers of one backend: starting them, the warm pool, the agent key hand-over, the orphan sweep."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from coderunner.backends.docker.connection import DockerClient, connect, docker_errors, docker_module, translate_docker
from coderunner.backends.docker.disk import SessionStorage, disk_limit_support, size_text, unmount_below
from coderunner.backends.docker.image import ImageSpec, ensure_image, image_exists
from coderunner.backends.docker.options import ContainerOptions, parse_memory
from coderunner.backends.sandbox.agent_client import (
    KEY_FILE,
    AgentClient,
    AgentUnreachable,
    connect_unix,
    new_key,
)
from coderunner.backends.sandbox.contract import (
    AGENT_PREFIX,
    IN_SOCK_DIR,
    IN_WORK,
    LABEL_MANAGED,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_ROLE,
    LABEL_RUNNER,
    SANDBOX_UID,
    SOCK_NAME,
)
from coderunner.backends.sandbox.owners import host_id, owner_alive, owner_labels
from coderunner.backends.sandbox.pool import WarmPool
from coderunner.config import Settings
from coderunner.engine.demand import parallel_starts
from coderunner.engine.processes import (
    OWNER_FILE,
    forget_at_exit,
    kill_at_exit,
    pid_signature,
    publish_owned_dir,
    remove_stale_staging,
)
from coderunner.errors import (
    BackendError,
    CodeRunnerError,
    ConfigurationError,
    InvalidRequestError,
)
from coderunner.models import ExecutionResult
from coderunner.specs import SessionSpec

log = logging.getLogger(__name__)

START_TIMEOUT = 90.0
"""Seconds a container has to start and answer."""
_DISK_FULL = 1024**2
"""Free bytes below which a session's disk counts as full."""


# -- containers ----------------------------------------------------------------------------------------


def _is_socket(path: Path) -> bool:
    """True when ``path`` itself (not what a link there points to) is a socket."""
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def _accepts(path: Path) -> bool:
    """True when the unix socket at ``path`` takes connections.

    The agent's socket file exists from its bind(); until its listen() a connection is refused, and on a
    loaded machine the first request can fall in between (seen as 'could not pre-start a container:
    ConnectionRefusedError').
    """
    try:
        connect_unix(path, timeout=1.0).close()  # pinned to the socket inode: never a link planted there
    except OSError:
        return False
    return True


def hand_over_key(sock_dir: Path, key: bytes, uid: int, gid: int) -> None:
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


def sweep_orphans(client: DockerClient, runtime_dir: str | Path | None = None) -> int:
    """Remove the containers (and host directories) of runners of this host whose process is gone.

    Containers of other hosts sharing a remote engine are left alone. Returns how many containers went.
    """
    host = host_id()
    removed = 0
    with docker_errors("Listing leftover containers"):
        # The raw list: the SDK's containers.list() inspects each one and fails on any removed meanwhile.
        containers = client.api.containers(all=True, filters={"label": [LABEL_MANAGED, f"{LABEL_OWNER_HOST}={host}"]})
    for container in containers:
        if owner_alive(container.get("Labels") or {}):
            continue
        with contextlib.suppress(Exception):  # already gone, or being removed by someone else: fine either way
            client.api.remove_container(container["Id"], force=True, v=True)
            removed += 1
    if runtime_dir is not None:
        root = Path(runtime_dir) / "docker"
        remove_stale_staging(root, "r-*")
        for runner_dir in root.glob("r-*") if root.is_dir() else []:
            try:
                owner = json.loads((runner_dir / OWNER_FILE).read_text())
            except (OSError, ValueError):
                owner = {}
            alive = owner_alive({LABEL_OWNER_PID: str(owner.get("pid")), LABEL_OWNER_START: str(owner.get("start"))})
            # Session disks first: deleting through a mount would only empty it, and leave it mounted.
            if not alive and unmount_below(runner_dir):
                shutil.rmtree(runner_dir, ignore_errors=True)
    if removed:
        log.info("removed %d containers left by runners that are gone", removed)
    return removed


@dataclasses.dataclass
class Box:
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


class Fleet:
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
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="coderunner-docker")
        self._pool: WarmPool[Box] = WarmPool(
            pool_size,
            start=self._warm_one,
            discard=self.remove,
            submit=self._threads.submit,
            noun="container",
            max_size=settings.pool_max,
            # A container start is CPU-bound on this side too (the engine, runc, the agent's imports).
            max_starts=parallel_starts(),
        )
        self._boxes: dict[str, Box] = {}
        self._counter = 0
        self._closed = False
        self._runtimes: set[str] | None = None
        me = os.getpid()
        self.labels = owner_labels(self.runner_id)
        Path(settings.runtime_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        sweep_orphans(self.client, settings.runtime_dir)
        publish_owned_dir(self.root, {"pid": me, "start": pid_signature(me)})
        self.image = image or os.environ.get("CODERUNNER_DOCKER_IMAGE", "").strip() or None
        try:
            if self.image is None:
                self.image = ensure_image(self.client, image_spec, progress=progress)
            elif not image_exists(self.client, self.image):
                raise ConfigurationError(
                    f"The image {self.image} (CODERUNNER_DOCKER_IMAGE) is not on this Docker engine; the backend "
                    "never pulls it. Build one with 'coderunner image build --tag NAME', or unset "
                    "CODERUNNER_DOCKER_IMAGE."
                )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            self.client.close()
            raise
        kill_at_exit(self)
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
            with docker_errors("Reading the engine's runtimes"):
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
    ) -> Box:
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
                hand_over_key(storage.sock_dir, key, uid, gid)
            container = self._create(options, name, role, storage, uid, gid, env, api_key)
        except BaseException:
            if owns_storage:
                storage.remove()
            raise
        try:
            with docker_errors(f"Starting container {name}"):
                container.start()
            wire = self._wait_ready(container, storage.sock_dir, key, api_key)
        except BaseException:
            self._remove_quietly(container.id)
            if owns_storage:
                storage.remove()
            raise
        box = Box(container.id, name, options, storage, wire)  # a storage taken over is the new box's now
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
            # The container's filesystem is the sandbox's own: absolute paths there are safe (its user's rights).
            "CODERUNNER_ABSOLUTE_PATHS": "1",
            **(env or {}),
        }
        command = ["coderunner", "sandbox-agent", "--workdir", IN_WORK]
        if self.transport == "uds":
            command += ["--uds", f"{IN_SOCK_DIR}/{SOCK_NAME}"]
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
            "working_dir": IN_WORK,
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
            kwargs["tmpfs"][IN_WORK] = tmpfs_opts.replace(f"size={parse_memory(options.tmpfs_size)}", f"size={size}")
        else:
            kwargs["volumes"] = {
                str(storage.work): {"bind": IN_WORK, "mode": "rw"},
                str(storage.sock_dir): {"bind": IN_SOCK_DIR, "mode": "rw"},
            }
        with docker_errors(f"Starting a container from {self.image}"):
            return self.client.containers.create(self.image, **kwargs)

    def _wait_ready(self, container: Any, sock_dir: Path, key: bytes, api_key: str | None) -> AgentClient:
        deadline = time.monotonic() + START_TIMEOUT
        sock = sock_dir / SOCK_NAME
        checked = time.monotonic()
        cap = self.settings.max_answer_bytes
        while time.monotonic() < deadline:
            if self.transport == "uds" and _is_socket(sock) and _accepts(sock):
                return AgentClient(key=key, uds=sock, max_bytes=cap)
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                with docker_errors("Watching a starting container"):
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
        raise BackendError(f"The container {container.name} did not become ready within {START_TIMEOUT:g} s.")

    def _remove_quietly(self, container_id: str) -> None:
        with contextlib.suppress(Exception):  # gone already, or the engine went away: nothing left to do
            self.client.api.remove_container(container_id, force=True, v=True)

    def _remove_box(self, box: Box) -> None:
        box.wire.close()
        self._remove_quietly(box.container_id)
        with self._lock:
            self._boxes.pop(box.container_id, None)
        if box.owns_storage:
            box.storage.remove()  # the caller's own working_dir stays

    def remove(self, box: Box, *, wait: bool = False, keep_storage: bool = False) -> None:
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

    def answers(self, box: Box) -> bool:
        """True when the box's container runs and its agent answers with its proof (a hiccup, not a death).

        Raises:
            AgentForged: Something answers on the agent's socket without the proof: the box was tampered with
                (an impostor that was not listening yet when the call failed, say), not merely dead.
        """
        if not self.state(box).get("Running"):
            return False
        try:
            box.wire.request("GET", f"{AGENT_PREFIX}/ready", params={"timeout": "0"}, timeout=10)
        except (AgentUnreachable, CodeRunnerError):
            return False
        return True

    def state(self, box: Box) -> dict[str, Any]:
        """The container's State from ``docker inspect`` (empty when it is gone)."""
        docker = docker_module()
        try:
            attrs = self.client.api.inspect_container(box.container_id)
        except docker.errors.NotFound:
            return {}
        except docker.errors.DockerException as exc:
            raise translate_docker(exc, "Inspecting a session's container") from None
        state: dict[str, Any] = attrs.get("State", {})
        return state

    # -- the warm pool ----------------------------------------------------------------------------

    def fill_pool(self) -> None:
        """Start containers in the background until the pool holds ``pool_size`` (ready or warming)."""
        if not self._closed:
            self._pool.fill()

    def _warm_one(self) -> Box:
        box = self.start(self.defaults, role="pool")
        try:
            if not box.wire.request("GET", f"{AGENT_PREFIX}/ready", timeout=START_TIMEOUT).json().get("ready"):
                raise BackendError("its Python kernel did not start")
        except BaseException:
            self.remove(box)
            raise
        return box

    def take(self, options: ContainerOptions) -> Box:
        """A started container with ``options``: from the pool when they are the defaults, else a new one."""
        if options == self.defaults:
            box = self._pool.take(START_TIMEOUT)
            if box is not None:
                return box
        return self.start(options, role="session")

    # -- what the sandbox host asks of its provider (coderunner.backends.sandbox.host.BoxProvider) --------

    noun = "container"
    start_timeout = START_TIMEOUT

    def session_options(self, spec: SessionSpec) -> tuple[ContainerOptions, Path | None]:
        """The container options of a session (the defaults with ``spec.options``) and its host ``/work``.

        Raises:
            ConfigurationError: An unknown or invalid option, a disk limit this host cannot enforce, or a
                ``working_dir`` for a remote engine.
        """
        options = self.defaults.with_overrides(spec.options)
        self.disk_limit(options)  # a limit this host cannot enforce fails now
        if spec.working_dir is None:
            return options, None
        if self.remote:
            raise ConfigurationError("working_dir cannot be mounted from this machine into a remote Docker engine.")
        return options, Path(spec.working_dir).expanduser().resolve()

    def start_session_box(self, options: ContainerOptions, *, work: Path | None, replacing: Box | None) -> Box:
        """A fresh session container on ``work``, or on the storage of the container it replaces."""
        if work is not None:
            work.mkdir(parents=True, exist_ok=True)
        return self.start(options, role="session", work=work, storage=None if replacing is None else replacing.storage)

    def death_cause(self, box: Box, options: ContainerOptions) -> str:
        """What happened to a container (from ``docker inspect``), as a clause."""
        return death_cause(self.state(box), options.memory)

    def death(self, box: Box, options: ContainerOptions) -> tuple[str, int]:
        """(explanation, exit code) for a container that stopped under a running execution."""
        return death_message(self.state(box), options.memory)

    def disk_note(self, box: Box, result: ExecutionResult) -> str | None:
        """Say so when an execution filled the session's disk (or another of its filesystems)."""
        texts = [result.stdout, result.stderr, *((result.error.value, result.error.traceback) if result.error else ())]
        full_text = any("No space left on device" in t or "ENOSPC" in t for t in texts)
        free, limit = box.storage.free(), box.storage.disk_limit
        if limit is not None and free is not None and (free < _DISK_FULL or (full_text and free < 64 * 1024**2)):
            return (
                f"disk limit reached: the session's /work is full ({size_text(free)} free of its {size_text(limit)} "
                "disk_limit). Delete files, or start the session with a larger disk_limit (e.g. "
                "disk_limit='4g', CODERUNNER_DOCKER_DISK_LIMIT)."
            )
        if full_text:
            return (
                f"a filesystem of the session is full (No space left on device): /tmp and $HOME are memory-backed, "
                f"{box.options.tmpfs_size} each (tmpfs_size)"
                + (f"; /work has {size_text(free)} free" if free is not None else "")
                + "."
            )
        return None

    def submit(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the fleet's threads."""
        self._threads.submit(work)

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every container of this fleet and its directory. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            boxes = list(self._boxes.values())
        self._pool.close()  # every pooled box is among self._boxes
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
        forget_at_exit(self)


def death_cause(state: Mapping[str, Any], limit: str | int) -> str:
    """What happened to a container, from its ``docker inspect`` State: 'was removed', 'stopped (exit status 1)'."""
    if state.get("OOMKilled"):
        return f"was killed because it reached its memory limit ({limit}; out of memory)"
    if not state:
        return "was removed"
    if state.get("Running"):
        return "stopped answering and was killed"
    return f"stopped (exit status {int(state.get('ExitCode') or 137)})"


def death_message(state: Mapping[str, Any], limit: str | int) -> tuple[str, int]:
    """(explanation, exit code) for a container that stopped under a running execution."""
    exit_code = int(state.get("ExitCode") or 137)
    return (
        f"The session's container {death_cause(state, limit)} during this execution. The session continues in a "
        "fresh container: all variables and imports were lost; files in the session directory remain.",
        exit_code if exit_code > 0 else 137,
    )
