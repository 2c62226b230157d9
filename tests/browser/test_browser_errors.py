"""Each failure is a distinct, clear error, and the browser stays up afterwards."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from browser_helpers import DENIED, PageServer

from coderunner.backends.inprocess import InProcessBackend
from coderunner.browser import (
    BrowserManager,
    BrowserSession,
    BrowserTimeoutError,
    DestinationBlockedError,
    ElementNotFoundError,
    ElementNotInteractableError,
    InvalidSelectorError,
    NavigationError,
    browser_manager_for,
)
from coderunner.errors import InvalidRequestError, NotFoundError, SessionNotFoundError, error_for_code

pytestmark = pytest.mark.browser


@pytest.fixture
def manager(backend: InProcessBackend) -> Iterator[BrowserManager]:
    m = browser_manager_for(backend)
    yield m
    m.close_all()


@pytest.fixture
def page(manager: BrowserManager, pages: PageServer, backend: InProcessBackend) -> Iterator[BrowserSession]:
    pid = backend.browser_engine.browser_pid
    with manager.create_session() as session:
        session.navigate(pages.url("/form"))
        yield session
        # After every error the same browser still works for this session.
        assert session.navigate(pages.url("/links"))["data"]["title"] == "Links page"
    assert pid is None or backend.browser_engine.browser_pid == pid


@pytest.mark.parametrize("selector", ["##bad", "div[", "foo=bar", "xpath=//["])
def test_bad_selector(page: BrowserSession, selector: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidSelectorError) as info:
        page.click(selector, timeout=5000)
    assert time.monotonic() - started < 2, "a syntax error must not wait for the timeout"
    assert info.value.code == "invalid_selector"
    assert isinstance(info.value, InvalidRequestError)
    assert repr(selector) in info.value.message


def test_empty_selector(page: BrowserSession) -> None:
    with pytest.raises(InvalidSelectorError):
        page.fill("", "x")


def test_missing_element_is_not_found(page: BrowserSession) -> None:
    started = time.monotonic()
    with pytest.raises(ElementNotFoundError) as info:
        page.click("#nope", timeout=400)
    assert 0.35 < time.monotonic() - started < 3
    assert info.value.code == "element_not_found"
    assert isinstance(info.value, NotFoundError)
    assert "'#nope'" in info.value.message and "extract_content()" in info.value.message
    with pytest.raises(ElementNotFoundError):
        page.fill("#nope", "x", timeout=200)
    with pytest.raises(ElementNotFoundError):
        page.type("#nope", "x", timeout=200)


def test_present_but_not_actionable_is_a_timeout(page: BrowserSession) -> None:
    with pytest.raises(BrowserTimeoutError) as info:
        page.click("#hidden", timeout=400)
    assert info.value.code == "browser_timeout" and info.value.retryable
    assert "not visible" in info.value.message
    with pytest.raises(BrowserTimeoutError) as info:
        page.click("#disabled", timeout=400)
    assert "not enabled" in info.value.message
    with pytest.raises(ElementNotInteractableError) as wrong:
        page.fill("#go", "text into a button", timeout=400)
    assert isinstance(wrong.value, InvalidRequestError) and "'#go'" in wrong.value.message


def test_wait_for_timeouts(page: BrowserSession) -> None:
    with pytest.raises(BrowserTimeoutError) as info:
        page.wait_for("visible", "#never-there", timeout=300)
    assert "no element matches" in info.value.message
    with pytest.raises(BrowserTimeoutError):
        page.wait_for("hidden", "#go", timeout=300)


def test_page_that_never_loads_times_out(page: BrowserSession, pages: PageServer) -> None:
    with pytest.raises(BrowserTimeoutError) as info:
        page.navigate(pages.url("/never"), wait_timeout=800)
    assert "did not finish loading within 800 ms" in info.value.message
    # The part that arrived is usable.
    assert page.extract_elements("#partial")[0].text == "Partly here"
    with pytest.raises(BrowserTimeoutError):
        page.wait_for("load", timeout=300)


def test_connection_refused_is_a_navigation_error(page: BrowserSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    with pytest.raises(NavigationError) as info:
        page.navigate(f"http://127.0.0.1:{port}/")
    assert info.value.code == "navigation_failed"
    assert not isinstance(info.value, DestinationBlockedError)
    assert "connect" in info.value.message.lower() or "refused" in info.value.message.lower()


def test_refused_destinations(page: BrowserSession, pages: PageServer) -> None:
    # Cloud metadata: refused before any traffic is sent.
    with pytest.raises(DestinationBlockedError) as info:
        page.navigate("http://169.254.169.254/latest/meta-data/")
    assert info.value.code == "destination_blocked"
    assert "metadata" in info.value.message
    # A redirect from an allowed page to a denied address: the proxy checks every hop.
    with pytest.raises(DestinationBlockedError) as info:
        page.navigate(pages.url(f"/redirect?to=http://{DENIED}:{pages.port}/secret"))
    assert DENIED in info.value.message and "deny rule" in info.value.message
    # A denied sub-resource does not fail the page; the result names what was refused.
    result = page.navigate(pages.url(f"/with-blocked-image?src=http://{DENIED}:{pages.port}/x.png"))
    assert result["data"]["title"] == "img"
    assert result["data"]["blocked_requests"] == [f"http://{DENIED}:{pages.port}/x.png"]
    # Schemes other than http(s)/about/data(/file) are refused too.
    with pytest.raises(DestinationBlockedError):
        page.navigate("chrome://version")


def test_bad_arguments(page: BrowserSession) -> None:
    with pytest.raises(InvalidRequestError, match="no scheme"):
        page.navigate("example.com")
    with pytest.raises(InvalidRequestError, match="condition"):
        page.wait_for("clickable", "#go")
    with pytest.raises(InvalidRequestError, match="needs a selector"):
        page.wait_for("visible")
    with pytest.raises(InvalidRequestError, match="jpeg"):
        page.screenshot(quality=50)
    with pytest.raises(InvalidRequestError, match="format"):
        page.screenshot(format="gif")
    with pytest.raises(InvalidRequestError, match="clip"):
        page.screenshot(clip={"x": 0})
    with pytest.raises(InvalidRequestError, match="timeout"):
        page.click("#go", timeout=0)
    with pytest.raises(InvalidRequestError, match="scroll needs"):
        page.scroll()


@pytest.mark.parametrize("url", ["data:", "https://[::1/"])
def test_malformed_urls_are_the_callers_fault(page: BrowserSession, url: str) -> None:
    # Found by fuzzing the server: Chromium's ERR_INVALID_URL came back as a 502 (a failed destination).
    with pytest.raises(InvalidRequestError) as info:
        page.navigate(url)
    assert not isinstance(info.value, NavigationError)


def test_a_clip_outside_the_page_is_the_callers_fault(page: BrowserSession) -> None:
    with pytest.raises(InvalidRequestError, match="clip rectangle"):
        page.screenshot(clip={"x": 50_000, "y": 50_000, "width": 10, "height": 10})


def test_user_agent_must_be_one_header_line(manager: BrowserManager) -> None:
    for agent in ("bot\r\nX-Evil: 1", "bot\x00"):
        with pytest.raises(InvalidRequestError, match="line breaks"):
            manager.create_session(user_agent=agent)


def test_closed_and_unknown_sessions(manager: BrowserManager, pages: PageServer) -> None:
    session = manager.create_session()
    session.navigate(pages.url("/form"))
    session.close()
    with pytest.raises(SessionNotFoundError) as info:
        session.navigate(pages.url("/form"))
    assert "it was closed" in info.value.message
    session.close()  # idempotent
    manager.backend.browser_close_session(session.session_id)  # also a no-op on the backend
    with pytest.raises(SessionNotFoundError, match="does not exist"):
        manager.backend.browser_click("no-such-session", "#go")
    # The browser is still fine for everyone else.
    assert manager.navigate(pages.url("/form"))["data"]["title"] == "Form page"


def test_codes_round_trip_for_remote_clients() -> None:
    for cls in (
        ElementNotFoundError,
        ElementNotInteractableError,
        BrowserTimeoutError,
        DestinationBlockedError,
        InvalidSelectorError,
    ):
        rebuilt = error_for_code(cls.code, "m")
        assert type(rebuilt) is cls
