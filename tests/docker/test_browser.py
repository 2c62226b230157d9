"""The Docker backend's browser: Chromium in a locked-down container of its own, driven on the real engine.

Pages are served by this test on 127.0.0.1. A browser container with the default ``network=False`` must
not reach them (its loopback is its own); one given ``browser_options={"network": "host"}`` must.
"""

from __future__ import annotations

import asyncio
import io
import runpy
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from browser_helpers import DENIED, PageServer, png_size, serve_pages

from coderunner import AsyncCodeRunner, CodeRunner, ConfigurationError
from coderunner.backends.docker import DockerBackend
from coderunner.browser import (
    BrowserSessionLostError,
    BrowserSettings,
    DestinationBlockedError,
    ElementNotFoundError,
    NavigationError,
)
from coderunner.browser.protocol import AsyncBrowserBackend, BrowserBackend
from coderunner.errors import SessionNotFoundError, UnsupportedOperationError

pytestmark = [pytest.mark.docker, pytest.mark.browser]


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    with serve_pages() as server:
        yield server


@pytest.fixture(scope="module")
def host_browser(sandbox_image: str) -> Iterator[CodeRunner]:
    """Code sessions without a network; the browser container on the host's network, to reach the test pages."""
    runner = CodeRunner(backend="docker", image=sandbox_image, pool_size=0, browser_options={"network": "host"})
    yield runner
    runner.close()


def _inspect(docker_client: Any, container_id: str) -> dict[str, Any]:
    attrs: dict[str, Any] = docker_client.api.inspect_container(container_id)
    return attrs


def test_every_action_in_the_browser_container(host_browser: CodeRunner, pages: PageServer) -> None:
    assert isinstance(host_browser.backend, BrowserBackend)
    page = host_browser.browser.create_session(viewport_width=800, viewport_height=600)
    try:
        assert page.get_info().backend == "docker"
        nav = page.navigate(pages.url("/form"))
        assert nav["success"] is True and nav["data"]["title"] == "Form page"
        page.fill("#name", "agent")
        page.type("#notes", "hi", delay=5)
        page.click("#go")
        page.wait_for("visible", "#result", timeout=5_000)
        page.scroll(selector="#go")
        assert page.extract_elements("#result", ["text"])[0]["text"] == "Hello, agent"
        assert png_size(page.screenshot(full_page=False)) == (800, 600)
        content = page.extract_content()
        assert "Hello, agent" in content["readable_content"]["content"]

        with pytest.raises(ElementNotFoundError):
            page.click("#nope", timeout=300)
        assert page.navigate(pages.url("/links"))["data"]["title"] == "Links page"  # still working
        assert [s.session_id for s in host_browser.browser.list_sessions()] == [page.session_id]
    finally:
        page.close()
    with pytest.raises(SessionNotFoundError):
        page.navigate(pages.url("/form"))


def test_browser_sessions_share_nothing(host_browser: CodeRunner, pages: PageServer) -> None:
    first, second = host_browser.browser.create_session(), host_browser.browser.create_session()
    try:
        first.navigate(pages.url("/cookie/set"))
        first.navigate(pages.url("/cookie/show"))
        second.navigate(pages.url("/cookie/show"))
        assert first.extract_elements("#c", ["text"])[0]["text"] == "cookie=[who=alice]"
        assert second.extract_elements("#c", ["text"])[0]["text"] == "cookie=[]"
    finally:
        first.close()
        second.close()


def test_the_browser_container_is_locked_down_and_separate(
    host_browser: CodeRunner, docker_client: Any, pages: PageServer
) -> None:
    backend: Any = host_browser.backend
    page = host_browser.browser.create_session()
    try:
        session = host_browser.start_session()
        container_id = backend.browser_container_id
        assert container_id and container_id != backend.container_id(session)
        attrs = _inspect(docker_client, container_id)
        host, config = attrs["HostConfig"], attrs["Config"]
        assert config["Labels"]["org.coderunner.role"] == "browser"
        assert config["Labels"]["org.coderunner.runner"] == backend._fleet.runner_id
        assert config["User"].split(":")[0] not in ("", "0", "root")
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert host["ReadonlyRootfs"] is True
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["Memory"] == 1024**3 and host["MemorySwap"] == 1024**3
        assert host["PidsLimit"] == 1024 and host["NanoCpus"] == 10**9
        assert host["NetworkMode"] == "host"  # browser_options; the code's container keeps none
        assert _inspect(docker_client, backend.container_id(session))["HostConfig"]["NetworkMode"] == "none"
        # Chromium runs as the container's unprivileged user, not as root.
        top = docker_client.api.top(container_id, ps_args="-eo pid,user,comm")
        users = {row[1] for row in top["Processes"] if "chrom" in row[2]}
        assert users and "root" not in users
    finally:
        page.close()


def test_default_browser_has_no_network(sandbox_image: str, pages: PageServer, docker_client: Any) -> None:
    with CodeRunner(backend="docker", image=sandbox_image, pool_size=0) as runner:
        page = runner.browser.create_session()
        container_id: Any = runner.backend.browser_container_id  # type: ignore[attr-defined]
        assert _inspect(docker_client, container_id)["HostConfig"]["NetworkMode"] == "none"
        seen = len(pages.requests)
        with pytest.raises(NavigationError):
            page.navigate(pages.url("/form?from=isolated"), wait_timeout=5_000)
        assert "/form?from=isolated" not in pages.requests[seen:]
        # The browser is fine; it just sees its own loopback only.
        page.navigate("data:text/html,<title>inside</title><p id=p>local</p>")
        assert page.extract_elements("#p", ["text"])[0]["text"] == "local"
    # Closing the runner removed the browser container with the others.
    assert not docker_client.api.containers(all=True, filters={"id": container_id})


def test_a_dead_browser_container_loses_its_sessions_clearly(
    sandbox_image: str, pages: PageServer, docker_client: Any
) -> None:
    with CodeRunner(backend="docker", image=sandbox_image, pool_size=0, browser_options={"network": "host"}) as runner:
        page = runner.browser.create_session()
        page.navigate(pages.url("/form"))
        backend: Any = runner.backend
        dead = backend.browser_container_id
        docker_client.api.kill(dead)
        with pytest.raises(BrowserSessionLostError, match="browser container"):
            page.click("#go")
        with pytest.raises(BrowserSessionLostError):  # and it stays lost, with the same reason
            page.navigate(pages.url("/form"))
        page.close()  # closing a lost session is a no-op
        fresh = runner.browser.create_session()  # a new browser container
        assert backend.browser_container_id not in (None, dead)
        assert fresh.navigate(pages.url("/links"))["data"]["title"] == "Links page"


def test_async_runner_drives_the_browser_container(sandbox_image: str, pages: PageServer) -> None:
    async def main() -> None:
        async with AsyncCodeRunner(
            backend="docker", image=sandbox_image, pool_size=0, browser_options={"network": "host"}
        ) as runner:
            page = await runner.browser.create_session()
            assert isinstance(runner.backend, AsyncBrowserBackend)
            await page.navigate(pages.url("/late"))
            await page.wait_for("visible", "#late", timeout=5_000)
            assert (await page.extract_elements("#late", ["text"]))[0]["text"] == "Arrived late"
            await page.close()

    asyncio.run(main())


def test_browser_options_are_checked_up_front(sandbox_image: str) -> None:
    with pytest.raises(ConfigurationError, match="Unknown Docker option"):
        DockerBackend(image=sandbox_image, browser_options={"netwrok": "host"})


def test_instavm_sdk_drives_the_docker_browser_through_the_server(sandbox_image: str, pages: PageServer) -> None:
    """The unmodified instavm client -> ``coderunner serve --backend docker`` -> the browser container."""
    sdk = pytest.importorskip("instavm", reason="the instavm SDK is in the dev extra")
    helpers = runpy.run_path(str(Path(__file__).resolve().parents[1] / "server" / "conftest.py"))
    server = helpers["start_live_server"](
        api_key="docker-browser-key",
        extra_args=("--backend", "docker"),
        env={"CODERUNNER_DOCKER_IMAGE": sandbox_image, "CODERUNNER_DOCKER_BROWSER_NETWORK": "host"},
    )
    try:
        client = sdk.InstaVM(api_key=server.api_key, base_url=server.base_url, auto_start_session=False)
        page = client.browser.create_session(viewport_width=640, viewport_height=480)
        assert page.navigate(pages.url("/form"))["data"]["title"] == "Form page"
        page.fill("#name", "sdk")
        page.click("#go")
        page.wait_for("visible", "#result", timeout=5_000)
        assert page.extract_elements("#result", ["text"])[0]["text"] == "Hello, sdk"
        assert png_size(page.screenshot(full_page=False)) == (640, 480)
        with pytest.raises(sdk.ElementNotFoundError):
            page.click("#missing", timeout=300)
        page.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_an_image_without_a_browser_says_how_to_get_one(sandbox_image: str, docker_client: Any) -> None:
    tag = "coderunner-test-nobrowser:latest"
    dockerfile = f"FROM {sandbox_image}\nLABEL org.coderunner.browser=0\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, network_mode="none", rm=True)
    try:
        with CodeRunner(backend="docker", image=tag, pool_size=0) as runner:
            with pytest.raises(UnsupportedOperationError, match="--browser 1"):
                runner.browser.create_session()
            assert runner.backend.browser_container_id is None  # type: ignore[attr-defined]
            assert runner.execute("print(6 * 7)").stdout == "42\n"  # code sessions are unaffected
    finally:
        docker_client.images.remove(tag, force=True)


def test_an_idle_browser_container_is_removed(sandbox_image: str, pages: PageServer, docker_client: Any) -> None:
    settings = BrowserSettings(idle_timeout=1.0)
    with CodeRunner(
        backend="docker",
        image=sandbox_image,
        pool_size=0,
        browser_settings=settings,
        browser_options={"network": "host"},
    ) as runner:
        backend: Any = runner.backend
        page = runner.browser.create_session()
        page.navigate(pages.url("/form"))
        first = backend.browser_container_id
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            backend.browser_container_id is not None or docker_client.api.containers(all=True, filters={"id": first})
        ):
            time.sleep(0.1)
        assert backend.browser_container_id is None  # forgotten, and removed (in the background):
        assert not docker_client.api.containers(all=True, filters={"id": first})  # Chromium's memory is back
        with pytest.raises(BrowserSessionLostError, match="without browser activity"):
            page.navigate(pages.url("/form"))
        again = runner.browser.create_session()
        assert again.navigate(pages.url("/links"))["data"]["title"] == "Links page"


def test_a_refused_navigation_is_the_policy_error(sandbox_image: str, pages: PageServer) -> None:
    """Issue 11 item 13: an egress refusal inside the browser container is DestinationBlockedError, not "check
    INSTAVM_API_KEY", and after a refused redirect each navigation still reports its own outcome."""
    settings = BrowserSettings(deny=(f"{DENIED}/32",))
    with CodeRunner(
        backend="docker",
        image=sandbox_image,
        pool_size=0,
        browser_settings=settings,
        browser_options={"network": "host"},
    ) as runner:
        page = runner.browser.create_session()
        for url in (
            "http://169.254.169.254/latest/meta-data/",  # always refused, before any traffic
            f"http://{DENIED}:{pages.port}/direct",  # the deny rule given to the engine in the container
            pages.url(f"/redirect?to=https://{DENIED}:{pages.port}/secret"),  # by its proxy, on the redirect
        ):
            with pytest.raises(DestinationBlockedError) as info:
                page.navigate(url)
            assert info.value.code == "destination_blocked"
            assert "INSTAVM_API_KEY" not in info.value.message
            assert "deny rule" in info.value.message or "metadata" in info.value.message
        for path, title, status in (("/form", "Form page", 200), ("/nope", "404", 404), ("/links", "Links page", 200)):
            data = page.navigate(pages.url(path))["data"]
            assert (data["url"], data["title"], data["status"]) == (pages.url(path), title, status)
        assert "/direct" not in pages.requests and "/secret" not in pages.requests
