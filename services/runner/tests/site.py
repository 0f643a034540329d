"""A small test site for the action engine, served on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.pages import QuietHandler, serve_http

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


class _Handler(QuietHandler):
    seen: list[str]  # set per server: every GET's path, query included

    def do_GET(self) -> None:
        self.seen.append(self.path)
        path = self.path.split("?")[0]
        pages = {"/form": FORM, "/items": ITEMS, "/scroll": SCROLL, "/shadow": SHADOW}
        if path in pages:
            self.send_body(pages[path].encode(), "text/html; charset=utf-8")
        elif path == "/cookie":
            self.send_body(COOKIE.encode(), "text/html", {"Set-Cookie": "flavour=oat; Path=/"})
        elif path == "/redirect":
            self.send_body(b"", "text/plain", {"Location": "/form"}, status=302)
        elif path == "/file.csv":
            disposition = 'attachment; filename="file.csv"'
            self.send_body(b"a,b\n1,2\n", "text/csv", {"Content-Disposition": disposition})
        elif path == "/api/data":
            self.send_body(json.dumps({"items": [1, 2, 3]}).encode(), "application/json")
        elif path == "/api/fail":
            self.send_body(b"boom", "text/plain", status=500)
        else:
            self.send_body(b"not found", "text/plain", status=404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        echo = {
            "method": "POST",
            "body": body,
            "contentType": self.headers.get("Content-Type"),
            "token": self.headers.get("X-Token"),
        }
        self.send_body(json.dumps(echo).encode(), "application/json")


@contextmanager
def serve() -> Iterator[tuple[str, list[str]]]:
    """The site for the block; yields its base URL and the paths it has been asked for."""
    seen: list[str] = []
    with serve_http(type("Handler", (_Handler,), {"seen": seen})) as url:
        yield url, seen
