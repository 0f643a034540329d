"""Local pages for the stealth tests: what bot-detection scripts look at, a page that
records the mouse and keyboard events it sees, block pages and a cookie banner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.pages import QuietHandler, serve_http

# What detection scripts check, reported as JSON in #report once read.
DETECT = """<!doctype html><html><head><title>Detect</title></head><body><pre id="report"></pre>
<script>
(async () => {
  const r = {};
  r.webdriver = navigator.webdriver;
  r.userAgent = navigator.userAgent;
  r.platform = navigator.platform;
  r.languages = navigator.languages;
  r.plugins = navigator.plugins.length;
  r.pluginNames = Array.from(navigator.plugins).map((p) => p.name);
  r.pluginsIsArray = navigator.plugins instanceof PluginArray;
  r.mimeTypes = navigator.mimeTypes.length;
  r.pdfViewerEnabled = navigator.pdfViewerEnabled;
  r.chrome = typeof window.chrome === 'object' && window.chrome !== null;
  const status = await navigator.permissions.query({ name: 'notifications' });
  r.permission = status.state;
  r.notification = Notification.permission;
  const gl = document.createElement('canvas').getContext('webgl');
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  r.webglVendor = gl.getParameter(info.UNMASKED_VENDOR_WEBGL);
  r.webglRenderer = gl.getParameter(info.UNMASKED_RENDERER_WEBGL);
  r.getParameterSource = WebGLRenderingContext.prototype.getParameter.toString();
  r.pluginsGetter = Object.getOwnPropertyDescriptor(Navigator.prototype, 'plugins').get.toString();
  r.ownNavigatorProps = Object.getOwnPropertyNames(navigator);
  r.brands = navigator.userAgentData ? navigator.userAgentData.brands.map((b) => b.brand) : null;
  r.uaPlatform = navigator.userAgentData ? navigator.userAgentData.platform : null;
  r.frame = window.outerHeight - window.innerHeight;
  const el = document.getElementById('report');
  el.textContent = JSON.stringify(r);
  el.dataset.done = '1';
})();
</script></body></html>"""

# Records what a person's mouse and keyboard would make the page see.
EVENTS = """<!doctype html><html><head><title>Events</title>
<style>body { margin: 0; height: 3000px } #btn { position: absolute; left: 700px; top: 420px;
width: 160px; height: 60px } #field { position: absolute; left: 700px; top: 520px }</style>
</head><body>
<button id="btn" onclick="this.dataset.clicked = (+(this.dataset.clicked || 0) + 1)">Go</button>
<input id="field">
<script>
window.seen = [];
const note = (e) => {
  const entry = { type: e.type, trusted: e.isTrusted };
  if (e.clientX !== undefined) { entry.x = e.clientX; entry.y = e.clientY; }
  if (e.key !== undefined) entry.key = e.key;
  if (e.target && e.target.id) entry.target = e.target.id;
  window.seen.push(entry);
};
['mousemove', 'mousedown', 'mouseup', 'click', 'keydown'].forEach(
  (type) => document.addEventListener(type, note, true));
window.addEventListener('scroll', () => window.seen.push({ type: 'scroll', y: window.scrollY }));
</script></body></html>"""

PLAIN = """<!doctype html><html><head><title>Shop</title></head>
<body><h1>Products</h1><p>Fresh pears.</p></body></html>"""

CAPTCHA = """<!doctype html><html><head><title>Sign in</title></head><body>
<form><div class="g-recaptcha" data-sitekey="k"></div>
<textarea id="g-recaptcha-response" name="g-recaptcha-response">{answer}</textarea></form>
</body></html>"""

CHALLENGE = """<!doctype html><html><head><title>Just a moment...</title></head><body>
<h1>Checking your browser before accessing the site.</h1>
<script>/* access denied: request blocked (only in a script, which does not count) */</script>
</body></html>"""

# A consent banner (OneTrust's markup) that appears after the page has loaded, as they do.
BANNER = """<!doctype html><html><head><title>News</title></head><body><h1>News</h1>
<script>
setTimeout(() => {
  const banner = document.createElement('div');
  banner.id = 'onetrust-banner-sdk';
  banner.innerHTML = '<p>We use cookies</p>'
    + '<button id="onetrust-accept-btn-handler">Accept all</button>';
  document.body.appendChild(banner);
  document.getElementById('onetrust-accept-btn-handler').addEventListener('click', () => {
    banner.remove();
    const done = document.createElement('p');
    done.id = 'accepted';
    document.body.appendChild(done);
  });
}, 150);
</script></body></html>"""


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        html = "text/html; charset=utf-8"
        if path == "/blocked":
            self.send_body(b"<!doctype html><title>Forbidden</title><p>No.", html, status=403)
        elif path == "/limited":
            self.send_body(b"<!doctype html><title>Slow down</title>", html, status=429)
        elif path == "/captcha":
            self.send_body(CAPTCHA.replace("{answer}", "").encode(), html)
        elif path == "/captcha-solved":
            self.send_body(CAPTCHA.replace("{answer}", "03AGdBq2").encode(), html)
        else:
            pages = {"/detect": DETECT, "/events": EVENTS, "/challenge": CHALLENGE}
            pages |= {"/banner": BANNER, "/plain": PLAIN}
            self.send_body(pages.get(path, PLAIN).encode(), html)


@contextmanager
def serve() -> Iterator[str]:
    """The pages for the block; yields the base URL."""
    with serve_http(_Handler) as url:
        yield url
