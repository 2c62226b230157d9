"""The Docker backend's browser container: first session (container start + Chromium launch), then steady state.

The sequence is browser_session's (create session -> navigate to a local page -> full-page screenshot ->
close), measured alternately on the Docker backend's browser container, on the InProcess browser and with a
plain Playwright script reusing one browser, so the machine's noise hits all three. The browser container is
given the host network (``browser_options={"network": "host"}``) only so it can load this benchmark's page
on 127.0.0.1; nothing else is contacted.
"""

from __future__ import annotations

import os
import time

from _util import emit, summary
from browser_session import _sequence, _serve
from playwright.sync_api import sync_playwright

from coderunner import CodeRunner
from coderunner.backends.docker import ImageSpec, connect, ensure_image
from coderunner.browser import BrowserSettings
from coderunner.engine.browser.engine import CHROMIUM_ARGS, find_chromium

N = int(os.environ.get("BENCH_N", "15"))


def _run(runner: CodeRunner, url: str) -> tuple[float, float]:
    t = time.perf_counter()
    page = runner.browser.create_session()
    created = time.perf_counter()
    page.navigate(url)
    assert page.screenshot(full_page=True)
    page.close()
    return (created - t) * 1000, (time.perf_counter() - t) * 1000


def main() -> None:
    url, httpd = _serve()
    client = connect()
    image = ensure_image(client, ImageSpec())
    executable = find_chromium(BrowserSettings.from_env().chromium, None)
    times: dict[str, list[float]] = {"plain": [], "docker_create": [], "docker": [], "inprocess": []}
    first: list[float] = []
    for _ in range(3):  # a new runner each time: the browser container's cold start
        with CodeRunner(backend="docker", image=image, pool_size=0, browser_options={"network": "host"}) as cold:
            first.append(_run(cold, url)[1])
    docker = CodeRunner(backend="docker", image=image, pool_size=0, browser_options={"network": "host"})
    local = CodeRunner(pool_size=0)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
            for _ in range(3):  # warm all three up
                _sequence(browser, url)
                _run(docker, url)
                _run(local, url)
            for _ in range(N):
                t = time.perf_counter()
                _sequence(browser, url)
                times["plain"].append((time.perf_counter() - t) * 1000)
                time.sleep(1.2)  # both coderunner browsers refill their pool of ready contexts 1 s after a take
                created, whole = _run(docker, url)
                times["docker_create"].append(created)
                times["docker"].append(whole)
                times["inprocess"].append(_run(local, url)[1])
            browser.close()
    finally:
        docker.close()
        local.close()
        httpd.shutdown()
    plain, in_docker, inprocess = summary(times["plain"]), summary(times["docker"]), summary(times["inprocess"])
    emit(
        "docker_browser_session",
        {
            "sequence": "create session -> navigate (local page, wait for load) -> full-page PNG screenshot -> close",
            "docker_first_session_sequence": summary(first),
            "docker_create_session": summary(times["docker_create"]),
            "docker_sequence": in_docker,
            "inprocess_sequence": inprocess,
            "baseline_plain_playwright_reused_browser": plain,
            "ratio_docker_vs_inprocess_median": round(in_docker["median_ms"] / inprocess["median_ms"], 2),
            "ratio_docker_vs_plain_reused_browser_median": round(in_docker["median_ms"] / plain["median_ms"], 2),
            "note": "first-session figures include starting the browser container and Chromium in it; steady-state "
            "figures run alternately with the baselines in one process; the Docker calls cross a unix socket into "
            "the container and its agent, then the same engine as InProcess",
        },
    )


if __name__ == "__main__":
    main()
