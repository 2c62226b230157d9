"""A client's mistakes are 4xx naming the rule, never 5xx, and the OpenAPI document states the rules (issue 11, item 9).

Every test talks to a live ``coderunner serve`` subprocess on 127.0.0.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import LiveServer

THIRTY_DAYS = 30 * 24 * 3600


@pytest.fixture
def http(open_server: LiveServer) -> Any:
    with open_server.client() as client:
        yield client


@pytest.fixture
def sid(http: httpx.Client) -> Any:
    session_id = http.post("/sessions", json={}).json()["session_id"]
    yield session_id
    http.delete(f"/sessions/{session_id}")


def _rule(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    for needle in needles:
        assert needle in body["detail"], body["detail"]
    return body


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/sessions", {"lifetime": 1e12}, "lifetime"),
        ("/sessions", {"idle_timeout": 1e12}, "idle_timeout"),
        ("/sessions", {"lifetime": THIRTY_DAYS + 1}, "lifetime"),
        ("/v1/sessions/session", {"idle_timeout": 1e12}, "idle_timeout"),
        ("/v1/browser/sessions", {"idle_timeout": 1e12}, "idle_timeout"),
        ("/v1/browser/sessions", {"idle_timeout": 1e-300}, "idle_timeout"),
    ],
)
def test_absurd_session_durations_are_422_naming_the_bound(
    http: httpx.Client, path: str, body: dict[str, Any], field: str
) -> None:
    """``{"lifetime": 1e12}`` was a 500 (a datetime overflow in the engine); now a 422 naming the bound."""
    _rule(http.post(path, json=body), 422, f"'{field}'", "1" if body[field] < 1 else str(THIRTY_DAYS))


def test_thirty_days_is_still_accepted(http: httpx.Client) -> None:
    info = http.post("/sessions", json={"lifetime": THIRTY_DAYS, "idle_timeout": THIRTY_DAYS})
    assert info.status_code == 201, info.text
    http.delete(f"/sessions/{info.json()['session_id']}")


@pytest.mark.parametrize("agent", ["Mozilla/5.0\r\nX-Evil: 1", "a\x00b", "\x04ua", "   "])
def test_user_agent_with_control_characters_is_422(http: httpx.Client, agent: str) -> None:
    """Chromium refused these deep inside (a retryable 503 before); the request model refuses them now."""
    response = http.post("/v1/browser/sessions", json={"user_agent": agent})
    _rule(response, 422, "'user_agent'")
    assert response.json()["retryable"] is False


def test_integral_numbers_count_as_integers(http: httpx.Client) -> None:
    """JSON Schema's integer includes 60.0, so the server accepts it; 60.5, "60" and true stay 422."""
    ok = http.post("/v1/sessions/session", json={"vm_lifetime_seconds": 60.0, "vcpu_count": 2.0})
    assert ok.status_code == 200, ok.text
    assert ok.json()["vm_lifetime_seconds"] == 60 and ok.json()["vcpu_count"] == 2
    http.post("/kill", json={"session_id": ok.json()["session_id"]})
    for bad in (60.5, "60", True):
        _rule(http.post("/v1/sessions/session", json={"vm_lifetime_seconds": bad}), 422, "'vm_lifetime_seconds'")


def test_command_and_code_are_one_or_the_other(http: httpx.Client) -> None:
    """The document says oneOf(command, code); sending both (even equal) is the 422 it promises."""
    _rule(http.post("/execute", json={"command": "0", "code": "0"}), 422, "only one of them")
    assert http.post("/execute", json={"code": "print(1)"}).json()["stdout"] == "1\n"


def test_environment_variable_names_are_checked_before_a_session_starts(http: httpx.Client) -> None:
    _rule(http.post("/sessions", json={"env": {"A=B": "1"}}), 422, "'A=B'", "'='")
    _rule(http.post("/sessions", json={"env": {"": "1"}}), 422, "non-empty")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/jobs", {"GET", "POST"}),
        ("PATCH", "/jobs/some-id", {"GET", "DELETE"}),
        ("DELETE", "/execute", {"POST"}),
        ("POST", "/sessions/some-id/files/content", {"GET", "PUT"}),
    ],
)
def test_405_names_every_method_of_the_path(http: httpx.Client, method: str, path: str, allowed: set[str]) -> None:
    """Starlette named only the first matching route's methods (``OPTIONS /jobs`` said ``Allow: POST``)."""
    response = http.request(method, path)
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert response.json()["code"] == "method_not_allowed"


def test_openapi_states_the_bounds_and_the_errors(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]

    def prop(model: str, name: str) -> dict[str, Any]:
        field: dict[str, Any] = schemas[model]["properties"][name]
        return field

    lifetime = prop("SessionCreateRequest", "lifetime")["anyOf"][0]
    assert lifetime["maximum"] == THIRTY_DAYS and lifetime["minimum"] == 1
    assert prop("WireSessionRequest", "idle_timeout")["anyOf"][0]["maximum"] == THIRTY_DAYS
    assert prop("WireSessionRequest", "vcpu_count")["anyOf"][0]["minimum"] == 1  # not pydantic's raw "ge"
    assert "python" in prop("SessionCreateRequest", "language")["enum"]
    assert "pattern" in prop("BrowserSessionRequest", "user_agent")
    assert prop("BrowserClickRequest", "timeout")["exclusiveMinimum"] == 0
    assert "propertyNames" in prop("SessionCreateRequest", "env")["anyOf"][0]
    assert {"oneOf"} <= set(schemas["ExecuteRequest"])

    paths = doc["paths"]
    assert {"401", "408", "413", "422", "429"} <= set(paths["/sessions"]["post"]["responses"])
    assert {"401", "413", "429"} <= set(paths["/v1/sessions/session"]["post"]["responses"])
    assert {"200", "401", "404"} <= set(paths["/jobs/{job_id}/status"]["get"]["responses"])
    (status,) = (p for p in paths["/jobs"]["get"]["parameters"] if p["name"] == "status")
    assert "cancelled" in status["schema"]["anyOf"][0].get("enum", status["schema"].get("enum", []))
    (path,) = (p for p in paths["/sessions/{session_id}/files/content"]["get"]["parameters"] if p["name"] == "path")
    assert path["schema"]["minLength"] == 1 and path["schema"]["maxLength"] == 4096


def test_file_names_over_255_bytes_are_400(http: httpx.Client, sid: str) -> None:
    long = "a" * 256
    for response in (
        http.put(f"/sessions/{sid}/files/content", params={"path": long}, content=b"x"),
        http.get(f"/sessions/{sid}/files/content", params={"path": long}),
        http.get(f"/sessions/{sid}/files", params={"path": long}),
        http.post("/download", data={"session_id": sid, "filename": long}),
        http.post("/upload", data={"session_id": sid, "remote_path": long}, files={"file": ("x.txt", b"hi")}),
    ):
        _rule(response, 400, "255")


def test_a_path_through_an_existing_file_is_400(http: httpx.Client, sid: str) -> None:
    assert http.put(f"/sessions/{sid}/files/content", params={"path": "a.txt"}, content=b"x").status_code == 200
    for response in (
        http.put(f"/sessions/{sid}/files/content", params={"path": "a.txt/b"}, content=b"x"),
        http.post("/upload", data={"session_id": sid, "remote_path": "a.txt/b"}, files={"file": ("x.txt", b"hi")}),
    ):
        _rule(response, 400, "'a.txt'", "not a directory")
