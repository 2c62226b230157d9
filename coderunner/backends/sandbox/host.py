"""The sandbox host: sessions mapped onto boxes that run the agent, executions through it, files, expiry.

Provider-neutral: a box provider (:class:`BoxProvider`; Docker's :class:`~coderunner.backends.docker.fleet.Fleet`
today, Kubernetes pods next) starts, pools, inspects and removes boxes; this host keeps the session table, sends
each execution once (request ids), tells a hiccup from a death, replaces a dead box and says what was lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from coderunner import _core
from coderunner.backends.sandbox.agent_client import (
    AgentClient,
    AgentForged,
    AgentUnreachable,
    AnswerTooLarge,
)
from coderunner.backends.sandbox.contract import AGENT_PREFIX, IN_WORK
from coderunner.config import Settings
from coderunner.engine.table import SessionTable
from coderunner.errors import (
    BackendError,
    CodeRunnerError,
    InvalidRequestError,
    error_for_code,
)
from coderunner.models import ErrorInfo, ExecutionResult, FileInfo, SessionInfo
from coderunner.specs import ExecRequest, SessionSpec

__all__ = ["BoxProvider", "HostedSession", "SandboxHost", "agent_execute"]

log = logging.getLogger(__name__)
OutputCallback = Callable[[str], None]

_TAMPERED = (
    "answered without its agent's proof (something inside the sandbox took over the agent's socket), so it was removed"
)
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
class HostedSession:
    """One session of the host: its spec, its current box and the session id inside that box."""

    session_id: str
    spec: SessionSpec
    options: Any
    """The provider's options for the session's boxes (Docker: ContainerOptions)."""
    box: Any
    """The box running the session now (replaced when it dies)."""
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
        """The session's default language."""
        return self.spec.language

    def touch(self) -> None:
        """Note activity now (idle expiry counts from here)."""
        self.last_activity = time.monotonic()
        self.last_activity_at = _now()

    def enter(self, delta: int) -> None:
        """Count an execution in (+1) or out (-1): busy sessions never expire."""
        with self.busy_lock:
            self.busy += delta

    def expiry_reason(self, now: float) -> str | None:
        """Why the session has expired at ``now``, or None while it lives (busy sessions never expire)."""
        if self.busy:
            return None
        if self.expires_at is not None and _now() >= self.expires_at:
            return "its lifetime ended"
        if self.idle_timeout is not None and now - self.last_activity > self.idle_timeout:
            return f"it was idle for more than {self.idle_timeout:g} s"
        return None


# -- what a provider gives the host ------------------------------------------------------------------


class BoxProvider(Protocol):
    """Where boxes come from: Docker containers today (:class:`coderunner.backends.docker.fleet.Fleet`).

    The provider owns everything about a box but the sessions in it: starting (from a warm pool or fresh),
    labels and the sweep of a crashed owner's leftovers, storage, inspection after a death, removal.
    """

    noun: str
    """What a box is called in messages ('container', 'pod')."""
    start_timeout: float
    """Seconds a new box's agent has to create its session."""

    def session_options(self, spec: SessionSpec) -> tuple[Any, Path | None]:
        """The box options for a session and its host work directory, checked before any box is taken."""
        ...

    def take(self, options: Any) -> Any:
        """A ready box for ``options``: from the warm pool when it has one, else a fresh one."""
        ...

    def start_session_box(self, options: Any, *, work: Path | None, replacing: Any | None) -> Any:
        """A fresh box on ``work`` (the caller's directory), or on the storage of the box it replaces."""
        ...

    def remove(self, box: Any, *, wait: bool = False, keep_storage: bool = False) -> None:
        """Remove a box (and its storage unless ``keep_storage``)."""
        ...

    def answers(self, box: Any) -> bool:
        """Whether the box's own agent answers (raises AgentForged for an impostor)."""
        ...

    def death(self, box: Any, options: Any) -> tuple[str, int]:
        """Why a box died during an execution, for the result, and the exit code to report."""
        ...

    def death_cause(self, box: Any, options: Any) -> str:
        """Why a box died, as a clause ('ran out of memory (limit 300m)')."""
        ...

    def disk_note(self, box: Any, result: ExecutionResult) -> str | None:
        """A note when an execution filled one of the box's filesystems, else None."""
        ...

    def submit(self, work: Callable[[], None]) -> None:
        """Run ``work`` in the provider's background threads."""
        ...

    def close(self) -> None:
        """Remove every box the provider started."""
        ...


class SandboxHost:
    """Sessions on boxes from a :class:`BoxProvider`, one box per session. See :class:`coderunner.backend.Backend`.

    Subclasses (the Docker backend) build the provider and add what is theirs (the browser box, the image).
    """

    name: str

    def __init__(self, settings: Settings, provider: BoxProvider) -> None:
        self.settings = settings
        self._provider = provider
        self._sessions: SessionTable[HostedSession] = SessionTable(settings.max_sessions)
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._expire_loop, name=f"coderunner-{self.name}-expiry", daemon=True)
        self._reaper.start()
        # At garbage collection or exit as at close(): never a reference to self, or it would never be collected.
        self._finalizer = weakref.finalize(self, SandboxHost._shutdown, provider, self._stop)

    def _on_expiry_tick(self) -> None:
        """Called by the expiry loop after each pass (a subclass stops an idle browser box here)."""

    def _get(self, session_id: str) -> HostedSession:
        return self._sessions.get(session_id)

    def _adopt(self, box: Any, spec: SessionSpec) -> str:
        # The host keeps the session's durations (it removes the container): the session inside has none.
        inside = spec.replace(lifetime=None, idle_timeout=None, working_dir=None, options={})
        response = box.wire.request(
            "POST",
            f"{AGENT_PREFIX}/session",
            json_body={"spec": inside.to_wire()},
            timeout=self._provider.start_timeout,
        )
        inner_id: str = response.json()["session_id"]
        return inner_id

    def _open(
        self,
        options: Any,
        spec: SessionSpec,
        *,
        work: Path | None = None,
        replacing: Any | None = None,
    ) -> tuple[Any, str]:
        """A box with a ready session in it; a pooled box that turns out dead is skipped."""
        noun = self._provider.noun
        for _ in range(3):
            if work is None and replacing is None:
                box = self._provider.take(options)
            else:
                box = self._provider.start_session_box(options, work=work, replacing=replacing)
            try:
                return box, self._adopt(box, spec)
            except (AgentUnreachable, AgentForged) as exc:
                log.warning("discarding a %s that does not answer: %s", noun, exc)
                self._provider.remove(box, keep_storage=replacing is not None)
            except BaseException:
                self._provider.remove(box, keep_storage=replacing is not None)
                raise
        raise BackendError(f"Three {noun}s in a row did not answer; see the logs of the {self.name} engine.")

    def create_session(self, spec: SessionSpec | None = None) -> SessionInfo:
        """Create a session in its own container (from the warm pool when the options are the defaults).

        ``spec.working_dir`` is a host directory mounted as the session directory (``/work``) instead of a fresh
        one; it is not removed at close, and the container's user must be able to write it. ``spec.options``
        override the runner's container options for this session (``network``, ``memory``, ``cpus``,
        ``pids_limit``, ``runtime``, ...).
        """
        # Everything is checked before a box is taken: a bad value must not cost (or leak) one.
        spec = spec or SessionSpec()
        options, work = self._provider.session_options(spec)
        # The place is held while the container starts: sessions created at once cannot pass max_sessions.
        with self._sessions.reserve() as place:
            if work is not None:
                work.mkdir(parents=True, exist_ok=True)
            box, inner = self._open(options, spec, work=work)
            try:
                session_id = str(uuid.uuid4())
                session = HostedSession(
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
                self._provider.remove(box)  # taken, so given back: nothing counts or expires a box without a session
                raise

    def _info(self, session: HostedSession, languages: list[str] | None = None) -> SessionInfo:
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
            self._provider.remove(session.box)  # its /work too, unless it was the caller's directory

    def _expire_loop(self) -> None:
        while not self._stop.wait(self._expiry_period()):
            for gone in self._sessions.expire(time.monotonic()):
                log.info("session %s expired: %s", gone.session_id, gone.reason)
                with contextlib.suppress(Exception):  # the loop must survive a failed removal
                    self._provider.remove(gone.session.box)
            with contextlib.suppress(Exception):
                self._on_expiry_tick()

    def _expiry_period(self) -> float:
        return self._sessions.next_check(floor=0.1)

    # -- replacing dead containers ----------------------------------------------------------------

    def _replace(self, session: HostedSession, dead: Any) -> None:
        """Give the session a fresh container with the same options and storage (once per dead box)."""
        with session.lock:
            if session.box is not dead:
                return  # another thread replaced it already
            # Gone before anything else touches its storage: the socket directory gets the new box's key, and
            # a container that merely stopped answering must not see it.
            self._provider.remove(dead, wait=True, keep_storage=True)
            box, inner = self._open(session.options, session.spec, replacing=dead)
            session.box, session.inner_id = box, inner

    def _replace_noting(self, session: HostedSession, dead: Any, why: str) -> None:
        """Replace a dead box outside an execution, and have the next execution report the loss."""
        self._replace(session, dead)
        session.lost = (
            f"The session's {self._provider.noun} {why}, so the session continues in a fresh {self._provider.noun}: "
            "all variables and imports were lost (files in the session directory remain)."
        )

    def _answers(self, box: Any) -> bool:
        """Whether the box's own agent answers (an impostor on its socket counts as no)."""
        try:
            return self._provider.answers(box)
        except AgentForged:
            return False

    def _call(self, session: HostedSession, method: str, path: str, **kwargs: Any) -> Any:
        """A request to the session's agent (file calls, all safe to send twice).

        A connection hiccup is retried on the same container; only a container found dead (or one whose agent
        does not prove itself) is replaced, and the next execution reports the lost state.
        """
        box = session.box
        try:
            try:
                return box.wire.request(method, path.format(sid=session.inner_id), **kwargs)
            except AgentUnreachable:
                if self._provider.answers(box):
                    return box.wire.request(method, path.format(sid=session.inner_id), **kwargs)
                self._replace_noting(session, box, self._provider.death_cause(box, session.options))
            except AnswerTooLarge:
                if self._provider.answers(box):
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
                        if self._provider.answers(box):
                            continue  # a hiccup of the connection, not a death: send it again (same request id)
                    except AgentForged:  # an impostor took the socket over after the call failed
                        return self._died(session, box, lang, time.perf_counter() - started, why=_TAMPERED, notes=notes)
                    if exc.sent:
                        return self._died(session, box, lang, time.perf_counter() - started, notes=notes)
                    # The container was gone before the code was sent: run it in a fresh one, and say so.
                    self._replace(session, box)
                    notes.append(
                        f"The session's {self._provider.noun} had stopped before this call, so it ran in a fresh "
                        f"{self._provider.noun}: "
                        "earlier variables are not defined (files in the session directory remain)."
                    )
            else:
                raise BackendError(
                    f"The session's {self._provider.noun} is running but its agent does not answer; try again."
                )
        finally:
            session.enter(-1)
            session.touch()
        update: dict[str, Any] = {"session_id": session_id}
        disk = self._provider.disk_note(session.box, result)
        if notes or disk:
            update["warnings"] = [*result.warnings, *notes, *([disk] if disk else [])]
        if notes:
            update["state_lost"] = True
        if disk and result.error is not None:
            update["error"] = result.error.model_copy(update={"value": f"{result.error.value} ({disk})"})
        return result.model_copy(update=update)

    def _died(
        self,
        session: HostedSession,
        box: Any,
        language: str,
        elapsed: float,
        *,
        why: str | None = None,
        notes: list[str] | None = None,
    ) -> ExecutionResult:
        if why is None:
            message, exit_code = self._provider.death(box, session.options)
        else:
            message, exit_code = (
                f"The session's {self._provider.noun} {why} during this execution. The session continues in a "
                f"fresh {self._provider.noun}: all variables and imports were lost; files in the session directory "
                "remain.",
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

    def _replace_in_background(self, session: HostedSession, box: Any) -> None:
        def replace() -> None:
            try:
                self._replace(session, box)
            except Exception as exc:  # the next call retries the replacement and reports its error
                log.warning("could not replace the container of session %s: %s", session.session_id, exc)

        self._provider.submit(replace)

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
        """Write bytes into the session directory; an absolute path is the box's own filesystem (its user's rights)."""
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
    def _shutdown(provider: BoxProvider, stop: threading.Event) -> None:
        stop.set()
        provider.close()

    def close(self) -> None:
        """Remove every box and directory this host made. Idempotent."""
        self._sessions.forget_all("the runner was closed")
        self._finalizer()
