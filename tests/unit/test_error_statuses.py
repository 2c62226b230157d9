"""Every coderunner error survives HTTP: the server's answer for it comes back, in every client, as the same error.

The status table is :data:`coderunner.errors.HTTP_STATUS` (plus the browser's); the way back is
:func:`coderunner.errors.error_for_answer`. These run the real server handler in process (no socket) and feed
its answers to the real clients: the generic function, the InstaVM wire and the sandbox agent's client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed")

from fastapi.testclient import TestClient

import coderunner.browser.errors as browser_errors
from coderunner.backends.instavm import InstaVMBackend
from coderunner.backends.instavm.protocol import HttpRequest
from coderunner.backends.sandbox.agent_client import error_for
from coderunner.errors import (
    HTTP_STATUS,
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    CodeRunnerError,
    ConfigurationError,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
    RateLimitError,
    UnsupportedOperationError,
    error_for_answer,
)
from coderunner.server.app import STATUS_FOR_CODE, create_app, http_status_for
from coderunner.testing import AsyncFakeBackend


def _tree(cls: type[CodeRunnerError] = CodeRunnerError) -> Iterator[type[CodeRunnerError]]:
    # Only the classes that own a code (AnswerTooLarge, say, is a BackendError under another name), and only
    # coderunner's own: other tests may subclass the tree.
    if "code" in vars(cls) and cls.__module__.startswith("coderunner."):
        yield cls
    for sub in cls.__subclasses__():
        yield from _tree(sub)


ALL = sorted(set(_tree()), key=lambda c: c.code)
CORE = [c for c in ALL if c.__module__ == "coderunner.errors"]
BROWSER = [c for c in ALL if c.__module__ == browser_errors.__name__]

# The two classes that cannot come back as themselves.
COMES_BACK_AS: dict[type[CodeRunnerError], type[CodeRunnerError]] = {
    # Its constructor takes (package, extra, purpose), which no answer carries: the parent, same message.
    MissingDependencyError: ConfigurationError,
    # The base code names no particular failure: the status decides, and a 500 is the server failing.
    CodeRunnerError: BackendError,
}


def _raise(cls: type[CodeRunnerError]) -> CodeRunnerError:
    if cls is MissingDependencyError:
        return MissingDependencyError("fastapi", "server", "The REST server")
    return cls(f"a {cls.__name__} for the test")


@pytest.fixture(scope="module")
def server() -> Iterator[TestClient]:
    """The real REST app (its error handler, its middleware) with one more route raising the error of a code."""
    app = create_app(backend=AsyncFakeBackend(), db_path=":memory:", mcp=False)
    by_code = {cls.code: cls for cls in ALL}

    @app.get("/raise/{code}")
    async def raise_it(code: str) -> None:
        raise _raise(by_code[code])

    # An IP address as the host: a server without an API key refuses unknown host names (DNS rebinding).
    yield TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def instavm() -> Iterator[InstaVMBackend]:
    """The InstaVM wire, used only for its I/O-free answer parser."""
    wire = InstaVMBackend(base_url="http://127.0.0.1:9", api_key="k", max_retries=0)
    yield wire
    wire.close()


def test_the_tree_and_the_table_match() -> None:
    assert CORE and BROWSER
    assert set(HTTP_STATUS) == {cls.code for cls in CORE}
    assert set(browser_errors.HTTP_STATUS) == {cls.code for cls in BROWSER}
    # Nothing reaches the server's "codes not listed give 500" by being forgotten.
    assert set(STATUS_FOR_CODE) == {cls.code for cls in ALL}


def test_the_statuses_are_a_contract() -> None:
    # Clients (and the OpenAPI document) rely on these: changing one is a breaking change, made here on purpose.
    assert STATUS_FOR_CODE == {
        "error": 500,
        "configuration": 400,
        "missing_dependency": 501,
        "invalid_request": 400,
        "path_not_allowed": 400,
        "permission_denied": 403,
        "not_found": 404,
        "session_not_found": 404,
        "task_not_found": 404,
        "file_not_found": 404,
        "capacity": 429,
        "backend": 502,
        "backend_unavailable": 503,
        "authentication": 502,
        "rate_limited": 429,
        "unsupported": 501,
        "browser": 500,
        "browser_session_lost": 410,
        "element_not_found": 404,
        "invalid_selector": 400,
        "element_not_interactable": 400,
        "browser_timeout": 408,
        "navigation_failed": 502,
        "destination_blocked": 403,
    }


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.code)
def test_each_error_goes_to_its_status_and_back(
    cls: type[CodeRunnerError], server: TestClient, instavm: InstaVMBackend
) -> None:
    sent = _raise(cls)
    response = server.get(f"/raise/{cls.code}")
    body: dict[str, Any] = response.json()
    assert response.status_code == http_status_for(sent) == STATUS_FOR_CODE[cls.code]
    assert (body["code"], body["retryable"]) == (cls.code, cls.retryable)
    assert sent.message in body["detail"]

    expected = COMES_BACK_AS.get(cls, cls)
    rebuilt = {
        "error_for_answer": error_for_answer(response.status_code, body["code"], body["detail"]),
        "agent client": error_for(response.status_code, response.content),
    }
    with pytest.raises(CodeRunnerError) as raised:
        instavm.answer(HttpRequest("POST", "/v1/anything"), response.status_code, response.content)
    rebuilt["instavm"] = raised.value
    for client, error in rebuilt.items():
        assert type(error) is expected, (client, error)
        assert error.code == expected.code and error.retryable == expected.retryable, client
        assert sent.message in error.message, client


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (408, BackendError),
        (410, BackendError),
        (413, InvalidRequestError),
        (422, InvalidRequestError),
        (429, RateLimitError),
        (500, BackendError),
        (501, UnsupportedOperationError),
        (502, BackendError),
        (503, BackendUnavailableError),
        (504, BackendError),
    ],
)
@pytest.mark.parametrize("code", [None, "error", "a_code_of_a_newer_version", "route_not_found"])
def test_without_a_code_of_the_tree_the_status_decides(
    status: int, expected: type[CodeRunnerError], code: str | None
) -> None:
    error = error_for_answer(status, code, "why")
    assert type(error) is expected and error.message == "why"
    seen: list[type[CodeRunnerError]] = []

    def worded(cls: type[CodeRunnerError]) -> CodeRunnerError:
        seen.append(cls)
        return cls(f"{status}: why")

    assert error_for_answer(status, code, "why", by_status=worded).message == f"{status}: why"
    assert seen == [expected]


@pytest.mark.parametrize("cls", [c for c in ALL if c not in COMES_BACK_AS], ids=lambda c: c.code)
def test_a_known_code_wins_over_any_status(cls: type[CodeRunnerError]) -> None:
    def refuse(_: type[CodeRunnerError]) -> CodeRunnerError:
        raise AssertionError("the status must not decide when the code names a class")

    for status in (400, 403, 404, 429, 500, 503):
        error = error_for_answer(status, cls.code, "why", by_status=refuse)
        assert type(error) is cls and error.message == "why"


def test_the_agent_client_reads_the_servers_json_only() -> None:
    # What the agent client keeps as its own (the agent is the host's own server): a route code or the base
    # code means the agent broke, and an answer that is not JSON is a BackendError carrying its status and text;
    # a code this version does not know goes by the status, as for every client (not a bare CodeRunnerError).
    for code in ("route_not_found", "method_not_allowed", "error"):
        error = error_for(404, json.dumps({"detail": "gone", "code": code}).encode())
        assert type(error) is BackendError and error.message == "The sandbox's agent answered HTTP 404: gone"
    error = error_for(502, b"<html>Bad Gateway</html>")
    assert (
        type(error) is BackendError
        and error.message == "The sandbox's agent answered HTTP 502: <html>Bad Gateway</html>"
    )
    error = error_for(403, json.dumps({"detail": "foreign origin", "code": "forbidden"}).encode())
    assert type(error) is AuthenticationError and error.message == "foreign origin"
