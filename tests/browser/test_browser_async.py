"""Every action through the AsyncBrowserManager over the async InProcess backend, on real Chromium."""

from __future__ import annotations

import asyncio

import pytest
from browser_helpers import PageServer, png_size

from coderunner.backends.inprocess import AsyncInProcessBackend
from coderunner.browser import (
    AsyncBrowserBackend,
    AsyncBrowserManager,
    BrowserTimeoutError,
    DestinationBlockedError,
    ElementNotFoundError,
    InvalidSelectorError,
    async_browser_manager_for,
)
from coderunner.errors import SessionNotFoundError

pytestmark = pytest.mark.browser


async def test_every_action(abackend: AsyncInProcessBackend, pages: PageServer) -> None:
    assert isinstance(abackend, AsyncBrowserBackend)
    manager = AsyncBrowserManager(abackend)
    async with await manager.create_session(viewport_width=1024, viewport_height=700) as page:
        result = await page.navigate(pages.url("/form"))
        assert result["data"]["title"] == "Form page" and result["data"]["status"] == 200
        await page.fill("#name", "async agent")
        await page.type("#notes", "typed", delay=0)
        await page.click("#go")
        await page.wait_for("visible", "#result", timeout=5000)
        [element] = await page.extract_elements("#result", ["text"])
        assert element.attributes["text"] == "Hello, async agent"
        [notes] = await page.extract_elements("#notes", ["value"])
        assert notes.attributes["value"] == "typed"
        assert png_size(await page.screenshot(full_page=False)) == (1024, 700)

        await page.navigate(pages.url("/huge"))
        assert (await page.scroll(y=1500))["data"]["y"] == 1500
        assert (await page.scroll(selector="#p-100"))["data"]["selector"] == "#p-100"

        await page.navigate(pages.url("/late"))
        await page.wait_for("visible", "#late", timeout=5000)
        await page.wait_for("networkidle", timeout=10_000)
        content = await page.extract_content()
        assert "Arrived late" in content.readable_content.content
        assert (await page.get_info()).current_url == pages.url("/late")
        assert page.session_id in {s.session_id for s in await manager.list_sessions()}
    assert not await page.is_active()


async def test_errors(abackend: AsyncInProcessBackend, pages: PageServer) -> None:
    manager = AsyncBrowserManager(abackend)
    page = await manager.create_session()
    await page.navigate(pages.url("/form"))
    with pytest.raises(ElementNotFoundError):
        await page.click("#missing", timeout=300)
    with pytest.raises(BrowserTimeoutError):
        await page.click("#hidden", timeout=300)
    with pytest.raises(InvalidSelectorError):
        await page.click("div[", timeout=300)
    with pytest.raises(DestinationBlockedError):
        await page.navigate("http://[fd00:ec2::254]/")
    assert (await page.navigate(pages.url("/links")))["data"]["title"] == "Links page"
    await page.close()
    with pytest.raises(SessionNotFoundError):
        await page.navigate(pages.url("/form"))


async def test_default_session_and_lazy_backend(abackend: AsyncInProcessBackend, pages: PageServer) -> None:
    created = 0

    async def get_backend() -> AsyncInProcessBackend:
        # What AsyncCodeRunner hands over: its backend is only built on first use.
        nonlocal created
        created += 1
        return abackend

    manager = async_browser_manager_for(get_backend)
    assert created == 0
    result = await manager.navigate(pages.url("/form"))
    sid = manager.default_session_id
    assert result.session_id == sid and created == 1
    await manager.fill("#name", "lazy")
    await manager.click("#go")
    await manager.wait_for("visible", "#result")
    assert (await manager.extract_elements("#result"))[0].text == "Hello, lazy"
    await manager.type("#notes", "z", delay=0)
    await manager.scroll(y=5)
    assert await manager.screenshot(full_page=False)
    content = await manager.extract_content(url=pages.url("/links"))
    assert content.readable_content.title == "Links page"
    assert (await manager.get_session(sid or "")).current_url == pages.url("/links")
    await manager.close()
    assert manager.default_session_id is None


async def test_concurrent_sessions(abackend: AsyncInProcessBackend, pages: PageServer) -> None:
    manager = AsyncBrowserManager(abackend)
    sessions = await asyncio.gather(*(manager.create_session() for _ in range(3)))
    results = await asyncio.gather(*(s.navigate(pages.url("/links")) for s in sessions))
    assert {r["data"]["title"] for r in results} == {"Links page"}
    assert len({s.session_id for s in sessions}) == 3
    await manager.close_all()
    live = {s.session_id for s in await manager.list_sessions()}
    assert not live & {s.session_id for s in sessions}
