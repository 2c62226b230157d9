"""The sandbox image: what goes in it (:class:`ImageSpec`), its content hash, and building it offline from wheels."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coderunner._env import env_text, parse_flag
from coderunner._version import __version__
from coderunner.backends.docker.connection import DockerClient, docker_errors, docker_module, translate_docker
from coderunner.backends.sandbox.contract import LABEL_BROWSER, LABEL_HASH, LABEL_IMAGE, SANDBOX_UID
from coderunner.errors import (
    BackendError,
    ConfigurationError,
)

if TYPE_CHECKING:
    pass


IMAGE_REPO = "coderunner-sandbox"
"""Repository name of the images this module builds; the tag is a content hash."""
DEFAULT_BASE = "python:3.12-slim"
"""Base image for machines that reach a registry."""
OFFLINE_BASE = "coderunner-base:bookworm"
"""Base image made by ``docker/build-base.sh`` (debootstrap + docker import); preferred when present."""


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
        base = self.base or env_text("CODERUNNER_DOCKER_BASE")
        if base is None:
            base = OFFLINE_BASE if image_exists(client, OFFLINE_BASE) else DEFAULT_BASE
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
    raw = env_text(name)
    if raw is None:
        return default
    try:
        return parse_flag(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a valid value: use 1 or 0.") from None


def image_exists(client: DockerClient, name: str) -> bool:
    """Whether the engine has the image ``name`` (any other engine error is raised as coderunner's)."""
    docker = docker_module()
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as exc:
        raise translate_docker(exc, f"Looking up image {name}") from None
    return True


def _package_root() -> Path:
    return Path(__file__).resolve().parents[2]


def find_dockerfile() -> Path:
    """The sandbox Dockerfile: ``CODERUNNER_DOCKERFILE`` when set, else the one shipped in the package.

    ``coderunner/backends/sandbox.Dockerfile`` is package data, so an installed wheel builds the image as a
    source checkout does (the repository's ``docker/Dockerfile`` is a link to it).

    Raises:
        ConfigurationError: ``CODERUNNER_DOCKERFILE`` names no file, or the package lost its copy.
    """
    explicit = os.environ.get("CODERUNNER_DOCKERFILE", "").strip()
    path = Path(explicit) if explicit else Path(__file__).parent.parent / "sandbox.Dockerfile"
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
    docker = docker_module()
    try:
        return str(client.images.get(base).id)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as exc:
        raise translate_docker(exc, f"Looking up base image {base}") from None
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
    if image_exists(client, tag):
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
    with docker_errors(f"Inspecting base image {base}"):
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
    from coderunner.backends.docker.wheel import source_tree

    return source_tree()


_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "node_modules"
)
"""What a wheel build of the checkout never needs (and what would make copying it slow)."""


def _run_pip(args: list[str], doing: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackendError(f"{doing} failed (pip exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _fetch_wheels(ctx: Path, spec: ImageSpec, probe: dict[str, Any], progress: Callable[[str], None]) -> None:
    """Fill ``ctx/own`` with a coderunner wheel and ``ctx/deps`` with its dependencies' wheels for the base.

    Two folders, two image layers: a change to coderunner's code rebuilds only the small last one. The
    coderunner wheel is built from the source tree when coderunner runs from one, else made from the
    installed package (:mod:`coderunner.backends.docker.wheel`); it never comes from an index.
    """
    from coderunner.backends.docker.wheel import WHEEL_NAME, build_installed_wheel

    own_dir, deps = ctx / "own", ctx / "deps"
    own_dir.mkdir()
    deps.mkdir()
    source = _source_tree()
    if source is not None:
        progress("building the coderunner wheel from the source tree")
        # From a copy: setuptools writes an .egg-info into the tree it builds, which would then shadow the
        # installed distribution's metadata for any Python started in the checkout. Not in ctx: that is the
        # build context sent to the engine.
        with tempfile.TemporaryDirectory(prefix="coderunner-src-") as tmp:
            copy = Path(tmp) / "src"
            shutil.copytree(source, copy, ignore=_NOT_SOURCE, symlinks=True)
            build = ["wheel", "-q", "--no-deps", "-w", str(own_dir), str(copy)]
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
        with docker_errors(f"Building image {tag}"):
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
