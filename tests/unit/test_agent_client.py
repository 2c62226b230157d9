"""The host's agent client against real servers on unix sockets: pinned connects, proofs, caps, stale connections."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coderunner.backends.sandbox.agent_client import (
    AgentClient,
    AgentForged,
    AgentUnreachable,
    AnswerTooLarge,
    connect_unix,
    new_key,
)
from coderunner.server.agent import _ProveAnswers


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A tiny agent: /echo answers the body, /stream answers NDJSON in parts, /big a long body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    if path == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]}
        )
        for i in range(3):
            await send(
                {
                    "type": "http.response.body",
                    "body": json.dumps({"t": "out", "d": str(i)}).encode() + b"\n",
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b'{"t": "result"}\n', "more_body": False})
        return
    if path == "/headers":  # what it was sent, e.g. to count Content-Type headers
        seen = [v.decode() for k, v in scope["headers"] if k == b"content-type"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(seen).encode()})
        return
    payload = body if path == "/echo" else json.dumps({"code": "session_not_found", "detail": "no"}).encode()
    status = 200 if path == "/echo" else 404
    if path == "/big":
        payload, status = b"x" * (3 * 1024 * 1024), 200
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    import uvicorn

    key = new_key()
    path = tmp_path / "api.sock"
    server = uvicorn.Server(uvicorn.Config(_ProveAnswers(_app, key), uds=str(path), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # The socket file appears at bind(), before listen(): a request in between is refused. uvicorn says
    # when it is serving.
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the test agent did not start within 10 s"
    yield path, key
    server.should_exit = True
    thread.join(10)


def test_proven_answers_are_returned(agent: tuple[Path, bytes]) -> None:
    path, key = agent
    client = AgentClient(key=key, uds=path)
    assert client.request("POST", "/echo", params={"a": "b c"}, body=b"hello").content == b"hello"
    assert [e["d"] for e in client.stream("POST", "/stream", json_body={}, timeout=10) if e["t"] == "out"] == [
        "0",
        "1",
        "2",
    ]
    from coderunner.errors import SessionNotFoundError

    with pytest.raises(SessionNotFoundError):
        client.request("GET", "/missing")
    client.close()


def test_the_httpx_transport_sends_one_content_type(agent: tuple[Path, bytes]) -> None:
    import httpx

    from coderunner.backends.sandbox.agent_client import httpx_transport

    path, key = agent
    with httpx.Client(transport=httpx_transport(AgentClient(key=key, uds=path)), base_url="http://localhost") as http:
        assert http.post("/headers", json={"a": 1}).json() == ["application/json"]
        assert http.post("/echo", content=b"raw").content == b"raw"
        assert http.get("/missing").status_code == 404  # error answers are the caller's to read


def test_answers_under_another_key_are_forged(agent: tuple[Path, bytes]) -> None:
    path, _ = agent
    client = AgentClient(key=new_key(), uds=path)
    with pytest.raises(AgentForged):
        client.request("POST", "/echo", body=b"x")
    with pytest.raises(AgentForged):
        list(client.stream("POST", "/stream", json_body={}, timeout=10))


def test_answers_past_the_cap_are_refused(agent: tuple[Path, bytes]) -> None:
    path, key = agent
    client = AgentClient(key=key, uds=path, max_bytes=1024 * 1024)
    with pytest.raises(AnswerTooLarge, match="1048576"):
        client.request("GET", "/big")
    assert len(client.request("GET", "/big", max_bytes=4 * 1024 * 1024).content) == 3 * 1024 * 1024


def test_a_symlink_to_another_socket_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "host.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(target))
    listener.listen(1)
    os.symlink(target, tmp_path / "api.sock")
    with pytest.raises(OSError):
        connect_unix(tmp_path / "api.sock")
    (tmp_path / "plain").write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        connect_unix(tmp_path / "plain")
    client = AgentClient(key=new_key(), uds=tmp_path / "api.sock")
    with pytest.raises(AgentUnreachable) as info:
        client.request("GET", "/echo")
    assert info.value.sent is False
    listener.close()


def test_a_stale_kept_alive_connection_is_replaced_transparently(tmp_path: Path) -> None:
    """A server that drops kept-alive connections without saying so (the issue's agent after a 500)."""
    path = tmp_path / "api.sock"
    key = new_key()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)
    requests: list[bytes] = []

    def serve() -> None:
        # Answers the first request on each connection (proven), then reads the next one and hangs up on it.
        from coderunner.backends.sandbox.agent_client import answer_proof, request_digest

        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            data = conn.recv(65536)
            requests.append(data)
            head = data.split(b"\r\n")
            nonce = next(h.split(b": ", 1)[1] for h in head if h.lower().startswith(b"x-coderunner-nonce"))
            method, target, _ = head[0].split(b" ")
            body = b"ok"
            proof = answer_proof(
                key,
                nonce.decode(),
                request_digest(method.decode(), target, b""),
                200,
                __import__("hashlib").sha256(body).digest(),
            )
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Coderunner-Proof: " + proof.encode() + b"\r\n\r\n" + body
            )
            conn.recv(65536)  # the next request on the kept-alive connection: dropped unanswered
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = AgentClient(key=key, uds=path)
    assert client.request("GET", "/a").content == b"ok"
    assert client.request("GET", "/b").content == b"ok"  # sent on the stale connection, then again on a new one
    assert client.request("GET", "/c").content == b"ok"
    listener.close()
    assert sum(1 for r in requests if r.startswith(b"GET /b ")) == 1  # answered once


def test_the_proof_middleware_holds_answers_in_parts_until_whole() -> None:
    key = new_key()
    sent: list[dict[str, Any]] = []

    async def parts(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]}
        )
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd", "more_body": False})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/f",
        "raw_path": b"/f",
        "query_string": b"",
        "headers": [(b"x-coderunner-nonce", b"n1")],
    }
    asyncio.run(_ProveAnswers(parts, key)(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"abcd"
    headers = dict(sent[0]["headers"])
    assert headers[b"content-length"] == b"4" and b"x-coderunner-proof" in headers


def test_a_request_the_agent_died_of_counts_as_sent(tmp_path: Path) -> None:
    """The agent reads a request, then dies (its code ran `kill -9 -1`): the retry finds nobody, and the request
    must count as sent. Reported as never sent, the host ran the code again in a fresh container, three times."""
    path = tmp_path / "api.sock"
    key = new_key()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)

    def serve() -> None:
        from coderunner.backends.sandbox.agent_client import answer_proof, request_digest

        conn, _ = listener.accept()
        data = conn.recv(65536)
        head = data.split(b"\r\n")
        nonce = next(h.split(b": ", 1)[1] for h in head if h.lower().startswith(b"x-coderunner-nonce"))
        method, target, _ = head[0].split(b" ")
        body = b"ok"
        proof = answer_proof(
            key,
            nonce.decode(),
            request_digest(method.decode(), target, b""),
            200,
            __import__("hashlib").sha256(body).digest(),
        )
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Coderunner-Proof: " + proof.encode() + b"\r\n\r\n" + body
        )
        conn.recv(65536)  # the request it dies of: read, never answered
        listener.close()  # the agent is gone: nothing listens any more
        os.unlink(path)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = AgentClient(key=key, uds=path)
    assert client.request("GET", "/a").content == b"ok"
    with pytest.raises(AgentUnreachable) as info:
        client.request("POST", "/run")
    assert info.value.sent is True
    thread.join(5)
