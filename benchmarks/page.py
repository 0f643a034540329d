"""The page every benchmark run opens: an input, a button and 50 list items.

Run as its own process (``python -m benchmarks.page PORT``) so serving it takes no time
from the benchmark's event loop, which also drives the raw Playwright runs.
"""

from __future__ import annotations

import contextlib
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ITEMS = 50
_LIST = "".join(f"<li>item {i}</li>" for i in range(1, ITEMS + 1))
PAGE = f"""<!doctype html><html><head><title>Bench</title></head><body>
<input id="q" placeholder="text">
<button id="go" onclick="document.getElementById('out').textContent =
  document.getElementById('q').value">Go</button>
<p id="out"></p>
<ul id="items">{_LIST}</ul>
</body></html>""".encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
