"""Test pages, and the small HTTP servers whole-stack tests stand up on loopback."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (test output stays readable) and answers whole
    bodies in one call."""

    def send_body(
        self,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        *,
        status: int = 200,
    ) -> None:
        """``body`` with ``status`` (200 unless told); ``headers`` are sent as given
        (``Set-Cookie``, ``Location`` and the like)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served from a thread on a free loopback port for the block; yields the
    base URL (no trailing slash)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


PAGES: dict[str, str] = {
    "/scripted": """<!doctype html><html><head><title>Scripted</title></head><body>
<p id="s">static</p><script>document.getElementById('s').textContent = 'scripted';</script>
</body></html>""",
    "/form": """<!doctype html><html><head><title>Form</title></head><body>
<input id="q" placeholder="item">
<button id="add" onclick="
  const li = document.createElement('li');
  li.textContent = document.getElementById('q').value;
  document.getElementById('items').appendChild(li);">Add</button>
<ul id="items"><li>apple</li><li>banana</li></ul>
</body></html>""",
    "/slow": """<!doctype html><html><body><p id="p">slow page</p></body></html>""",
    # Counts visits in a session cookie and in local storage: what a run sees shows which
    # browser state it started from.
    "/cookie": """<!doctype html><html><head><title>Visits</title></head><body>
<p id="visits"></p><p id="stored"></p>
<script>
  const match = document.cookie.match(/(?:^|; )visits=(\\d+)/);
  const visits = (match ? Number(match[1]) : 0) + 1;
  document.cookie = 'visits=' + visits + '; path=/';
  const stored = Number(localStorage.getItem('stored') || 0) + 1;
  localStorage.setItem('stored', String(stored));
  document.getElementById('visits').textContent = visits;
  document.getElementById('stored').textContent = stored;
</script></body></html>""",
}


class PageHandler(QuietHandler):
    """The pages above, by path."""

    def do_GET(self) -> None:
        body = PAGES.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_body(body.encode(), "text/html; charset=utf-8")


def add_item(item: str) -> list[dict[str, str]]:
    """The actions that add ``item`` to the list on ``/form``."""
    return [
        {"type": "type", "selector": "#q", "value": item},
        {"type": "click", "selector": "#add"},
    ]
