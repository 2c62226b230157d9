"""Real-Chromium fixtures: test pages served on 127.0.0.1, and InProcess backends with the browser capability.

Skipped, with the reason, only when Playwright or a Chromium executable is genuinely absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from browser_helpers import DENIED, PageServer, chromium_missing, serve_pages

from coderunner.backends.inprocess import AsyncInProcessBackend, InProcessBackend
from coderunner.browser import BrowserSettings
from coderunner.config import Settings

_MISSING = chromium_missing()


@pytest.fixture(scope="session")
def needs_chromium() -> None:
    """Depend on this to be skipped (with the reason) when Chromium or Playwright is missing."""
    if _MISSING:
        pytest.skip(_MISSING)


@pytest.fixture(scope="session")
def pages() -> Iterator[PageServer]:
    with serve_pages() as server:
        yield server


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
