"""The REST server over raw HTTP: auth, the bad-input matrix, health, sessions, files, and the CLI guard rails."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import LiveServer


def _is_json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# -- auth ------------------------------------------------------------------------------------------


def test_health_is_open_and_complete(keyed_server: LiveServer) -> None:
    health = httpx.get(keyed_server.base_url + "/health").json()
    assert health["status"] == "ok"
    assert health["auth_required"] is True
    assert health["backend"] == "inprocess"
    assert health["checks"]["backend"]["status"] == "ok"
    assert health["checks"]["job_db"]["status"] == "ok"
    assert {"memory", "disk", "cpu_percent", "cpu_count"} <= set(health["host"])
    assert {"executions", "sessions_created", "jobs_submitted"} <= set(health["totals"])
    assert "pending" in health["jobs"] and "running" in health["jobs"]
    assert health["uptime_seconds"] > 0


def test_every_other_route_needs_the_key(keyed_server: LiveServer) -> None:
    url = keyed_server.base_url
    for method, path in [("POST", "/execute"), ("GET", "/jobs"), ("GET", "/languages"), ("GET", "/nope")]:
        body = _is_json_error(httpx.request(method, url + path, json={"command": "1"}), 401)
        assert body["code"] == "authentication"
        assert "X-API-Key" in body["detail"]
    _is_json_error(httpx.post(url + "/execute", json={"command": "1"}, headers={"X-API-Key": "wrong"}), 401)
    # The documentation is open; it holds no data.
    schema = httpx.get(url + "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schema["security"] == [{"ApiKey": []}]
    assert {"/execute", "/v1/sessions/session", "/jobs", "/upload"} <= set(schema["paths"])
    assert httpx.get(url + "/docs").status_code == 200


def test_session_creation_takes_the_key_in_the_body(keyed_server: LiveServer) -> None:
    url = keyed_server.base_url + "/v1/sessions/session"
    ok = httpx.post(url, json={"api_key": keyed_server.api_key})
    assert ok.status_code == 200, ok.text
    _is_json_error(httpx.post(url, json={"api_key": "wrong"}), 401)
    _is_json_error(httpx.post(url, json={}), 401)
    with keyed_server.client() as http:
        assert http.post("/kill", json={"session_id": ok.json()["session_id"]}).status_code == 200


def test_refuses_to_bind_every_interface_without_a_key(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODERUNNER_")}
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from coderunner.cli import main; sys.exit(main())", "serve", "--host",
         "0.0.0.0", "--port", "0", "--db", str(tmp_path / "db.sqlite3")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in out.stderr
    assert "--insecure" in out.stderr


def test_loopback_detection() -> None:
    from coderunner.server.commands import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("::")


# -- bad input -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(keyed_server: LiveServer) -> Any:
    with keyed_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def sid(http: httpx.Client) -> str:
    session_id: str = http.post("/v1/sessions/session", json={}).json()["session_id"]
    return session_id


BAD_EXECUTE: list[tuple[str, dict[str, Any] | str, int, str]] = [
    ("malformed json", '{"command": "print(1)"', 400, "Malformed JSON"),
    ("not an object", "[1, 2]", 422, "JSON object"),
    ("wrong type", {"command": 5}, 422, "'command'"),
    ("missing code", {"language": "python"}, 422, "'command'"),
    ("empty code", {"command": "   "}, 400, "code is empty"),
    ("unknown language", {"command": "1", "language": "cobol"}, 400, "Unsupported language 'cobol'"),
    ("timeout too small", {"command": "1", "timeout": 0}, 422, "'timeout'"),
    ("timeout too large", {"command": "1", "timeout": 601}, 422, "'timeout'"),
    ("timeout not a number", {"command": "1", "timeout": "5"}, 422, "'timeout'"),
    ("unknown session", {"command": "1", "session_id": "no-such-session"}, 404, "no-such-session"),
    ("lone surrogate", '{"command": "print(\\"\\ud800\\")"}', 422, "invalid Unicode"),
]


@pytest.mark.parametrize(("case", "body", "status", "needle"), BAD_EXECUTE, ids=[c[0] for c in BAD_EXECUTE])
def test_bad_execute_requests_are_clear_4xx(
    http: httpx.Client, case: str, body: dict[str, Any] | str, status: int, needle: str
) -> None:
    if isinstance(body, str):
        response = http.post("/execute", content=body, headers={"content-type": "application/json"})
    else:
        response = http.post("/execute", json=body)
    assert needle in _is_json_error(response, status)["detail"]


def test_other_bad_requests(http: httpx.Client, sid: str) -> None:
    assert _is_json_error(http.post("/execute", data={"command": "1"}), 422)["code"] == "invalid_request"
    assert _is_json_error(http.post("/v1/sessions/session", json={"vm_lifetime_seconds": 5}), 422)
    assert _is_json_error(http.get("/jobs/unknown/status"), 404)["code"] == "task_not_found"
    assert _is_json_error(http.get("/v1/executions/unknown"), 404)["code"] == "task_not_found"
    body = _is_json_error(http.post("/download", data={"filename": "missing.txt", "session_id": sid}), 404)
    assert body["code"] == "file_not_found"
    body = _is_json_error(http.post("/download", data={"filename": "/etc/passwd", "session_id": sid}), 400)
    assert body["code"] == "path_not_allowed"
    assert _is_json_error(http.post("/kill", json={"session_id": "nope"}), 404)["code"] == "session_not_found"
    assert _is_json_error(http.post("/kill", json={}), 422)
    assert _is_json_error(http.get("/no/such/route"), 404)["code"] == "route_not_found"
    assert _is_json_error(http.delete("/execute"), 405)
    assert _is_json_error(http.post("/jobs", json={"code": "1", "working_directory": "../up"}), 400)
    assert _is_json_error(http.get("/jobs", params={"status": "weird"}), 400)
    assert _is_json_error(http.get("/jobs", params={"limit": 0}), 422)
    surrogate = '{"code": "1", "metadata": {"k": "\\ud800"}}'
    assert _is_json_error(http.post("/jobs", content=surrogate, headers={"content-type": "application/json"}), 422)


def test_upload_paths_cannot_escape_the_session(http: httpx.Client, sid: str) -> None:
    files = {"file": ("/home/me/secret.txt", b"data")}
    for remote in ("../../outside.txt", "/etc/evil.txt", "../"):
        response = http.post("/upload", data={"remote_path": remote, "session_id": sid}, files=files)
        body = _is_json_error(response, 400)
        assert body["code"] == "path_not_allowed"
        assert "outside the session directory" in body["detail"]


def test_oversize_body_is_413(http: httpx.Client, sid: str) -> None:
    big = b"x" * (1024 * 1024 + 10)
    response = http.post("/upload", data={"remote_path": "big.bin", "session_id": sid}, files={"file": ("b", big)})
    assert "limit" in _is_json_error(response, 413)["detail"]

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b"y" * 100_000

    response = http.post("/execute", content=chunks(), headers={"content-type": "application/json"})
    _is_json_error(response, 413)


def test_server_still_serves_after_bad_input(http: httpx.Client, sid: str) -> None:
    out = http.post("/execute", json={"command": "print('still here')", "session_id": sid}).json()
    assert out["stdout"] == "still here\n"
    assert http.get("/health").json()["status"] == "ok"


# -- routes of our own -----------------------------------------------------------------------------


def test_double_slashes_and_trailing_slashes(http: httpx.Client, sid: str, keyed_server: LiveServer) -> None:
    # (An absolute URL: httpx would read a relative "//execute" as a host name.)
    url = keyed_server.base_url + "//execute"
    assert http.post(url, json={"command": "print(2)", "session_id": sid}).json()["stdout"] == "2\n"
    assert http.get("/health/").status_code == 200
    assert http.get("/v1/sessions/status/" + sid + "/").json()["vm_status"] == "active"


def test_languages(http: httpx.Client) -> None:
    langs = {item["name"]: item for item in http.get("/languages").json()["languages"]}
    assert set(langs) == {"python", "bash", "javascript"}
    assert langs["python"]["available"] is True
    assert "py" in langs["python"]["aliases"]


def test_session_routes_files_and_interrupt(http: httpx.Client) -> None:
    created = http.post("/sessions", json={"language": "python", "metadata": {"owner": "test"}})
    assert created.status_code == 201
    info = created.json()
    sid = info["session_id"]
    assert info["metadata"] == {"owner": "test"}
    assert sid in [s["session_id"] for s in http.get("/sessions").json()["sessions"]]
    assert http.get(f"/sessions/{sid}").json()["status"] == "active"

    written = http.put(f"/sessions/{sid}/files/content", params={"path": "dir/raw.bin"}, content=b"\x00\x01raw")
    assert written.json()["size"] == 5
    assert http.get(f"/sessions/{sid}/files/content", params={"path": "dir/raw.bin"}).content == b"\x00\x01raw"
    listing = http.get(f"/sessions/{sid}/files").json()["files"]
    assert [(f["path"], f["is_dir"]) for f in listing] == [("dir", True)]
    down = http.post("/download", data={"filename": "dir/raw.bin", "session_id": sid}).json()
    assert base64.b64decode(down["content"]) == b"\x00\x01raw"

    assert http.post(f"/sessions/{sid}/interrupt").json() == {"session_id": sid, "interrupted": False}
    assert http.delete(f"/sessions/{sid}").json()["status"] == "closed"
    assert _is_json_error(http.get(f"/sessions/{sid}"), 404)["code"] == "session_not_found"


def test_browser_routes_answer_501_json_without_the_capability(live_server_factory: Any) -> None:
    # The fake backend has no browser: every browser route says so, as JSON.
    server = live_server_factory(env={"CODERUNNER_BACKEND": "fake"})
    routes = [
        ("POST", "/v1/browser/sessions/"),
        ("GET", "/v1/browser/sessions/"),
        ("POST", "/v1/browser/interactions/navigate"),
        ("DELETE", "/v1/browser/sessions/abc"),
    ]
    with server.client() as http:
        for method, path in routes:
            body = _is_json_error(http.request(method, path, json={"url": "http://127.0.0.1:1/"}), 501)
            assert body["code"] == "unsupported" and "no browser capability" in body["detail"]


def test_capacity_is_a_json_429(live_server_factory: Any) -> None:
    server = live_server_factory(env={"CODERUNNER_MAX_SESSIONS": "1", "CODERUNNER_POOL_SIZE": "0"})
    with server.client() as client:
        first = client.post("/sessions", json={})
        assert first.status_code == 201
        response = client.post("/sessions", json={})
        body = _is_json_error(response, 429)
        assert body["code"] == "capacity" and body["retryable"] is True
        assert response.headers["retry-after"] == "5"
    server.stop()


def test_keyless_server_refuses_web_pages(open_server: LiveServer) -> None:
    url = open_server.base_url + "/execute"
    body = {"command": "print(1)"}
    # A page on another site (CSRF) or a DNS-rebinding name must not reach the code runner.
    refused = _is_json_error(httpx.post(url, json=body, headers={"Origin": "http://evil.example"}), 403)
    assert refused["code"] == "forbidden" and "--api-key" in refused["detail"]
    _is_json_error(httpx.post(url, json=body, headers={"Host": "evil.example:80"}), 403)
    # Programs, our own /docs page (same origin) and the SDK's default local host name are fine.
    assert httpx.post(url, json=body).status_code == 200
    assert httpx.post(url, json=body, headers={"Origin": open_server.base_url}).status_code == 200
    port = open_server.base_url.rsplit(":", 1)[1]
    assert httpx.post(url, json=body, headers={"Host": f"coderunner.local:{port}"}).status_code == 200


def test_mcp_is_served_behind_the_key(keyed_server: LiveServer) -> None:
    pytest.importorskip("mcp", reason="the MCP SDK is in the server extra")
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    accept = {"Accept": "application/json, text/event-stream"}
    _is_json_error(httpx.post(keyed_server.base_url + "/mcp", json=init, headers=accept), 401)
    response = httpx.post(keyed_server.base_url + "/mcp", json=init, headers={**accept, **keyed_server.headers})
    assert response.status_code == 200, response.text
    assert "coderunner" in response.text


def test_streaming_execute(open_server: LiveServer) -> None:
    import json

    code = "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
    code += "print('e', file=sys.stderr)"
    events = []
    with httpx.stream("POST", open_server.base_url + "/execute/stream", json={"command": code}) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in response.iter_lines() if line]
    outs = [e["text"] for e in events if e["type"] == "stdout"]
    assert len(outs) >= 2 and "".join(outs) == "0\n1\n2\n"
    assert [e["text"] for e in events if e["type"] == "stderr"] == ["e\n"]
    assert events[-1]["type"] == "result" and events[-1]["result"]["stdout"] == "0\n1\n2\n"
    missing = httpx.post(open_server.base_url + "/execute/stream", json={"command": "1", "session_id": "nope"})
    assert _is_json_error(missing, 404)["code"] == "session_not_found"


def test_small_responses_are_not_held_back_by_nagle(open_server: LiveServer) -> None:
    # Without TCP_NODELAY on the server's sockets every answer waited ~40 ms for a delayed ACK.
    import statistics
    import time

    with open_server.client() as client:
        samples = []
        for _ in range(15):
            started = time.perf_counter()
            assert client.get("/languages").status_code == 200
            samples.append(time.perf_counter() - started)
    assert statistics.median(samples) < 0.025
