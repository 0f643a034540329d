"""A small test site for the action engine, served on a free loopback port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FORM = """<!doctype html><html><head><title>Form</title></head><body>
<input id="q" value=""><textarea id="notes"></textarea>
<button id="add" onclick="add(document.getElementById('q').value)">Add</button>
<ul id="items"><li>apple</li><li>banana</li></ul>
<select id="fruit"><option value="a">Apple</option><option value="b">Banana</option></select>
<input type="checkbox" id="agree"><input type="checkbox" id="news" checked>
<div id="hover" onmouseover="this.textContent='hovered'">hover me</div>
<div id="clicks" ondblclick="this.textContent='double'"
     oncontextmenu="this.textContent='right'; return false;">click me</div>
<p id="keys"></p>
<div id="src" draggable="true" style="width:50px;height:50px;background:red">drag</div>
<div id="dst" style="width:80px;height:80px;background:blue">drop</div>
<p id="dropped"></p>
<a id="dl" href="/file.csv" download>download</a>
<a id="go" href="/items">items</a>
<script>
function add(text) {
  const li = document.createElement('li'); li.textContent = text;
  document.getElementById('items').appendChild(li);
}
document.addEventListener('keydown', (e) => {
  const parts = [];
  if (e.ctrlKey) parts.push('Control');
  if (e.shiftKey) parts.push('Shift');
  parts.push(e.key);
  document.getElementById('keys').textContent = parts.join('+');
});
const src = document.getElementById('src'), dst = document.getElementById('dst');
src.addEventListener('dragstart', (e) => e.dataTransfer.setData('text/plain', 'src'));
dst.addEventListener('dragover', (e) => e.preventDefault());
dst.addEventListener('drop', (e) => {
  e.preventDefault();
  const what = e.dataTransfer.getData('text/plain');
  document.getElementById('dropped').textContent = 'dropped ' + what;
});
</script></body></html>"""

ITEMS = """<!doctype html><html><head><title>Items</title></head><body>
<ul><li class="item">one</li><li class="item">two</li><li class="item">three</li></ul>
</body></html>"""

SCROLL = """<!doctype html><html><body>
<div id="box" style="height:100px;overflow:auto"><div style="height:2000px">tall</div></div>
<ul id="feed"></ul>
<script>
let n = 0;
function more() { for (let i = 0; i < 20; i++) {
  const li = document.createElement('li'); li.textContent = 'row ' + (n++);
  li.style.height = '40px'; document.getElementById('feed').appendChild(li); } }
more();
window.addEventListener('scroll', () => {
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 200) more();
});
</script></body></html>"""

SHADOW = """<!doctype html><html><body>
<shop-list></shop-list>
<script>
customElements.define('shop-list', class extends HTMLElement {
  connectedCallback() {
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = '<ul><li class="p">pear</li><li class="p">plum</li></ul>';
  }
});
</script></body></html>"""

COOKIE = """<!doctype html><html><head><title>Cookie</title></head><body><p id="c"></p>
<script>document.getElementById('c').textContent = document.cookie;</script></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    seen: list[str]

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        pages = {"/form": FORM, "/items": ITEMS, "/scroll": SCROLL, "/shadow": SHADOW}
        if path in pages:
            self._send(200, pages[path].encode(), "text/html; charset=utf-8")
        elif path == "/cookie":
            self._send(200, COOKIE.encode(), "text/html", Set_Cookie="flavour=oat; Path=/")
        elif path == "/redirect":
            self._send(302, b"", "text/plain", Location="/form")
        elif path == "/file.csv":
            self._send(
                200,
                b"a,b\n1,2\n",
                "text/csv",
                Content_Disposition='attachment; filename="file.csv"',
            )
        elif path == "/api/data":
            self._send(200, json.dumps({"items": [1, 2, 3]}).encode(), "application/json")
        elif path == "/api/fail":
            self._send(500, b"boom", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        echo = {
            "method": "POST",
            "body": body,
            "contentType": self.headers.get("Content-Type"),
            "token": self.headers.get("X-Token"),
        }
        self._send(200, json.dumps(echo).encode(), "application/json")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
