"""The Docker backend: every session in its own locked-down container, running coderunner's own engine.

One engine, one protocol: each container runs the InProcess engine behind the coderunner REST server (the
agent, :mod:`coderunner.server.agent`), and the host drives it over HTTP, through a unix socket in a
directory shared with the container (the default: the container needs no network) or over TCP (remote
engines, ``transport="tcp"``). Every language, file rule, output cap, resource figure and timeout policy is
therefore the same code as InProcess; this package only adds the container lifecycle:

* **Isolation defaults** (:class:`ContainerOptions`): no network, a non-root user, all capabilities dropped,
  no-new-privileges, memory / CPU / pids limits, a read-only root filesystem with a writable ``/work``
  (the session directory, on a size-capped filesystem of its own) and small tmpfs ``/tmp`` and ``$HOME``.
  Each is configurable per runner (``CodeRunner(backend="docker", memory="2g", network=True)``) and per
  session (``runner.start_session(cpus=2)``). ``runtime="runsc"`` runs the container under gVisor.
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
  namespace, i.e. it is NOT network-isolated. Use remote engines for capacity, not for hostile code.

Where things are::

    options.py      ContainerOptions and their parsing (memory, CPUs, network, disk, runtime)
    connection.py   connecting to the engine; the SDK's errors turned into coderunner's
    image.py        the sandbox image: ImageSpec, content hash, offline build   (wheel.py: the wheel it installs)
    disk.py         the per-session size-capped /work (a loop-mounted filesystem)
    fleet.py        the box provider: containers started, labelled, inspected (death causes) and removed,
                    the agent key hand-over, the orphan sweep, the disk-full note
    backend.py      DockerBackend / AsyncDockerBackend: the sandbox host on the fleet, plus the browser
    browser.py      the browser container (Chromium beside the session containers)
    commands.py     ``coderunner image build|status|prune``

What is not Docker's own is one floor down, in :mod:`coderunner.backends.sandbox`: the host<->agent contract
(``contract.py``), the agent client that checks every answer's proof (``agent_client.py``), the sandbox host
(``host.py``: sessions on boxes, executions sent once, dead boxes replaced and the loss reported; the
``BoxProvider`` protocol the fleet implements), the warm pool (``pool.py``) and owner labels (``owners.py``).
A second provider (Kubernetes pods) implements ``BoxProvider`` and reuses the rest. What runs inside a
container is :mod:`coderunner.server.agent`.

Errors (all from :mod:`coderunner.errors`; no ``docker.errors.*`` exception escapes)::

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

from coderunner.backends.docker.backend import AsyncDockerBackend, DockerBackend, factory
from coderunner.backends.docker.connection import DockerClient, connect
from coderunner.backends.docker.fleet import death_cause, death_message, sweep_orphans
from coderunner.backends.docker.image import (
    DEFAULT_BASE,
    IMAGE_REPO,
    OFFLINE_BASE,
    ImageSpec,
    build_image,
    content_hash,
    ensure_image,
    expected_tag,
    find_dockerfile,
)
from coderunner.backends.docker.options import ContainerOptions, network_from_text, parse_memory
from coderunner.backends.sandbox.contract import (
    LABEL_BROWSER,
    LABEL_IMAGE,
    LABEL_MANAGED,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_ROLE,
    LABEL_RUNNER,
    SANDBOX_UID,
)

__all__ = [
    "DEFAULT_BASE",
    "IMAGE_REPO",
    "LABEL_BROWSER",
    "LABEL_IMAGE",
    "LABEL_MANAGED",
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_OWNER_START",
    "LABEL_ROLE",
    "LABEL_RUNNER",
    "OFFLINE_BASE",
    "SANDBOX_UID",
    "AsyncDockerBackend",
    "ContainerOptions",
    "DockerBackend",
    "DockerClient",
    "ImageSpec",
    "build_image",
    "connect",
    "content_hash",
    "death_cause",
    "death_message",
    "ensure_image",
    "expected_tag",
    "factory",
    "find_dockerfile",
    "network_from_text",
    "parse_memory",
    "sweep_orphans",
]
