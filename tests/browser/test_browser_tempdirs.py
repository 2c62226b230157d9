"""Chromium keeps its files under the engine's runtime directory: nothing is left in /tmp, even after a crash.

Regression tests for issue 11 item 14: Chromium made its singleton-socket directories
(``/tmp/org.chromium.Chromium.*``) and Playwright its profile (``/tmp/playwright_chromiumdev_profile-*``)
in the system temporary directory, and left them there after the browser closed or its owner was killed.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from browser_helpers import PageServer, wait_until

from coderunner.backends.inprocess import InProcessBackend
from coderunner.browser import browser_manager_for
from coderunner.config import Settings

pytestmark = pytest.mark.browser

_SYSTEM_TMP = tempfile.gettempdir()


def _chromium_dirs() -> dict[str, str]:
    """Chromium's singleton directories in the system temporary directory, each with its cookie (or '')."""
    found = {}
    for path in glob.glob(os.path.join(_SYSTEM_TMP, "org.chromium.Chromium.*")):
        try:
            found[path] = os.readlink(os.path.join(path, "SingletonCookie"))
        except OSError:
            found[path] = ""
    return found


def _profile_of(pid: int) -> Path:
    """The --user-data-dir of a running Chromium."""
    for arg in psutil.Process(pid).cmdline():
        if arg.startswith("--user-data-dir="):
            return Path(arg.split("=", 1)[1])
    raise AssertionError(f"Chromium {pid} has no --user-data-dir")


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # Short and in /tmp on purpose: kernels' and Chromium's unix sockets live below it (108-byte limit).
    path = Path(tempfile.mkdtemp(prefix="crbt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_browser_run_leaves_nothing_in_tmp(needs_chromium: None, runtime_dir: Path, pages: PageServer) -> None:
    before = _chromium_dirs()
    backend = InProcessBackend(Settings.from_env(pool_size=0, runtime_dir=str(runtime_dir)))
    try:
        with browser_manager_for(backend).create_session() as session:
            assert session.navigate(pages.url("/form"))["data"]["title"] == "Form page"
            pid = backend.browser_engine.browser_pid
            assert pid is not None
            profile = _profile_of(pid)
            socket_dir = Path(os.readlink(profile / "SingletonSocket")).parent
            cookie = os.readlink(profile / "SingletonCookie")
            # The profile and Chromium's own temporary files live under the engine's directory.
            assert profile.is_relative_to(runtime_dir), profile
            assert socket_dir.is_relative_to(runtime_dir), socket_dir
    finally:
        backend.close()
    assert _gone(pid)
    assert not profile.exists() and not socket_dir.exists()
    # Compared with before the run: no new singleton directory of this browser in /tmp.
    left = {path for path, c in _chromium_dirs().items() if path not in before and c == cookie}
    assert not left, left
    assert not list(runtime_dir.glob("e-*")), "closing the backend removes its engine directory"


_OWNER = textwrap.dedent(
    """
    import os, sys, time
    from coderunner.backends.inprocess import InProcessBackend
    from coderunner.browser import browser_manager_for
    from coderunner.config import Settings

    backend = InProcessBackend(Settings.from_env(pool_size=0, runtime_dir=sys.argv[1]))
    session = browser_manager_for(backend).create_session()
    session.navigate("data:text/html,<title>owner</title>")
    print(backend.browser_engine.browser_pid, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_owners_browser_files_are_removed_at_the_next_start(needs_chromium: None, runtime_dir: Path) -> None:
    before = _chromium_dirs()
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(runtime_dir)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        line = owner.stdout.readline() if owner.stdout is not None else ""
        assert line.strip().isdigit(), f"the owner did not start a browser: {line!r}"
        pid = int(line)
        profile = _profile_of(pid)
        socket_dir = Path(os.readlink(profile / "SingletonSocket")).parent
        cookie = os.readlink(profile / "SingletonCookie")
        # Everything dies at once, as in a machine-wide OOM kill: the owner, its Playwright driver (same
        # process group) and Chromium (a group of its own), which is frozen first so that it cannot tidy up
        # when it notices its driver gone.
        os.killpg(pid, signal.SIGSTOP)
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(timeout=30)
        os.killpg(pid, signal.SIGKILL)
        assert wait_until(lambda: _gone(pid), 30)
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)
            owner.wait(timeout=30)
        if owner.stdout is not None:
            owner.stdout.close()
    # The crash left the profile and the socket directory behind, inside the dead engine's directory only.
    assert profile.is_relative_to(runtime_dir) and profile.exists(), profile
    assert socket_dir.is_relative_to(runtime_dir) and socket_dir.exists(), socket_dir
    dead = list(runtime_dir.glob("e-*"))
    assert len(dead) == 1

    started = time.monotonic()
    backend = InProcessBackend(Settings.from_env(pool_size=0, runtime_dir=str(runtime_dir)))  # the next start
    try:
        assert not dead[0].exists(), "the next start's orphan sweep removes the dead engine's directory"
        assert not profile.exists() and not socket_dir.exists()
        left = {path for path, c in _chromium_dirs().items() if path not in before and c == cookie}
        assert not left, left
        assert time.monotonic() - started < 60
    finally:
        backend.close()
