"""New browser session -> navigate to a local page -> screenshot: coderunner vs a plain Playwright script.

Baselines use the same Chromium and flags: (a) a fresh browser launch per sequence, (b) one browser
reused, a new context + page per sequence. coderunner is measured in its steady state (the pool of
ready contexts has refilled between sequences, as on a server between requests) and with the pool
disabled. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _util import emit, summary
from playwright.sync_api import Browser, sync_playwright

from coderunner.backends.inprocess import InProcessBackend
from coderunner.browser import BrowserSettings, browser_manager_for
from coderunner.config import Settings
from coderunner.engine.browser.engine import CHROMIUM_ARGS, find_chromium

N = int(os.environ.get("BENCH_N", "20"))
PAGE = (
    b"<!doctype html><html><head><title>Bench</title></head><body><h1>Benchmark page</h1>"
    + b"<p>Some text to render.</p>" * 50
    + b"</body></html>"
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a closed context hung up
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)


def _serve() -> tuple[str, ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/", httpd


def _sequence(browser: Browser, url: str) -> None:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.goto(url, wait_until="load")
    assert page.screenshot(full_page=True)
    context.close()


def plain_fresh_launch(url: str, executable: str) -> list[float]:
    """A new browser per sequence, in milliseconds."""
    out = []
    with sync_playwright() as p:
        for _ in range(max(3, N // 3)):
            t = time.perf_counter()
            browser = p.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
            _sequence(browser, url)
            browser.close()
            out.append((time.perf_counter() - t) * 1000)
    return out


def interleaved(url: str, executable: str, pool_size: int) -> dict[str, list[float]]:
    """Plain Playwright on one reused browser and coderunner, alternately (the machine's noise hits both)."""
    times: dict[str, list[float]] = {"plain": [], "create": [], "whole": []}
    backend = InProcessBackend(Settings.from_env(pool_size=0), browser_settings=BrowserSettings(pool_size=pool_size))
    manager = browser_manager_for(backend)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            for _ in range(3):  # launch coderunner's Chromium, warm both up
                _sequence(browser, url)
                with manager.create_session() as session:
                    session.navigate(url)
                    session.screenshot(full_page=True)
            for _ in range(N):
                t = time.perf_counter()
                _sequence(browser, url)
                times["plain"].append((time.perf_counter() - t) * 1000)

                deadline = time.monotonic() + 10  # the pool refills 1 s after a session is taken
                while backend.stats().get("browser_pooled_contexts", 0) < pool_size and time.monotonic() < deadline:
                    time.sleep(0.01)
                t = time.perf_counter()
                session = manager.create_session()
                created = time.perf_counter()
                session.navigate(url)
                assert session.screenshot(full_page=True)
                session.close()
                times["create"].append((created - t) * 1000)
                times["whole"].append((time.perf_counter() - t) * 1000)
        finally:
            browser.close()
            backend.close()
    return times


if __name__ == "__main__":
    url, httpd = _serve()
    executable = find_chromium(BrowserSettings.from_env().chromium, None)
    fresh = plain_fresh_launch(url, executable)
    pooled = interleaved(url, executable, pool_size=1)
    cold = interleaved(url, executable, pool_size=0)
    httpd.shutdown()
    reused = pooled["plain"] + cold["plain"]
    create, whole, create_cold, whole_cold = pooled["create"], pooled["whole"], cold["create"], cold["whole"]
    reused_s, whole_s = summary(reused), summary(whole)
    emit(
        "browser_session",
        {
            "sequence": "create session -> navigate (local page, wait for load) -> full-page PNG screenshot -> close",
            "chromium": executable,
            "baseline_plain_playwright_fresh_launch": summary(fresh),
            "baseline_plain_playwright_reused_browser": reused_s,
            "coderunner_create_session": summary(create),
            "coderunner_sequence": whole_s,
            "coderunner_create_session_no_pool": summary(create_cold),
            "coderunner_sequence_no_pool": summary(whole_cold),
            "ratio_sequence_vs_reused_browser_median": round(whole_s["median_ms"] / reused_s["median_ms"], 2),
            "target": "create_session median <= 60 ms; sequence median <= 1.2x the reused-browser baseline",
            "ratio_sequence_no_pool_vs_reused_browser_median": round(
                summary(whole_cold)["median_ms"] / reused_s["median_ms"], 2
            ),
            "note": "coderunner and the reused-browser baseline run alternately in one process; coderunner figures "
            "include its egress proxy and the engine thread hop; pooled figures wait for the pool to refill "
            "between sequences (steady state)",
        },
    )
