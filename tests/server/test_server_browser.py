"""Acceptance: the unmodified ``instavm`` SDK's browser manager against a live ``coderunner serve``.

Real Chromium (through the server's in-process backend) on pages this test serves on 127.0.0.1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from browser_helpers import PageServer, chromium_missing, png_size, serve_pages

from coderunner.server.commands import browser_backend_options

if TYPE_CHECKING:
    from conftest import LiveServer
    from instavm import InstaVM

_MISSING = chromium_missing()


@pytest.fixture(scope="module")
def sdk() -> Any:
    """The instavm SDK module (skipped, with the reason, when the dev extra is missing)."""
    return pytest.importorskip("instavm", reason="the instavm SDK is in the dev extra")


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    if _MISSING:
        pytest.skip(_MISSING)
    with serve_pages() as server:
        yield server


@pytest.fixture(scope="module")
def cloud(sdk: Any, keyed_server: LiveServer, pages: PageServer) -> InstaVM:
    client: InstaVM = sdk.InstaVM(
        api_key=keyed_server.api_key, base_url=keyed_server.base_url, auto_start_session=False
    )
    return client


@pytest.mark.browser
def test_sdk_browser_session_every_action(cloud: InstaVM, pages: PageServer) -> None:
    page = cloud.browser.create_session(viewport_width=800, viewport_height=600)
    assert page.session_id
    try:
        nav = page.navigate(pages.url("/form"))
        assert nav["success"] is True
        assert nav["data"]["url"] == pages.url("/form") and nav["data"]["title"] == "Form page"

        assert page.fill("#name", "agent")["success"] is True
        assert page.type("#notes", "hi", delay=5)["success"] is True
        assert page.click("#go")["success"] is True
        assert page.wait_for("visible", "#result", timeout=5_000)["success"] is True
        assert page.scroll(x=0, y=50)["success"] is True
        assert page.scroll(selector="#go")["success"] is True

        result = page.extract_elements("#result", ["text"])
        assert result[0]["text"] == "Hello, agent"
        notes = page.extract_elements("#notes", ["value"])
        assert notes[0]["attributes"]["value"] == "hi"

        width, height = png_size(page.screenshot(full_page=False))
        assert (width, height) == (800, 600)
        assert page.screenshot(format="jpeg", quality=50)  # base64 JPEG

        content = page.extract_content()
        assert content["readable_content"]["title"] == "Form page"
        assert "Hello, agent" in content["readable_content"]["content"]
        selectors = [e["selector"] for e in content["interactive_elements"]]
        assert "#go" in selectors

        listed = cloud.list_browser_sessions()
        assert page.session_id in [s["session_id"] for s in listed]
        info = cloud.get_browser_session(page.session_id)
        assert info["viewport"] == {"width": 800, "height": 600}
    finally:
        assert page.close() is True
    assert page.session_id not in [s["session_id"] for s in cloud.list_browser_sessions()]
    # Closing again answers 200 (or the SDK's 404 == "already closed").
    assert cloud.close_browser_session(page.session_id) is True


@pytest.mark.browser
def test_sdk_browser_manager_default_session(cloud: InstaVM, pages: PageServer) -> None:
    manager = cloud.browser
    assert manager.navigate(pages.url("/links"))["data"]["title"] == "Links page"
    links = manager.extract_elements("a.more", attributes=["href"])
    assert links[0]["attributes"]["href"] == pages.url("/form?from=links")
    assert manager.extract_content()["readable_content"]["url"] == pages.url("/links")
    manager.close()


@pytest.mark.browser
def test_sdk_browser_errors(sdk: Any, cloud: InstaVM, pages: PageServer) -> None:
    exc = sdk.exceptions
    page = cloud.browser.create_session()
    try:
        page.navigate(pages.url("/form"))
        with pytest.raises(exc.ElementNotFoundError):
            page.click("#does-not-exist", timeout=500)
        with pytest.raises(exc.BrowserTimeoutError):
            page.click("#hidden", timeout=500)  # exists but never visible: a timeout, not "not found"
        with pytest.raises(exc.BrowserTimeoutError):
            page.wait_for("visible", "#never", timeout=500)
        with pytest.raises(exc.BrowserTimeoutError):
            page.navigate(pages.url("/never"), wait_timeout=1_000)
        # The session (and the browser) is still usable after each error.
        assert page.navigate(pages.url("/form"))["data"]["title"] == "Form page"
    finally:
        page.close()
    with pytest.raises(exc.BrowserSessionError):
        cloud.browser_navigate(pages.url("/form"), session_id="no-such-session")
    with pytest.raises(exc.BrowserSessionError):
        cloud.get_browser_session("no-such-session")


@pytest.mark.browser
def test_sdk_local_mode_url_based_navigate_and_content(sdk: Any, open_server: LiveServer, pages: PageServer) -> None:
    local = sdk.InstaVM(local=True, local_url=open_server.base_url)
    nav = local.browser_navigate(pages.url("/links"))
    assert nav["success"] is True and nav["data"]["title"] == "Links page"
    content = local.browser_extract_content(url=pages.url("/form"))
    assert content["readable_content"]["title"] == "Form page"
    assert any(a["selector"] for a in content["content_anchors"])
    # The manager's convenience method, as local-mode users call it.
    assert local.browser.extract_content(url=pages.url("/links"))["readable_content"]["title"] == "Links page"


@pytest.mark.browser
def test_browser_error_bodies_are_json_with_codes(keyed_server: LiveServer, pages: PageServer) -> None:
    with keyed_server.client() as http:
        sid = http.post("/v1/browser/sessions/", json={}).json()["session_id"]
        try:
            http.post("/v1/browser/interactions/navigate", json={"session_id": sid, "url": pages.url("/form")})
            missing = http.post(
                "/v1/browser/interactions/click", json={"session_id": sid, "selector": "#nope", "timeout": 300}
            )
            assert missing.status_code == 404 and missing.json()["code"] == "element_not_found"
            slow = http.post(
                "/v1/browser/interactions/wait",
                json={"session_id": sid, "condition": "visible", "selector": "#hidden", "timeout": 300},
            )
            assert slow.status_code == 408 and slow.json()["code"] == "browser_timeout"
            bad = http.post(
                "/v1/browser/interactions/click", json={"session_id": sid, "selector": "#[", "timeout": 300}
            )
            assert bad.status_code == 400 and bad.json()["code"] == "invalid_selector"
            endless = http.post(
                "/v1/browser/interactions/click", json={"session_id": sid, "selector": "#go", "timeout": 10**9}
            )
            assert endless.status_code == 422 and "timeout" in endless.json()["detail"]
            empty = http.post("/v1/browser/interactions/content", json={})
            assert empty.status_code == 400 and empty.json()["code"] == "invalid_request"
        finally:
            closed = http.delete(f"/v1/browser/sessions/{sid}")
            assert closed.status_code == 200 and closed.json() == {"session_id": sid, "closed": True}
        gone = http.get(f"/v1/browser/sessions/{sid}")
        assert gone.status_code == 404 and gone.json()["code"] == "session_not_found"


def test_public_bind_hardens_the_inprocess_browser() -> None:
    assert browser_backend_options("inprocess", "127.0.0.1") == {}
    assert browser_backend_options("inprocess", "localhost") == {}
    assert browser_backend_options("docker", "127.0.0.1") == {}
    assert browser_backend_options("instavm", "0.0.0.0") == {}  # its browser is another server's
    for backend in ("inprocess", "docker"):  # the Docker browser container may be given a network
        settings = browser_backend_options(backend, "0.0.0.0")["browser_settings"]
        assert settings.public_bind is True
        assert not settings.policy().check_address("127.0.0.1").allowed


def test_browser_routes_are_in_the_openapi_document(open_server: LiveServer) -> None:
    paths = httpx.get(open_server.base_url + "/openapi.json", timeout=30).json()["paths"]
    for route in ("/v1/browser/sessions", "/v1/browser/sessions/{session_id}", "/v1/browser/interactions/content"):
        assert route in paths


# -- the InstaVM backend's browser capability, against the same live server ----------------------------


@pytest.mark.browser
def test_instavm_backend_drives_the_server_browser(keyed_server: LiveServer, pages: PageServer) -> None:
    from coderunner import CodeRunner
    from coderunner.browser import BrowserBackend, BrowserTimeoutError, ElementNotFoundError

    with CodeRunner(backend="instavm", base_url=keyed_server.base_url, api_key=keyed_server.api_key) as runner:
        assert isinstance(runner.backend, BrowserBackend)
        with runner.browser.create_session(viewport_width=640, viewport_height=480) as page:
            nav = page.navigate(pages.url("/form"))
            assert nav.success and nav.action == "navigate" and nav.data["title"] == "Form page"
            page.fill("#name", "remote")
            page.type("#notes", "ok", delay=5)
            page.click("#go")
            assert page.wait_for("visible", "#result", timeout=5_000).action == "wait_for"
            assert page.extract_elements("#result")[0].text == "Hello, remote"
            assert page.scroll(x=0, y=10).success
            assert png_size(page.screenshot(full_page=False)) == (640, 480)
            content = page.extract_content()
            assert content.readable_content.title == "Form page"
            assert any(e.selector == "#go" for e in content.interactive_elements)
            assert page.get_info().viewport.width == 640
            assert page.session_id in [s.session_id for s in runner.browser.list_sessions()]

            with pytest.raises(ElementNotFoundError):
                page.click("#missing", timeout=300)
            with pytest.raises(BrowserTimeoutError):
                page.wait_for("visible", "#hidden", timeout=300)
        # The default session of the manager's shortcuts, also remote.
        assert runner.browser.navigate(pages.url("/links")).data["title"] == "Links page"
        text = runner.browser.extract_content(url=pages.url("/late")).readable_content.content
        assert "Loading" in text or "Arrived late" in text
    # Closing the runner closed the sessions it opened on the server.
    with keyed_server.client() as http:
        assert page.session_id not in [s["session_id"] for s in http.get("/v1/browser/sessions/").json()["sessions"]]


@pytest.mark.browser
async def test_async_instavm_backend_drives_the_server_browser(keyed_server: LiveServer, pages: PageServer) -> None:
    from coderunner import AsyncCodeRunner
    from coderunner.errors import SessionNotFoundError

    async with AsyncCodeRunner(backend="instavm", base_url=keyed_server.base_url, api_key=keyed_server.api_key) as r:
        page = await r.browser.create_session()
        assert (await page.navigate(pages.url("/links"))).data["title"] == "Links page"
        links = await page.extract_elements("a.more", ["href"])
        assert links[0].attributes["href"] == pages.url("/form?from=links")
        await page.close()
        with pytest.raises(SessionNotFoundError):
            await r.browser.get_session(page.session_id)


def test_instavm_backend_without_a_server_browser_is_unsupported(live_server_factory: Any) -> None:
    from coderunner import CodeRunner
    from coderunner.errors import UnsupportedOperationError

    server = live_server_factory(env={"CODERUNNER_BACKEND": "fake"})
    with (
        CodeRunner(backend="instavm", base_url=server.base_url) as runner,
        pytest.raises(UnsupportedOperationError, match="no browser capability"),
    ):
        runner.browser.navigate("http://127.0.0.1:1/")
