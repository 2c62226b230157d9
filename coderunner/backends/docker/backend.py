"""The Docker backend: a sandbox host (:mod:`coderunner.backends.sandbox.host`) whose boxes are containers.

What is Docker's own lives beside it: the containers and their pool (``fleet.py``), the image (``image.py``,
``wheel.py``), the session disks (``disk.py``), the browser container (``browser.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from coderunner.backends.bridge import AsyncBrowserBridge
from coderunner.backends.docker.browser import BrowserContainer, DockerBrowserMixin
from coderunner.backends.docker.fleet import Fleet
from coderunner.backends.docker.image import ImageSpec
from coderunner.backends.docker.options import ContainerOptions
from coderunner.backends.sandbox.host import SandboxHost
from coderunner.browser.config import BrowserSettings
from coderunner.config import Settings

__all__ = ["AsyncDockerBackend", "DockerBackend", "factory"]


class DockerBackend(DockerBrowserMixin, SandboxHost):
    """Synchronous Docker backend: each session in its own container. See :class:`coderunner.backend.Backend`.

    It has the browser capability (:class:`coderunner.browser.protocol.BrowserBackend`): browser sessions run
    in a browser container of their own, see :mod:`coderunner.backends.docker.browser`.

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
        self._fleet = Fleet(
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
        SandboxHost.__init__(self, self.settings, self._fleet)

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
        container_id: str = self._get(session_id).box.container_id
        return container_id

    # -- sessions ---------------------------------------------------------------------------------

    def _on_expiry_tick(self) -> None:
        self._browser.stop_if_idle()

    def _expiry_period(self) -> float:
        period = super()._expiry_period()
        if self._browser.idle_after:
            period = max(0.1, min(period, self._browser.idle_after / 4))
        return period

    def close(self) -> None:
        """Remove every container and directory this backend made (the browser's too). Idempotent."""
        self._sessions.forget_all("the runner was closed")
        self._browser.close()
        self._finalizer()


class AsyncDockerBackend(AsyncBrowserBridge[DockerBackend]):
    """Asynchronous Docker backend: the synchronous one's calls, run in worker threads.

    The Docker SDK is synchronous, and the HTTP calls to a container are a few milliseconds; running both
    in threads keeps one implementation of the lifecycle and leaves the caller's loop free. Takes the
    arguments of :class:`DockerBackend`; the bridge (:mod:`coderunner.backends.bridge`) makes a cancelled
    ``execute`` interrupt its session.
    """

    name = "docker"

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        super().__init__(DockerBackend(settings, **options))
        self.settings = self.wrapped.settings

    @property
    def sync(self) -> DockerBackend:
        """The synchronous backend these calls run on (container ids, image, options)."""
        return self.wrapped


def factory(settings: Settings, *, asynchronous: bool, **options: Any) -> DockerBackend | AsyncDockerBackend:
    """Registry entry: build the Docker backend (options: see :class:`DockerBackend`)."""
    return AsyncDockerBackend(settings, **options) if asynchronous else DockerBackend(settings, **options)
