"""The agent: the main process of every sandbox box, coderunner's server plus the routes the host drives it with.

A box (a Docker container today, a pod later) runs ``coderunner sandbox-agent``: the InProcess engine behind
:func:`coderunner.server.app.create_app`, on a unix socket (or TCP for remote engines), with

* ``/_agent/session``, ``/_agent/ready`` and the fast ``/_agent/sessions/{id}/execute`` (one JSON answer, or
  NDJSON output events then the result), each execution run once per request id (:class:`_Executions`);
* a proof on every answer (:class:`_ProveAnswers`, keyed by the box's key, which is taken from ``agent.key``
  and deleted before any kernel starts; the process is made non-dumpable), see
  :mod:`coderunner.backends.sandbox.agent_client` for the host's side;
* the container's OOM count read from its cgroup, so an execution killed by the memory limit says so.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from coderunner.backends.sandbox.agent_client import (
    KEY_FILE,
    NONCE_HEADER,
    PROOF_HEADER,
    PROOF_TRAILER,
    answer_proof,
    request_digest,
)
from coderunner.backends.sandbox.contract import AGENT_PREFIX, IN_WORK
from coderunner.config import Settings
from coderunner.errors import CodeRunnerError
from coderunner.models import ErrorInfo, ExecutionResult
from coderunner.specs import ExecRequest, SessionSpec

if TYPE_CHECKING:
    from fastapi import FastAPI

    from coderunner.backends.inprocess import AsyncInProcessBackend


OutputCallback = Callable[[str], None]


# -- the agent (runs inside the container) -------------------------------------------------------------


class _AgentSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any]
    """A :meth:`SessionSpec.to_wire`; the agent adds the container's ``/work`` as its directory."""


class _AgentExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: dict[str, Any]
    """An :meth:`ExecRequest.to_wire`, checked here once (the host checked it on its side)."""
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
                session_id, ExecRequest.from_wire(body.request), on_stdout=on_stdout, on_stderr=on_stderr
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

    @app.post(f"{AGENT_PREFIX}/session", include_in_schema=False, response_model=None)
    async def agent_session(body: _AgentSessionRequest) -> JSONResponse:
        # One session per container: once it has taken the warm kernel, starting another would only waste
        # the container's memory and CPU.
        backend.engine.settings = dataclasses.replace(backend.engine.settings, pool_size=0)
        info = await backend.create_session(SessionSpec.from_wire(body.spec, working_dir=str(workdir)))
        return JSONResponse(info.model_dump(mode="json"))

    @app.get(f"{AGENT_PREFIX}/ready", include_in_schema=False, response_model=None)
    async def agent_ready(timeout: float = 60.0) -> JSONResponse:
        # A pooled container counts as warm once its Python kernel is: that is what makes sessions fast.
        deadline = loop_time() + timeout
        while backend.engine.settings.pool_size > 0 and backend.stats()["pooled_kernels"] < 1:
            if loop_time() >= deadline:
                return JSONResponse({"ready": False})
            await asyncio.sleep(0.01)
        return JSONResponse({"ready": True})

    @app.post(f"{AGENT_PREFIX}/sessions/{{session_id}}/execute", include_in_schema=False, response_model=None)
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
            and path.startswith(f"{AGENT_PREFIX}/sessions/")
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
        session_id = path[len(f"{AGENT_PREFIX}/sessions/") : -len("/execute")]
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
    workdir: str = IN_WORK,
    api_key: str | None = None,
) -> int:
    """Serve the agent (the coderunner server plus the agent routes) until stopped; the container's main process.

    The agent proves its answers with the box's key (see :mod:`coderunner.backends.sandbox.agent_client`), which the
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

    from coderunner.backends.inprocess import AsyncInProcessBackend

    key = _take_agent_key(uds, api_key)
    _make_undumpable()
    # Installing packages on the read-only root is a user install (pip does this by itself); the user
    # site directory must exist before the first kernel starts, or Python leaves it off sys.path.
    with contextlib.suppress(OSError):
        os.makedirs(site.getusersitepackages(), exist_ok=True)
    settings = Settings.from_env()
    # The engine first: it starts warming its first kernel (the fork server's imports) on its own thread while
    # this one imports the web server and builds the app, so the container's first session waits less.
    backend = AsyncInProcessBackend(settings)
    import uvicorn

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
