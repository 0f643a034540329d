"""A site of pages, redirects, forms and downloads for the browser's URL-policy tests."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from playwright.async_api import Page

from tests.integration.pages import QuietHandler, serve_http

METADATA = "http://169.254.169.254/latest/meta-data/"
_PIXEL = bytes.fromhex(
    "47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b"
)


def _page(title: str, body: str = "") -> bytes:
    head = f"<!doctype html><html><head><title>{title}</title></head>"
    return f"{head}<body>{body}</body></html>".encode()


class _Handler(QuietHandler):
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
        elif path == "/resources":
            # An image here and one at the metadata address; a script fetch to each.
            body = (
                f'<img id="own" src="/pixel.gif"><img id="meta" src="{METADATA}">'
                "<script>"
                "fetch('/data.txt').then(r => r.text()).then(t => document.title = t);"
                f"fetch('{METADATA}').catch(() => document.body.dataset.meta = 'failed');"
                "</script>"
            )
            self._send(_page("Resources", body))
        elif path == "/data.txt":
            self._send(b"fetched", content_type="text/plain")
        elif path == "/pixel.gif":
            self._send(_PIXEL, content_type="image/gif")
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
        headers = {"Content-Disposition": disposition} if disposition else {}
        if gz:
            headers["Content-Encoding"] = "gzip"
        self.send_body(body, content_type, headers)


@dataclass
class Site:
    base: str
    seen: list[str]


@contextmanager
def serve_site() -> Iterator[Site]:
    seen: list[str] = []
    with serve_http(type("Handler", (_Handler,), {"seen": seen})) as url:
        yield Site(url, seen)


@dataclass
class Blocks:
    calls: list[tuple[str, str]] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, url: str, reason: str) -> None:
        self.calls.append((url, reason))
        self.event.set()

    async def wait(self, count: int = 1) -> None:
        """Until there are count calls."""
        async with asyncio.timeout(10):
            while True:
                self.event.clear()
                if len(self.calls) >= count:
                    return
                await self.event.wait()


async def post_form(page: Page, base: str, status: int) -> tuple[str | None, str | None]:
    """Send the site's form that is answered with ``status`` (303 or 307); the method and
    body the page at the end of the redirect received."""
    await page.goto(f"{base}/form")
    async with page.expect_navigation(url=f"{base}/echo"):
        await page.click(f"#send{status}")
    return await page.text_content("#method"), await page.text_content("#body")
