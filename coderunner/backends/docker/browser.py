"""The Docker backend's browser capability: Chromium in a container of its own, beside the session containers.

Where the browser runs, and why:

* **One browser container per runner**, started from the same sandbox image on the first browser session
  and removed with the runner (close, exit, or the next runner's orphan sweep: it carries the same owner
  labels, with role ``browser``), or after the browser idle timeout without a browser call (its sessions
  have expired by then; the next session starts a new container). Inside, the same agent as a session
  container serves the same engine's InstaVM browser routes on a unix socket; the host drives them with
  the InstaVM client code. One engine, one protocol: every action, error and egress rule is the InProcess
  browser's.
* **As isolated as the code**: the container gets the runner's container options (no network by default,
  non-root, all capabilities dropped, no-new-privileges, read-only root, memory/CPU limits, the same
  runtime, so gVisor too), with a higher pids limit because Chromium runs a few dozen threads per page.
  Chromium's own sandbox cannot start without user namespaces, so the container is the sandbox, as it is
  for the code.
* **Not inside a session's container**: browser sessions are not tied to code sessions (InstaVM's
  contract), Chromium's memory must not count against the code's limit, and a crash of either must not
  take the other down.

With the default ``network=False`` the browser reaches only its own loopback: nothing, until you give it a
network (``browser_options={"network": "host"}`` or a network name), exactly as for code. The
``CODERUNNER_BROWSER_*`` egress rules apply inside on top of that.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from coderunner.backends.docker.fleet import Box, Fleet, death_cause
from coderunner.backends.docker.options import ContainerOptions, network_from_text
from coderunner.backends.sandbox.contract import LABEL_BROWSER
from coderunner.browser.actions import BrowserAction
from coderunner.browser.config import BrowserSettings
from coderunner.browser.errors import BrowserSessionLostError
from coderunner.browser.models import BrowserSessionInfo
from coderunner.browser.sugar import BrowserActionMethods
from coderunner.errors import BackendError, BackendUnavailableError, UnsupportedOperationError

if TYPE_CHECKING:
    from coderunner.backends.instavm import InstaVMBackend

__all__ = ["BrowserContainer", "DockerBrowserMixin"]

T = TypeVar("T")
R = TypeVar("R")

BROWSER_PIDS_LIMIT = 1024
"""Least pids limit of the browser container: Chromium runs a process per page, each with ~20 threads."""
_LOST_MEMORY = 1000  # ids of browser sessions lost with a container, remembered for a clear error


class BrowserContainer:
    """The browser container of one Docker backend and the client that drives it. Thread-safe.

    Args:
        fleet: The backend's container fleet (starts, labels and removes the container).
        browser_settings: Egress rules and limits for the engine inside (default: ``CODERUNNER_BROWSER_*``).
        options: Overrides of the runner's container options for the browser container only (``network``
            defaults to ``CODERUNNER_DOCKER_BROWSER_NETWORK`` when that is set).
    """

    def __init__(
        self, fleet: Fleet, browser_settings: BrowserSettings | None, options: Mapping[str, Any] | None
    ) -> None:
        self._fleet = fleet
        self._settings = browser_settings or BrowserSettings.from_env()
        self._overrides = dict(options or {})
        raw = os.environ.get("CODERUNNER_DOCKER_BROWSER_NETWORK", "").strip()
        if raw and self._overrides.get("network") is None:
            self._overrides["network"] = network_from_text(raw)
        self._lock = threading.Lock()
        self._box: Box | None = None
        self._client: InstaVMBackend | None = None
        self._lost: dict[str, str] = {}
        self._closed = False
        self._in_flight = 0
        self._last_used = time.monotonic()

    def options(self) -> ContainerOptions:
        """The container options of the browser container (the runner's, with a Chromium-sized pids limit)."""
        defaults = self._fleet.defaults
        raised = defaults.with_overrides({"pids_limit": max(defaults.pids_limit, BROWSER_PIDS_LIMIT)})
        return raised.with_overrides(self._overrides)

    @property
    def container_id(self) -> str | None:
        """The running browser container's id (None before the first browser session)."""
        box = self._box
        return box.container_id if box is not None else None

    def _check_image(self) -> None:
        with_browser = None
        try:
            labels = self._fleet.client.images.get(self._fleet.image).labels or {}
            with_browser = labels.get(LABEL_BROWSER)
        except Exception:  # the start below reports an unusable image better than a label lookup can
            return
        if with_browser == "0":
            raise UnsupportedOperationError(
                f"The sandbox image {self._fleet.image} was built without a browser (browser=False or "
                "CODERUNNER_DOCKER_BROWSER=0). Build it with one: 'coderunner image build --browser 1' (unset "
                "CODERUNNER_DOCKER_BROWSER), then create a new runner."
            )

    def _connect(self) -> tuple[InstaVMBackend, Box]:
        from coderunner.backends.instavm import InstaVMBackend
        from coderunner.backends.sandbox.agent_client import httpx_transport

        with self._lock:
            if self._closed:
                raise BackendError("This runner is closed; create a new one.")
            if self._client is not None and self._box is not None:
                return self._client, self._box
            self._check_image()
            # The container's own Python kernel pool would only take memory from Chromium.
            env = {"CODERUNNER_POOL_SIZE": "0", **self._settings.to_env()}
            box = self._fleet.start(self.options(), role="browser", env=env)
            wire = box.wire
            # Through the box's own agent client: the same pinned socket and proven, capped answers as sessions.
            self._client = InstaVMBackend(
                self._fleet.settings,
                base_url=wire.url or "http://localhost",
                api_key=wire.api_key,
                transport=httpx_transport(wire),
                max_retries=0,
            )
            self._box = box
            return self._client, box

    def _drop(self, box: Box, why: str, *, unless_busy_since: float | None = None) -> bool:
        """Forget a browser container (and remove it); its sessions become 'lost' with ``why``.

        With ``unless_busy_since`` (a monotonic time), nothing happens if a call is in flight or one ended
        after that time: the check and the forgetting are one step, so no call starts on a container
        being removed.
        """
        with self._lock:
            if self._box is not box:
                return False
            if unless_busy_since is not None and (self._in_flight or self._last_used > unless_busy_since):
                return False
            client, self._client, self._box = self._client, None, None
            if client is not None:
                for sid in client.browser_sessions:
                    self._lost[sid] = why
                while len(self._lost) > _LOST_MEMORY:
                    self._lost.pop(next(iter(self._lost)))
        if client is not None:
            client.close()
        self._fleet.remove(box)
        return True

    def lost(self, session_id: str) -> str | None:
        """Why a browser session was lost with a dead browser container (None: it was not)."""
        with self._lock:
            return self._lost.get(session_id)

    def call(self, session_id: str | None, action: Callable[[InstaVMBackend], T]) -> T:
        """Run ``action`` against the browser container, turning its death into ``BrowserSessionLostError``."""
        why = None if session_id is None else self.lost(session_id)
        if why is not None:
            raise BrowserSessionLostError(f"Browser session {session_id} is gone: {why}. Create a new browser session.")
        client, box = self._connect()
        with self._lock:
            self._in_flight += 1
        try:
            return action(client)
        except (BackendUnavailableError, BackendError):
            state = self._fleet.state(box)
            if state.get("Running"):
                raise
            why = f"the browser container {death_cause(state, self.options().memory)}"
            self._drop(box, why)
            if session_id is None:
                raise BackendError(f"{why}. Try again: the next browser call starts a new browser container.") from None
            raise BrowserSessionLostError(
                f"Browser session {session_id} is gone: {why}. Create a new browser session "
                "(a new browser container starts with it)."
            ) from None
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_used = time.monotonic()

    @property
    def idle_after(self) -> float | None:
        """Seconds without a browser call after which the container is removed; None: never.

        It is the sessions' idle timeout: by then every session in the container has expired anyway.
        """
        return self._settings.idle_timeout

    def stop_if_idle(self) -> bool:
        """Remove the browser container when no browser call came for :attr:`idle_after` seconds.

        Chromium holds memory while it waits; the next browser session starts a new container.
        Returns True when it removed one.
        """
        idle = self.idle_after
        box = self._box
        if box is None or idle is None:
            return False
        why = f"the browser container was stopped after {idle:g} s without browser activity"
        return self._drop(box, why, unless_busy_since=time.monotonic() - idle)

    def create_session(self, action: Callable[[InstaVMBackend], BrowserSessionInfo]) -> BrowserSessionInfo:
        """Open a browser session, replacing a browser container found dead on the way (once)."""
        try:
            return self.call(None, action)
        except BackendError:
            with self._lock:
                replaced = self._box is None
            if not replaced:
                raise
            return self.call(None, action)

    def list_sessions(self) -> list[BrowserSessionInfo]:
        """The live browser sessions (none, without starting a container, before the first)."""
        with self._lock:
            started = self._client is not None
        return self.call(None, lambda c: c.browser_list_sessions()) if started else []

    def close(self) -> None:
        """Close the client; the fleet removes the container with the others. Idempotent."""
        with self._lock:
            self._closed = True
            client, self._client, self._box = self._client, None, None
        if client is not None:
            client.close()


def _docker(info: BrowserSessionInfo) -> BrowserSessionInfo:
    return info.model_copy(update={"backend": "docker"})


class DockerBrowserMixin(BrowserActionMethods):
    """The browser capability (:class:`coderunner.browser.protocol.BrowserBackend`) of :class:`DockerBackend`.

    The session methods and ``browser_act`` go to the browser container's InstaVM client; the
    ``browser_navigate`` ... methods are :class:`~coderunner.browser.sugar.BrowserActionMethods`.
    """

    _browser: BrowserContainer

    @property
    def browser_container_id(self) -> str | None:
        """The browser container's id (None until the first browser session); for inspection and tests."""
        return self._browser.container_id

    def browser_create_session(
        self,
        viewport_width: int = 1920,
        viewport_height: int = 1080,
        user_agent: str | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> BrowserSessionInfo:
        """Open an isolated browser session in the browser container (started with the first session)."""
        return _docker(
            self._browser.create_session(
                lambda c: c.browser_create_session(
                    viewport_width, viewport_height, user_agent, idle_timeout=idle_timeout
                )
            )
        )

    def browser_get_session(self, session_id: str) -> BrowserSessionInfo:
        """Describe a browser session."""
        return _docker(self._browser.call(session_id, lambda c: c.browser_get_session(session_id)))

    def browser_list_sessions(self) -> list[BrowserSessionInfo]:
        """Describe every live browser session."""
        return [_docker(info) for info in self._browser.list_sessions()]

    def browser_close_session(self, session_id: str) -> None:
        """Close a browser session (a no-op when already closed or lost)."""
        if self._browser.lost(session_id) is not None:
            return
        self._browser.call(session_id, lambda c: c.browser_close_session(session_id))

    def browser_act(self, session_id: str, action: BrowserAction[R]) -> R:
        """Run one browser action in the browser container (a URL is opened as seen from its network)."""
        return self._browser.call(session_id, lambda c: c.browser_act(session_id, action))
