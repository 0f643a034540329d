"""The navigation guard in a real Chromium, against a site served by the test."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext
from playwright.async_api import Error as PlaywrightError

from figranium_runner.browser import BrowserHost
from figranium_runner.guard import install_navigation_guard

pytestmark = pytest.mark.asyncio(loop_scope="module")

METADATA = "http://169.254.169.254/latest/meta-data/"


def _page(title: str, body: str = "") -> bytes:
    head = f"<!doctype html><html><head><title>{title}</title></head>"
    return f"{head}<body>{body}</body></html>".encode()


class _Handler(BaseHTTPRequestHandler):
    seen: list[str]  # set per server, "METHOD /path"

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        path = self.path
        if path == "/r1":
            self._redirect(302, "/r2", cookie="hop=1; Path=/")
        elif path == "/r2":
            self._redirect(302, f"http://{self.headers['Host']}/final")  # absolute
        elif path == "/to-slow":
            self._redirect(302, "/slow")
        elif path == "/slow":
            time.sleep(1)
            self._send(_page("Slow"))
        elif path == "/to-metadata":
            self._redirect(302, METADATA)
        elif path in ("/post307", "/post303"):
            self._redirect(int(path[-3:]), "/echo")
        elif path.startswith("/chain/"):
            remaining = int(path.removeprefix("/chain/"))
            self._redirect(302, f"/chain/{remaining - 1}" if remaining else "/final")
        elif path == "/dl-redirect":
            self._redirect(302, "/file.csv")
        elif path == "/file.csv":
            self._send(b"a,b\n1,2\n", content_type="text/csv", disposition="attachment")
        elif path == "/final":
            self._send(_page("Final", f'<p id="cookie">{self.headers.get("Cookie", "")}</p>'))
        elif path == "/echo":
            self._send(_page("Echo", f'<p id="method">{self.command}</p><p id="body">{body}</p>'))
        elif path == "/form":
            forms = "".join(
                f'<form method="post" action="/post{status}"><input name="a" value="{status}">'
                f'<button id="send{status}">Send</button></form>'
                for status in (303, 307)
            )
            self._send(_page("Form", forms + '<a id="dl" href="/dl-redirect">download</a>'))
        elif path == "/gzip":
            self._send(gzip.compress(_page("Zipped", "<p id='z'>unzipped fine</p>")), gz=True)
        elif path == "/frame":
            self._send(_page("Framed", f'<iframe src="{METADATA}"></iframe>'))
        else:
            links = f'<a id="meta" href="{METADATA}">meta</a><a id="chain" href="/r1">chain</a>'
            self._send(_page("Home", links))

    def _redirect(self, status: int, location: str, cookie: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(
        self,
        body: bytes,
        *,
        gz: bool = False,
        content_type: str = "text/html; charset=utf-8",
        disposition: str | None = None,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if disposition:
            self.send_header("Content-Disposition", disposition)
        if gz:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Site:
    base: str
    seen: list[str]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    seen: list[str] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Site(f"http://127.0.0.1:{server.server_address[1]}", seen)
    server.shutdown()
    server.server_close()
    thread.join()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def host() -> AsyncIterator[BrowserHost]:
    browser = BrowserHost(None)
    await browser.start()
    yield browser
    await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(host: BrowserHost, site: Site) -> AsyncIterator[BrowserContext]:
    site.seen.clear()
    ctx = await host.new_context()
    yield ctx
    await ctx.close()


@dataclass
class Blocks:
    calls: list[tuple[str, str]] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, url: str, reason: str) -> None:
        self.calls.append((url, reason))
        self.event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.event.wait(), timeout=10)


async def _guard(context: BrowserContext, *, allow_private: bool) -> Blocks:
    blocks = Blocks()
    await install_navigation_guard(context, allow_private=allow_private, on_block=blocks)
    return blocks


async def test_pages_and_redirect_chains_load(context: BrowserContext, site: Site) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    assert await page.title() == "Home"

    await page.goto(f"{site.base}/r1")
    assert page.url == f"{site.base}/final"
    assert await page.title() == "Final"
    # The cookie set on a redirect hop travels on, as with a browser-followed redirect.
    assert await page.text_content("#cookie") == "hop=1"
    assert site.seen == ["GET /", "GET /r1", "GET /r2", "GET /final"]  # each hop fetched once
    assert blocks.calls == []


async def test_goto_waits_for_the_page_at_the_end_of_a_redirect(
    context: BrowserContext, site: Site
) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/to-slow")
    assert page.url == f"{site.base}/slow"
    assert await page.title() == "Slow"


async def test_a_link_through_redirects_loads(context: BrowserContext, site: Site) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    await page.click("#chain")
    await page.wait_for_url(f"{site.base}/final")
    assert await page.title() == "Final"


async def test_a_redirect_to_the_metadata_address_is_blocked(
    context: BrowserContext, site: Site
) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        await page.goto(f"{site.base}/to-metadata")
    assert [url for url, _ in blocks.calls] == [METADATA]
    assert "blocked address" in blocks.calls[0][1]


async def test_a_link_to_the_metadata_address_is_blocked(
    context: BrowserContext, site: Site
) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    await page.click("#meta", no_wait_after=True)
    await blocks.wait()
    assert [url for url, _ in blocks.calls] == [METADATA]
    assert page.url == f"{site.base}/"


async def test_an_iframe_to_the_metadata_address_is_blocked(
    context: BrowserContext, site: Site
) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/frame")
    await blocks.wait()
    assert await page.title() == "Framed"
    assert [url for url, _ in blocks.calls] == [METADATA]


async def test_a_private_address_is_refused(context: BrowserContext, site: Site) -> None:
    blocks = await _guard(context, allow_private=False)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        await page.goto(f"{site.base}/")
    assert [url for url, _ in blocks.calls] == [f"{site.base}/"]
    assert site.seen == []


async def test_a_script_navigation_to_a_private_address_never_leaves(
    context: BrowserContext, site: Site
) -> None:
    blocks = await _guard(context, allow_private=False)
    page = await context.new_page()
    await page.set_content(f"<script>location.href = '{site.base}/x'</script>")
    await blocks.wait()
    await asyncio.sleep(0.3)  # time for a request that should not come
    assert [url for url, _ in blocks.calls] == [f"{site.base}/x"]
    assert site.seen == []


async def test_a_gzipped_page_renders(context: BrowserContext, site: Site) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/gzip")
    assert await page.text_content("#z") == "unzipped fine"


@pytest.mark.parametrize(("status", "method", "body"), [(307, "POST", "a=307"), (303, "GET", "")])
async def test_a_posted_form_is_redirected_like_a_browser_would(
    context: BrowserContext, site: Site, status: int, method: str, body: str
) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/form")
    async with page.expect_navigation(url=f"{site.base}/echo"):
        await page.click(f"#send{status}")
    assert await page.text_content("#method") == method
    assert await page.text_content("#body") == body
    assert site.seen[-2:] == [f"POST /post{status}", f"{method} /echo"]


async def test_five_redirects_are_followed(context: BrowserContext, site: Site) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/chain/4")  # four to /chain/0, a fifth to /final
    assert page.url == f"{site.base}/final"


async def test_a_sixth_redirect_is_refused(context: BrowserContext, site: Site) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        await page.goto(f"{site.base}/chain/5")
    assert blocks.calls == [(f"{site.base}/final", "more than 5 redirects")]
    assert "GET /final" not in site.seen


async def test_a_download_behind_a_redirect_leaves_the_page_alone(
    context: BrowserContext, site: Site
) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/form")
    async with page.expect_download() as downloading:
        await page.click("#dl")
    download = await downloading.value
    saved = Path(await download.path())
    assert await asyncio.to_thread(saved.read_text) == "a,b\n1,2\n"
    assert page.url == f"{site.base}/form"
    assert await page.title() == "Form"


async def test_an_unresolvable_host_is_a_dns_error_not_a_block(context: BrowserContext) -> None:
    blocks = await _guard(context, allow_private=False)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_NAME_NOT_RESOLVED"):
        await page.goto("http://no-such-host.invalid/")
    assert blocks.calls == []


async def test_a_refused_connection_shows_as_such(context: BrowserContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await _guard(context, allow_private=True)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_CONNECTION_REFUSED"):
        await page.goto(f"http://127.0.0.1:{port}/")
