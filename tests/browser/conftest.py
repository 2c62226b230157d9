"""Real-Chromium fixtures: test pages served on 127.0.0.1, and InProcess backends with the browser capability.

Skipped, with the reason, only when Playwright or a Chromium executable is genuinely absent.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import DENIED, PageServer, start_page_server

from coderunner.backends.inprocess import AsyncInProcessBackend, InProcessBackend
from coderunner.browser import BrowserSettings
from coderunner.browser.engine import find_chromium
from coderunner.config import Settings
from coderunner.errors import BackendUnavailableError, ConfigurationError


def _chromium_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the 'playwright' package is not installed (pip install 'coderunner[browser]')"
    # Playwright's own browsers (``playwright install chromium``), found without starting its driver.
    cache = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    own = sorted(cache.glob("chromium-*/chrome-linux*/chrome"))
    try:
        find_chromium(BrowserSettings.from_env().chromium, str(own[-1]) if own else None)
    except (BackendUnavailableError, ConfigurationError) as exc:
        return f"no Chromium: {exc.message}"
    return None


_MISSING = _chromium_missing()


@pytest.fixture(scope="session")
def needs_chromium() -> None:
    """Depend on this to be skipped (with the reason) when Chromium or Playwright is missing."""
    if _MISSING:
        pytest.skip(_MISSING)


@pytest.fixture(scope="session")
def pages() -> Iterator[PageServer]:
    server, httpd = start_page_server()
    yield server
    server.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def backend(needs_chromium: None) -> Iterator[InProcessBackend]:
    b = InProcessBackend(Settings.from_env(pool_size=0), browser_settings=BrowserSettings(deny=(f"{DENIED}/32",)))
    yield b
    b.close()


@pytest.fixture(scope="session")
def abackend(needs_chromium: None) -> Iterator[AsyncInProcessBackend]:
    b = AsyncInProcessBackend(Settings.from_env(pool_size=0))
    yield b
    asyncio.run(b.aclose())
