"""The Docker backend classes: sessions mapped onto containers, executions through the agent, files, expiry."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from coderunner import _core
from coderunner.backends.bridge import AsyncBrowserBridge
from coderunner.backends.docker.browser import BrowserContainer, DockerBrowserMixin
from coderunner.backends.docker.disk import SessionStorage, size_text
from coderunner.backends.docker.fleet import START_TIMEOUT, Box, Fleet, death_cause, death_message
from coderunner.backends.docker.image import ImageSpec
from coderunner.backends.docker.options import ContainerOptions
from coderunner.backends.sandbox.agent_client import (
    AgentClient,
    AgentForged,
    AgentUnreachable,
    AnswerTooLarge,
)
from coderunner.backends.sandbox.contract import AGENT_PREFIX, IN_WORK
from coderunner.browser.config import BrowserSettings
from coderunner.config import Settings
from coderunner.engine.table import SessionTable
from coderunner.errors import (
    BackendError,
    CodeRunnerError,
    ConfigurationError,
    InvalidRequestError,
    error_for_code,
)
from coderunner.models import ErrorInfo, ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

log = logging.getLogger(__name__)
OutputCallback = Callable[[str], None]

_TAMPERED = (
    "answered without its agent's proof (something inside the sandbox took over the agent's socket), so it was removed"
)
_DISK_FULL = 1024**2
"""Free bytes below which a session's disk counts as full."""


# -- the wire (host side) ------------------------------------------------------------------------------


def agent_execute(
    wire: AgentClient,
    session_id: str,
    request: ExecRequest,
    timeout: float | None,
    grace: float,
    request_id: str,
    on_stdout: OutputCallback | None,
    on_stderr: OutputCallback | None,
) -> ExecutionResult:
    """Run ``request`` through a box's agent with the time limit ``timeout`` (the host's resolved one).

    ``request_id`` makes sending it again safe: the agent runs it once.
    """
    body = {
        "request": {**request.to_wire(), "timeout": timeout},
        "stream": on_stdout is not None or on_stderr is not None,
        "request_id": request_id,
    }
    # The engine inside enforces the time limit; this only catches a container that stopped answering.
    read = None if timeout is None else timeout + grace + 30.0
    path = f"{AGENT_PREFIX}/sessions/{session_id}/execute"
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


# -- sessions --------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass
class _Session:
    session_id: str
    spec: SessionSpec
    options: ContainerOptions
    box: Box
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

    @property
    def language(self) -> str:
        return self.spec.language

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


class DockerBackend(DockerBrowserMixin):
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
        self._sessions: SessionTable[_Session] = SessionTable(self.settings.max_sessions)
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
        return self._sessions.get(session_id)

    def _adopt(self, box: Box, spec: SessionSpec) -> str:
        # The host keeps the session's durations (it removes the container): the session inside has none.
        inside = spec.replace(lifetime=None, idle_timeout=None, working_dir=None, options={})
        response = box.wire.request(
            "POST", f"{AGENT_PREFIX}/session", json_body={"spec": inside.to_wire()}, timeout=START_TIMEOUT
        )
        inner_id: str = response.json()["session_id"]
        return inner_id

    def _open(
        self,
        options: ContainerOptions,
        spec: SessionSpec,
        *,
        work: Path | None = None,
        storage: SessionStorage | None = None,
    ) -> tuple[Box, str]:
        """A container with a ready session in it; a pooled container that turns out dead is skipped."""
        for _ in range(3):
            if work is None and storage is None:
                box = self._fleet.take(options)
            else:
                box = self._fleet.start(options, role="session", work=work, storage=storage)
            try:
                return box, self._adopt(box, spec)
            except (AgentUnreachable, AgentForged) as exc:
                log.warning("discarding a container that does not answer: %s", exc)
                self._fleet.remove(box, keep_storage=storage is not None)
            except BaseException:
                self._fleet.remove(box, keep_storage=storage is not None)
                raise
        raise BackendError("Three containers in a row did not answer; see the Docker engine's logs.")

    def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session in its own container (from the warm pool when the options are the defaults).

        ``spec.working_dir`` is a host directory mounted as the session directory (``/work``) instead of a fresh
        one; it is not removed at close, and the container's user must be able to write it. ``spec.options``
        override the runner's container options for this session (``network``, ``memory``, ``cpus``,
        ``pids_limit``, ``runtime``, ...).
        """
        # Everything is checked before a container is taken: a bad value must not cost (or leak) one.
        spec = spec or SessionSpec()
        options = self._fleet.defaults.with_overrides(spec.options)
        self._fleet.disk_limit(options)  # a limit this host cannot enforce fails now
        work = None
        if spec.working_dir is not None:
            work = Path(spec.working_dir).expanduser().resolve()
            if self._fleet.remote:
                raise ConfigurationError("working_dir cannot be mounted from this machine into a remote Docker engine.")
        # The place is held while the container starts: sessions created at once cannot pass max_sessions.
        with self._sessions.reserve() as place:
            if work is not None:
                work.mkdir(parents=True, exist_ok=True)
            box, inner = self._open(options, spec, work=work)
            try:
                session_id = str(uuid.uuid4())
                session = _Session(
                    session_id=session_id,
                    spec=spec,
                    options=options,
                    box=box,
                    inner_id=inner,
                    idle_timeout=spec.idle_timeout if spec.idle_timeout is not None else self.settings.idle_timeout,
                    expires_at=(
                        datetime.fromtimestamp(time.time() + spec.lifetime, timezone.utc) if spec.lifetime else None
                    ),
                )
                place.add(session_id, session)
                return self._info(session, languages=[spec.language])
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
            working_dir=IN_WORK,
            created_at=session.created_at,
            last_activity_at=session.last_activity_at,
            expires_at=session.expires_at,
            idle_timeout=session.idle_timeout,
            backend=self.name,
            metadata=dict(session.spec.metadata),
        )

    def get_session(self, session_id: str) -> SessionInfo:
        """Describe a session."""
        return self._info(self._get(session_id))

    def list_sessions(self) -> list[SessionInfo]:
        """Describe every live session."""
        return [self._info(s) for s in self._sessions.values()]

    def close_session(self, session_id: str) -> None:
        """Remove a session's container (and its directory, unless it was yours). Closing twice is a no-op."""
        if self._sessions.is_gone(session_id):
            return
        self._get(session_id)
        self._drop(session_id, "it was closed")

    def _drop(self, session_id: str, reason: str) -> None:
        session = self._sessions.forget(session_id, reason)
        if session is not None:
            self._fleet.remove(session.box)  # its /work too, unless it was the caller's directory

    def _expire_loop(self) -> None:
        while not self._stop.wait(self._expiry_period()):
            for gone in self._sessions.expire(time.monotonic()):
                log.info("session %s expired: %s", gone.session_id, gone.reason)
                with contextlib.suppress(Exception):  # the loop must survive a failed removal
                    self._fleet.remove(gone.session.box)
            with contextlib.suppress(Exception):
                self._browser.stop_if_idle()

    def _expiry_period(self) -> float:
        period = self._sessions.next_check(floor=0.1)
        if self._browser.idle_after:
            period = max(0.1, min(period, self._browser.idle_after / 4))
        return period

    # -- replacing dead containers ----------------------------------------------------------------

    def _replace(self, session: _Session, dead: Box) -> None:
        """Give the session a fresh container with the same options and storage (once per dead box)."""
        with session.lock:
            if session.box is not dead:
                return  # another thread replaced it already
            # Gone before anything else touches its storage: the socket directory gets the new box's key, and
            # a container that merely stopped answering must not see it.
            self._fleet.remove(dead, wait=True, keep_storage=True)
            box, inner = self._open(session.options, session.spec, storage=dead.storage)
            session.box, session.inner_id = box, inner

    def _replace_noting(self, session: _Session, dead: Box, why: str) -> None:
        """Replace a dead box outside an execution, and have the next execution report the loss."""
        self._replace(session, dead)
        session.lost = (
            f"The session's container {why}, so the session continues in a fresh container: all variables and "
            "imports were lost (files in the session directory remain)."
        )

    def _answers(self, box: Box) -> bool:
        """Whether the box's own agent answers (an impostor on its socket counts as no)."""
        try:
            return self._fleet.answers(box)
        except AgentForged:
            return False

    def _call(self, session: _Session, method: str, path: str, **kwargs: Any) -> Any:
        """A request to the session's agent (file calls, all safe to send twice).

        A connection hiccup is retried on the same container; only a container found dead (or one whose agent
        does not prove itself) is replaced, and the next execution reports the lost state.
        """
        box = session.box
        try:
            try:
                return box.wire.request(method, path.format(sid=session.inner_id), **kwargs)
            except AgentUnreachable:
                if self._fleet.answers(box):
                    return box.wire.request(method, path.format(sid=session.inner_id), **kwargs)
                self._replace_noting(session, box, death_cause(self._fleet.state(box), session.options.memory))
            except AnswerTooLarge:
                if self._fleet.answers(box):
                    raise  # a real answer, too long to read
                self._replace_noting(session, box, _TAMPERED)
        except AgentForged:  # from the call, or from the check that the agent still answers
            self._replace_noting(session, box, _TAMPERED)
        return session.box.wire.request(method, path.format(sid=session.inner_id), **kwargs)

    # -- execution and files ----------------------------------------------------------------------

    def execute(
        self,
        session_id: str,
        request: ExecRequest,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``request`` in the session's container; a container that dies gives an ``InterpreterDied`` result."""
        session = self._get(session_id)
        lang = request.language_or(session.language)
        limit = request.timeout_or(self.settings.timeout)
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
                    result = agent_execute(
                        box.wire,
                        session.inner_id,
                        request,
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
                    if not self._answers(box):  # no agent would have sent it: something took the socket over
                        return self._died(session, box, lang, time.perf_counter() - started, why=_TAMPERED, notes=notes)
                    raise BackendError(
                        f"{exc.message} The code ran and the session keeps its state; make the result smaller "
                        "(fewer or smaller rich outputs), or raise max_answer_bytes."
                    ) from None
                except AgentUnreachable as exc:
                    try:
                        if self._fleet.answers(box):
                            continue  # a hiccup of the connection, not a death: send it again (same request id)
                    except AgentForged:  # an impostor took the socket over after the call failed
                        return self._died(session, box, lang, time.perf_counter() - started, why=_TAMPERED, notes=notes)
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

    def _disk_note(self, box: Box, result: ExecutionResult) -> str | None:
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

    def _died(
        self,
        session: _Session,
        box: Box,
        language: str,
        elapsed: float,
        *,
        why: str | None = None,
        notes: list[str] | None = None,
    ) -> ExecutionResult:
        if why is None:
            message, exit_code = death_message(self._fleet.state(box), session.options.memory)
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

    def _replace_in_background(self, session: _Session, box: Box) -> None:
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
    def _shutdown(fleet: Fleet, stop: threading.Event) -> None:
        stop.set()
        fleet.close()

    def close(self) -> None:
        """Remove every container and directory this backend made. Idempotent."""
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
