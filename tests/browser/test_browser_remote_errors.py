"""A remote browser's errors come back as what they are: an egress refusal is the policy error, not an auth error.

Regression tests for issue 11 item 13 (its client half): the InstaVM client (also the Docker backend's
driver of its browser container) mapped every HTTP 403 to AuthenticationError ("check INSTAVM_API_KEY")
before reading the ``code`` the server sends, so a destination the browser's egress policy refused
(403 ``destination_blocked``) looked like a bad key. Against a live ``coderunner serve`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import DENIED, PageServer

from coderunner import AsyncCodeRunner, CodeRunner
from coderunner.backends.instavm import InstaVMBackend
from coderunner.backends.instavm.protocol import HttpRequest
from coderunner.browser import (
    BrowserTimeoutError,
    DestinationBlockedError,
    ElementNotFoundError,
    NavigationError,
)
from coderunner.errors import (
    AuthenticationError,
    BackendError,
    CodeRunnerError,
    InvalidRequestError,
    RateLimitError,
    SessionNotFoundError,
    UnsupportedOperationError,
)

_KEY = "remote-errors-key-0123"
_NAVIGATE = HttpRequest("POST", "/v1/browser/interactions/navigate", json={})


# -- the mapping, on the client's own (I/O-free) answer parser ------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected", "says"),
    [
        # coderunner serve: the body's code decides.
        (403, {"detail": "Navigation to x was refused.", "code": "destination_blocked"}, DestinationBlockedError, ""),
        (502, {"detail": "Could not load x.", "code": "navigation_failed"}, NavigationError, ""),
        (404, {"detail": "No element matches '#x'.", "code": "element_not_found"}, ElementNotFoundError, ""),
        (408, {"detail": "took too long", "code": "browser_timeout"}, BrowserTimeoutError, ""),
        (404, {"detail": "gone", "code": "session_not_found"}, SessionNotFoundError, ""),
        (401, {"detail": "Missing or invalid X-API-Key.", "code": "authentication"}, AuthenticationError, "API_KEY"),
        # The server's own backend refused the server's credentials (a 502, not the caller's key).
        (502, {"detail": "The server's backend rejected ...", "code": "authentication"}, AuthenticationError, ""),
        (404, {"detail": "No route", "code": "route_not_found"}, UnsupportedOperationError, ""),
        # A code this client does not know: the status decides (403 here: the server refused the caller).
        (403, {"detail": "Requests from other web origins are refused.", "code": "forbidden"}, AuthenticationError, ""),
        # The InstaVM cloud's shapes (no code): by status, as before.
        (401, {"detail": "Invalid API key"}, AuthenticationError, "API_KEY"),
        (403, {"detail": "Forbidden"}, AuthenticationError, "API_KEY"),
        (408, {"detail": "Timeout"}, BrowserTimeoutError, ""),
        (429, {"detail": "Too many requests"}, RateLimitError, ""),
        (422, {"detail": [{"loc": ["body", "url"], "msg": "field required"}]}, InvalidRequestError, ""),
        (500, {"detail": "boom"}, BackendError, ""),
        (403, None, AuthenticationError, "API_KEY"),
    ],
)
def test_errors_map_by_code_then_by_status(
    status: int, body: dict[str, Any] | None, expected: type[CodeRunnerError], says: str
) -> None:
    wire = InstaVMBackend(base_url="http://127.0.0.1:9", api_key="k", max_retries=0)
    try:
        content = b"<html>Forbidden</html>" if body is None else json.dumps(body).encode()
        with pytest.raises(expected) as info:
            wire.answer(_NAVIGATE, status, content)
        assert type(info.value) is expected, repr(info.value)
        assert says in info.value.message
        if expected is not AuthenticationError:
            assert "INSTAVM_API_KEY" not in info.value.message
    finally:
        wire.close()


# -- against a live coderunner serve ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(needs_chromium: None) -> Iterator[Any]:
    helpers = runpy.run_path(str(Path(__file__).resolve().parents[1] / "server" / "conftest.py"))
    live = helpers["start_live_server"](api_key=_KEY, env={"CODERUNNER_BROWSER_DENY": f"{DENIED}/32"})
    yield live
    live.stop()
    assert "Traceback" not in live.log()


@pytest.fixture
def runner(server: Any) -> Iterator[CodeRunner]:
    with CodeRunner(backend="instavm", base_url=server.base_url, api_key=_KEY) as r:
        yield r


@pytest.mark.browser
def test_a_refused_destination_is_the_policy_error_not_an_auth_error(runner: CodeRunner, pages: PageServer) -> None:
    with runner.browser.create_session() as page:
        for url in (
            "http://169.254.169.254/latest/meta-data/",  # refused before any traffic
            f"http://{DENIED}:{pages.port}/direct",  # the deny rule
            pages.url(f"/redirect?to=http://{DENIED}:{pages.port}/secret"),  # by the proxy, on the redirect
        ):
            with pytest.raises(DestinationBlockedError) as info:
                page.navigate(url)
            assert info.value.code == "destination_blocked"
            assert "INSTAVM_API_KEY" not in info.value.message and "refused" in info.value.message
        assert page.navigate(pages.url("/form"))["data"]["title"] == "Form page"


@pytest.mark.browser
def test_after_a_refused_redirect_each_remote_navigation_reports_its_own_outcome(
    runner: CodeRunner, pages: PageServer
) -> None:
    with runner.browser.create_session() as page:
        with pytest.raises(DestinationBlockedError):
            page.navigate(pages.url(f"/redirect?to=https://{DENIED}:{pages.port}/secret"))
        for path, title, status in (("/form", "Form page", 200), ("/nope", "404", 404), ("/links", "Links page", 200)):
            data = page.navigate(pages.url(path))["data"]
            assert (data["url"], data["title"], data["status"]) == (pages.url(path), title, status)


@pytest.mark.browser
async def test_the_async_client_maps_the_same_way(server: Any, pages: PageServer) -> None:
    async with AsyncCodeRunner(backend="instavm", base_url=server.base_url, api_key=_KEY) as r:
        page = await r.browser.create_session()
        try:
            with pytest.raises(DestinationBlockedError):
                await page.navigate(f"http://{DENIED}:{pages.port}/direct")
            assert (await page.navigate(pages.url("/links"))).data["title"] == "Links page"
        finally:
            await page.close()


def test_a_wrong_key_is_still_an_auth_error(server: Any) -> None:
    with (
        CodeRunner(backend="instavm", base_url=server.base_url, api_key="not-the-key") as r,
        pytest.raises(AuthenticationError, match="INSTAVM_API_KEY"),
    ):
        r.browser.create_session()
