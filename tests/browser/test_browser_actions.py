"""Every browser action through the sync BrowserManager over the InProcess backend, on real Chromium."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from browser_helpers import PageServer, png_size

from coderunner.backends.inprocess import InProcessBackend
from coderunner.browser import BrowserBackend, BrowserManager, BrowserSession, browser_manager_for

pytestmark = pytest.mark.browser


@pytest.fixture
def manager(backend: InProcessBackend) -> Iterator[BrowserManager]:
    m = browser_manager_for(backend)
    yield m
    m.close_all()


@pytest.fixture
def page(manager: BrowserManager) -> Iterator[BrowserSession]:
    with manager.create_session(viewport_width=1280, viewport_height=800) as session:
        yield session


def test_inprocess_has_the_capability(backend: InProcessBackend) -> None:
    assert isinstance(backend, BrowserBackend)


def test_form_flow(page: BrowserSession, pages: PageServer) -> None:
    result = page.navigate(pages.url("/form"))
    assert result["success"] is True
    assert result["data"]["title"] == "Form page"
    assert result["data"]["url"] == pages.url("/form")
    assert result["data"]["status"] == 200

    page.fill("#name", "agent")
    page.click("#go")
    page.wait_for("visible", "#result", timeout=5000)
    [element] = page.extract_elements("#result", ["text"])
    assert element["tag"] == "div"
    assert element["attributes"]["text"] == "Hello, agent"
    assert element.text == "Hello, agent"


def test_type_appends_key_by_key(page: BrowserSession, pages: PageServer) -> None:
    page.navigate(pages.url("/form"))
    page.fill("#notes", "ab")
    page.type("#notes", "cd", delay=5)
    [notes] = page.extract_elements("#notes", ["value"])
    assert notes.attributes["value"] == "abcd"


def test_screenshots(page: BrowserSession, pages: PageServer) -> None:
    page.navigate(pages.url("/form"))
    assert png_size(page.screenshot(full_page=False)) == (1280, 800)
    width, height = png_size(page.screenshot())  # full page: at least the viewport
    assert width == 1280 and height >= 800
    jpeg = base64.b64decode(page.screenshot(format="jpeg", quality=40))
    assert jpeg[:3] == b"\xff\xd8\xff"
    assert png_size(page.screenshot(clip={"x": 10, "y": 20, "width": 300, "height": 120})) == (300, 120)


def test_scroll(page: BrowserSession, pages: PageServer) -> None:
    page.navigate(pages.url("/huge"))
    result = page.scroll(y=2000)
    assert (result["data"]["x"], result["data"]["y"]) == (0, 2000)
    result = page.scroll(selector="#p-3000")
    assert result["data"]["y"] > 2000
    assert result["data"]["selector"] == "#p-3000"


def test_wait_for_late_content(page: BrowserSession, pages: PageServer) -> None:
    page.navigate(pages.url("/late"))
    page.wait_for("hidden", "#spinner", timeout=5000)
    page.wait_for("visible", "#late", timeout=5000)
    page.wait_for("load")
    page.wait_for("networkidle", timeout=10_000)
    assert page.extract_elements("#late")[0].text == "Arrived late"


def test_extract_content_gives_text_and_usable_selectors(page: BrowserSession, pages: PageServer) -> None:
    page.navigate(pages.url("/links"))
    content = page.extract_content(max_anchors=5)
    readable = content["readable_content"]
    assert readable["title"] == "Links page"
    assert readable["url"] == pages.url("/links")
    assert "The first paragraph talks about the weather" in readable["content"]
    assert len(content.content_anchors) == 5
    assert content.truncated is True  # more anchors than max_anchors

    # Every interactive selector matches exactly its element, even for look-alike buttons.
    for item in content.interactive_elements:
        matched = page.extract_elements(item.selector, ["text"])
        assert len(matched) == 1, item
    by_text = {item.text: item for item in content.interactive_elements}
    assert by_text["One"].selector != by_text["Two"].selector
    assert by_text["reading more"].href == pages.url("/form?from=links")

    # An anchor's selector leads back to the snippet; a link's selector can be clicked.
    anchor = next(a for a in content.content_anchors if a.text == "Links and things")
    assert page.extract_elements(anchor.selector)[0].text == "Links and things"
    page.click(by_text["reading more"].selector)
    page.wait_for("load")
    assert page.get_info().current_url == pages.url("/form?from=links")

    bare = page.extract_content(include_interactive=False, include_anchors=False)
    assert bare.interactive_elements == [] and bare.content_anchors == []
    assert bare.readable_content.title == "Form page"


def test_extract_content_navigates_first_when_given_a_url(page: BrowserSession, pages: PageServer) -> None:
    content = page.extract_content(pages.url("/late"))
    assert content.readable_content.url == pages.url("/late")


def test_extract_elements_defaults(page: BrowserSession, pages: PageServer) -> None:
    page.navigate(pages.url("/links"))
    elements = page.extract_elements()
    tags = {e.tag for e in elements}
    assert {"h1", "p", "a", "li", "button"} <= tags
    link = next(e for e in elements if e.tag == "a" and e.text == "reading more")
    assert link.attributes == {"class": "more", "href": "/form?from=links"}  # all attributes, as written
    [more] = page.extract_elements("a.more", ["href", "class", "missing"])
    assert more.attributes == {"href": pages.url("/form?from=links"), "class": "more", "missing": None}
    assert page.extract_elements("#does-not-exist") == []


def test_popup_becomes_the_active_page(page: BrowserSession, pages: PageServer) -> None:
    page.navigate(pages.url("/links"))
    page.click("#popup")
    page.wait_for("visible", "#name", timeout=5000)
    assert page.get_info().current_url == pages.url("/form")


def test_huge_page(page: BrowserSession, pages: PageServer) -> None:
    page.navigate(pages.url("/huge"))
    content = page.extract_content()
    assert content.truncated is True
    assert len(content.readable_content.content) == 100_000
    assert len(content.interactive_elements) == 300
    assert len(page.extract_elements("a")) == 500
    width, height = png_size(page.screenshot(full_page=True))
    assert width == 1280 and height == 16_384  # cut at Chromium's texture limit instead of failing


def test_default_session_shortcuts(manager: BrowserManager, pages: PageServer, backend: InProcessBackend) -> None:
    assert manager.default_session_id is None
    result = manager.navigate(pages.url("/form"))
    sid = manager.default_session_id
    assert sid is not None and result.session_id == sid
    manager.fill("#name", "default")
    manager.click("#go")
    manager.wait_for("visible", "#result")
    assert manager.extract_elements("#result")[0].text == "Hello, default"
    manager.type("#notes", "x", delay=0)
    manager.scroll(y=10)
    assert manager.screenshot(full_page=False)
    assert manager.extract_content().readable_content.title == "Form page"
    assert manager.extract_content(url=pages.url("/links")).readable_content.title == "Links page"
    assert sid in {s.session_id for s in manager.list_sessions()}
    assert manager.get_session(sid).current_url == pages.url("/links")
    manager.close()
    assert manager.default_session_id is None
    assert sid not in {s.session_id for s in backend.browser_list_sessions()}


def test_default_session_is_replaced_by_navigate_when_gone(manager: BrowserManager, pages: PageServer) -> None:
    manager.navigate(pages.url("/form"))
    old = manager.default_session_id
    assert old is not None
    manager.backend.browser_close_session(old)
    result = manager.navigate(pages.url("/links"))
    assert result.session_id != old
    assert result.warnings and "was gone" in result.warnings[0]


def test_session_info_and_list(manager: BrowserManager, pages: PageServer) -> None:
    with manager.create_session(800, 600, user_agent="coderunner-test/1.0") as session:
        info = session.get_info()
        assert info["viewport"]["width"] == 800 and info.viewport.height == 600
        assert info.user_agent == "coderunner-test/1.0"
        assert info.status == "active" and info.backend == "inprocess"
        assert session.session_id in {s.session_id for s in manager.list_sessions()}
        session.navigate(pages.url("/form"))
        assert png_size(session.screenshot(full_page=False)) == (800, 600)
        assert session.is_active()
    assert not session.is_active()
