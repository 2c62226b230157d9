"""Sessions share nothing, limits hold, idle sessions expire, crashes are reported, nothing is left behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from browser_helpers import PageServer, wait_until

from coderunner.backends.inprocess import InProcessBackend
from coderunner.browser import (
    AsyncBrowserManager,
    BrowserBackend,
    BrowserManager,
    BrowserSessionLostError,
    BrowserSettings,
    browser_manager_for,
)
from coderunner.config import Settings
from coderunner.engine.browser.engine import BrowserEngine, find_chromium
from coderunner.engine.engine import reap_orphans
from coderunner.errors import (
    BackendUnavailableError,
    CapacityError,
    ConfigurationError,
    SessionNotFoundError,
    UnsupportedOperationError,
)
from coderunner.testing import AsyncFakeBackend, FakeBackend

pytestmark = pytest.mark.browser


@pytest.fixture
def manager(backend: InProcessBackend) -> Iterator[BrowserManager]:
    m = browser_manager_for(backend)
    yield m
    m.close_all()


def test_sessions_share_no_cookies_or_storage(manager: BrowserManager, pages: PageServer) -> None:
    with manager.create_session() as a, manager.create_session() as b:
        a.navigate(pages.url("/cookie/set"))
        a.navigate(pages.url("/cookie/show"))
        assert a.extract_elements("#c")[0].text == "cookie=[who=alice]"
        b.navigate(pages.url("/cookie/show"))
        assert b.extract_elements("#c")[0].text == "cookie=[]"

        a.navigate(pages.url("/storage?set=secret"))
        b.navigate(pages.url("/storage"))
        assert b.extract_elements("#v")[0].text == "value=none"
        a.navigate(pages.url("/storage"))
        assert a.extract_elements("#v")[0].text == "value=secret"


def test_max_sessions_and_idle_expiry(needs_chromium: None) -> None:
    async def scenario() -> None:
        engine = BrowserEngine(BrowserSettings(max_sessions=2, idle_timeout=0.6, pool_size=0))
        try:
            # The long-lived one first: under load a create can take longer than the short timeout.
            second = await engine.create_session(idle_timeout=60)
            first = await engine.create_session()
            with pytest.raises(CapacityError, match="CODERUNNER_BROWSER_MAX_SESSIONS"):
                await engine.create_session()
            assert {s.session_id for s in await engine.list_sessions()} == {first.session_id, second.session_id}
            await asyncio.sleep(1.2)  # the first expires; the second has its own longer timeout
            with pytest.raises(SessionNotFoundError, match=r"expired .* idle for more than 0\.6 s"):
                await engine.get_session(first.session_id)
            await engine.get_session(second.session_id)
            third = await engine.create_session()  # room again
            await engine.close_session(third.session_id)
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_crash_is_reported_and_a_new_session_works(needs_chromium: None, pages: PageServer) -> None:
    backend = InProcessBackend(Settings.from_env(pool_size=0))
    try:
        manager = browser_manager_for(backend)
        session = manager.create_session()
        session.navigate(pages.url("/form"))
        old_pid = backend.browser_engine.browser_pid
        assert old_pid is not None
        # Registered with the code engine, which kills it at exit and reaps it after a crash of ours.
        assert (backend.engine.dir / "pids" / str(old_pid)).exists()
        os.killpg(old_pid, signal.SIGKILL)
        with pytest.raises(BrowserSessionLostError) as info:
            session.click("#go")
        assert info.value.code == "browser_session_lost"
        assert isinstance(info.value, SessionNotFoundError)
        assert "crashed or was killed" in info.value.message
        with pytest.raises(BrowserSessionLostError):
            session.navigate(pages.url("/form"))
        # The next session gets a fresh browser.
        fresh = manager.create_session()
        assert fresh.navigate(pages.url("/form"))["data"]["title"] == "Form page"
        new_pid = backend.browser_engine.browser_pid
        assert new_pid is not None and new_pid != old_pid
        assert backend.stats()["browser_crashes"] == 1
    finally:
        backend.close()
    assert wait_until(lambda: not psutil.pid_exists(new_pid)), "closing the backend must stop Chromium"


def test_orphaned_browser_of_a_killed_runner_is_reaped(needs_chromium: None, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, os, signal
        from coderunner.backends.inprocess import InProcessBackend
        from coderunner.config import Settings
        b = InProcessBackend(Settings.from_env(pool_size=0, runtime_dir={str(tmp_path)!r}))
        b.browser_create_session()
        print(json.dumps({{"pid": b.browser_engine.browser_pid}}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pid = json.loads(proc.stdout.strip().splitlines()[-1])["pid"]
    assert [p.name for p in tmp_path.glob("e-*/browser")], "the browser's files live under the engine directory"
    # Our own (dead) runner's engine directory is an orphan: reaping kills its Chromium, if still alive.
    reap_orphans(tmp_path)
    assert wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    assert not list(tmp_path.glob("e-*"))


def test_backend_without_the_capability() -> None:
    fake = FakeBackend()
    assert not isinstance(fake, BrowserBackend)
    manager = browser_manager_for(fake)
    assert not manager.available
    with pytest.raises(UnsupportedOperationError, match="inprocess"):
        manager.navigate("http://127.0.0.1/")

    async def scenario() -> None:
        with pytest.raises(UnsupportedOperationError, match="inprocess"):
            await AsyncBrowserManager(AsyncFakeBackend()).create_session()

    asyncio.run(scenario())


def test_finding_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="CODERUNNER_CHROMIUM"):
        find_chromium(str(tmp_path / "no-such-chrome"))
    fake = tmp_path / "chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_chromium(str(fake)) == str(fake)
    assert find_chromium(None, str(fake)) == str(fake)  # Playwright's own browser comes next
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BackendUnavailableError, match="apt-get install chromium") as info:
        find_chromium(None, str(tmp_path / "not-installed"))
    assert "playwright install chromium" in info.value.message


def test_missing_playwright_names_the_extra(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["playwright"] = None  # as if not installed
        from coderunner.engine.browser.engine import BrowserEngine
        from coderunner.errors import MissingDependencyError
        try:
            asyncio.run(BrowserEngine().create_session())
        except MissingDependencyError as exc:
            print(exc.extra, exc.message)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("browser ") and "coderunner-sandbox[browser]" in out


def test_close_stops_chromium_and_everything_is_gone(needs_chromium: None) -> None:
    backend = InProcessBackend(Settings.from_env(pool_size=0))
    info = backend.browser_create_session()
    pid = backend.browser_engine.browser_pid
    assert pid is not None and psutil.pid_exists(pid)
    backend.close()
    assert wait_until(lambda: not psutil.pid_exists(pid))
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="closed"):
        backend.browser_get_session(info.session_id)
    assert time.monotonic() - started < 1


def test_factory_takes_browser_settings() -> None:
    from coderunner.backend import create_backend

    settings = Settings.from_env(pool_size=0)
    backend = create_backend("inprocess", settings, browser_settings=BrowserSettings(max_sessions=1))
    try:
        assert isinstance(backend, BrowserBackend)
        assert backend.browser_engine.settings.max_sessions == 1  # type: ignore[attr-defined]
    finally:
        backend.close()
    with pytest.raises(ConfigurationError, match="browser_settings"):
        create_backend("inprocess", Settings.from_env(pool_size=0), browser_settings={"max_sessions": 1})
    with pytest.raises(ConfigurationError, match="only browser_settings"):
        create_backend("inprocess", Settings.from_env(pool_size=0), api_key="x")


def test_runner_browser_property_drives_the_backend(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from coderunner import CodeRunner

    with CodeRunner(runtime_dir=str(tmp_path), pool_size=0) as runner:
        page = runner.browser.create_session(viewport_width=800, viewport_height=600)
        assert page.navigate("data:text/html,<title>t</title><p>hi</p>")["success"] is True
        assert [s for s in runner.browser.list_sessions()]
        page.close()
