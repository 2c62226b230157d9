"""Test pages for the browser suite, served on 127.0.0.1 only, and small helpers."""

from __future__ import annotations

import base64
import contextlib
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FORM = """<!doctype html><html><head><title>Form page</title></head><body>
<main><h1>Sign up</h1><p>Fill in your name and press Go to be greeted by the page.</p>
<form onsubmit="return false">
  <label for="name">Name</label> <input id="name" name="name" placeholder="Your name">
  <input id="notes" name="notes"> <input type="hidden" name="secret" value="x">
  <button id="go" type="button" onclick="setTimeout(() => {
    const r = document.createElement('div'); r.id = 'result';
    r.textContent = 'Hello, ' + document.getElementById('name').value; document.body.appendChild(r);
  }, 200)">Go</button>
  <button id="disabled" type="button" disabled>Disabled</button>
  <div id="hidden" style="display:none">Hidden</div>
</form></main></body></html>"""

LINKS = """<!doctype html><html><head><title>Links page</title></head><body>
<nav><a href="/form">Form</a> <a href="/late">Late</a></nav>
<article><h1>Links and things</h1>
<p>The first paragraph talks about the weather, which is fine.</p>
<p>The second paragraph is about <a class="more" href="/form?from=links">reading more</a>.</p>
<ul><li>Alpha item</li><li>Beta item</li></ul>
<a href="/form" target="_blank" id="popup">Open the form in a new tab</a>
<button class="dup">One</button><button class="dup">Two</button>
</article></body></html>"""

LATE = """<!doctype html><html><head><title>Late page</title></head><body>
<div id="spinner">Loading...</div>
<script>setTimeout(() => {
  document.getElementById('spinner').remove();
  const d = document.createElement('div'); d.id = 'late'; d.textContent = 'Arrived late';
  document.body.appendChild(d);
}, 600);</script></body></html>"""

NEVER = """<!doctype html><html><head><title>Never loads</title></head><body>
<p id="partial">Partly here</p><img src="/hang.png"></body></html>"""

STORAGE = """<!doctype html><html><head><title>Storage</title></head><body><div id="v"></div>
<script>
const q = new URLSearchParams(location.search);
if (q.get('set')) localStorage.setItem('k', q.get('set'));
document.getElementById('v').textContent = 'value=' + (localStorage.getItem('k') || 'none');
</script></body></html>"""


def _huge() -> str:
    parts = ["<!doctype html><html><head><title>Huge page</title></head><body><main>"]
    for i in range(6000):
        parts.append(
            f'<p id="p-{i}">Paragraph {i}: {"lorem ipsum dolor sit amet " * 3}<a href="/x/{i}">link {i}</a></p>'
        )
    parts.append("</main></body></html>")
    return "".join(parts)


@dataclass
class PageServer:
    """Pages on 127.0.0.1; ``requests`` records every path it was asked for."""

    base: str
    port: int
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base + path


def _handler(server: PageServer) -> type[BaseHTTPRequestHandler]:
    huge = _huge().encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(
            self, status: int, body: bytes, ctype: str = "text/html", headers: dict[str, str] | None = None
        ) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the browser gave up waiting
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            server.requests.append(self.path)
            path = parts.path
            pages = {"/form": FORM, "/links": LINKS, "/late": LATE, "/never": NEVER, "/storage": STORAGE}
            if path in pages:
                self._send(200, pages[path].encode())
            elif path == "/huge":
                self._send(200, huge)
            elif path == "/hang.png":
                server.release.wait(60)  # the image never arrives, so 'load' never fires
                self._send(200, b"", "image/png")
            elif path == "/redirect":
                self._send(302, b"", headers={"Location": query["to"][0]})
            elif path == "/cookie/set":
                self._send(200, b"<title>set</title><p>ok</p>", headers={"Set-Cookie": "who=alice; Path=/"})
            elif path == "/cookie/show":
                cookie = self.headers.get("Cookie", "")
                self._send(200, f"<title>show</title><p id='c'>cookie=[{cookie}]</p>".encode())
            elif path == "/with-blocked-image":
                target = query["src"][0]
                self._send(200, f"<title>img</title><p>text</p><img src='{target}'>".encode())
            else:
                self._send(404, b"<title>404</title><p>not found</p>")

    return Handler


@contextlib.contextmanager
def serve_pages() -> Iterator[PageServer]:
    """Serve the test pages on an ephemeral 127.0.0.1 port (daemon threads) until the block ends."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    port = int(httpd.server_address[1])
    server = PageServer(base=f"http://127.0.0.1:{port}", port=port)
    httpd.RequestHandlerClass = _handler(server)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()  # let a request parked on /hang.png finish
        httpd.shutdown()
        httpd.server_close()


# A deny rule on another loopback address: redirects and subresources towards it must be refused by
# the proxy (nothing listens there, so a policy failure would show as "connection refused" instead).
DENIED = "127.0.0.2"


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (no Playwright, no Chromium), or None when they can."""
    import importlib.util
    import os
    from pathlib import Path

    if importlib.util.find_spec("playwright") is None:
        return "the 'playwright' package is not installed (pip install 'coderunner-sandbox[browser]')"
    from coderunner.browser import BrowserSettings
    from coderunner.engine.browser.engine import find_chromium
    from coderunner.errors import BackendUnavailableError, ConfigurationError

    # Playwright's own browsers (``playwright install chromium``), found without starting its driver.
    cache = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    own = sorted(cache.glob("chromium-*/chrome-linux*/chrome"))
    try:
        find_chromium(BrowserSettings.from_env().chromium, str(own[-1]) if own else None)
    except (BackendUnavailableError, ConfigurationError) as exc:
        return f"no Chromium: {exc.message}"
    return None


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def png_size(b64: str) -> tuple[int, int]:
    """Width and height of a base64 PNG (from its IHDR chunk)."""
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", raw[16:24])
    return int(width), int(height)
