"""Browser identity against a real Chromium: user agent, client hints, viewport, proxy."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import web
from playwright.async_api import Page

from figranium_common.models import ProxyConfig, Task
from figranium_runner import identity
from figranium_runner.browser import BrowserHost

T = TypeVar("T")


class Pick(random.Random):
    """A Random whose choice() is fixed, to test one list entry at a time."""

    def __init__(self, index: int) -> None:
        super().__init__(0)
        self.index = index

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.index % len(seq)]


@dataclass
class EchoSite:
    url: str
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def echo() -> AsyncIterator[EchoSite]:
    """Records every request's headers; answers a small page."""
    site = EchoSite("")

    async def handle(request: web.Request) -> web.Response:
        site.requests.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(text="<!doctype html><p id=p>echo</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    site.url = f"http://{host}:{port}"
    try:
        yield site
    finally:
        await runner.cleanup()


@dataclass
class Proxy:
    """A plain-HTTP forward proxy that demands credentials and sends everything to ``upstream``."""

    upstream: tuple[str, int]
    port: int = 0
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (target, auth)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            method, target, _ = request_line.split(" ")
            headers = [line.split(": ", 1) for line in header_lines if line]
            auth = next((v for k, v in headers if k.lower() == "proxy-authorization"), None)
            self.seen.append((target, auth))
            if auth is None:
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            # Absolute-form target: forward the path, drop the hop-by-hop proxy headers.
            path = "/" + target.split("://", 1)[1].split("/", 1)[1]
            kept = [
                f"{k}: {v}"
                for k, v in headers
                if k.lower() not in ("proxy-authorization", "proxy-connection", "connection")
            ]
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            request = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"])
            up_writer.write((request + "\r\n\r\n").encode("latin-1"))
            writer.write(await up_reader.read())
            up_writer.close()
        finally:
            await writer.drain()
            writer.close()


@pytest.fixture
async def proxy(echo: EchoSite) -> AsyncIterator[Proxy]:
    host, port = echo.url.removeprefix("http://").split(":")
    proxy = Proxy((host, int(port)))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def host() -> AsyncIterator[BrowserHost]:
    browser = BrowserHost(None)
    await browser.start()
    try:
        yield browser
    finally:
        await browser.close()


async def open_page(host: BrowserHost, options: dict[str, Any]) -> Page:
    """What the worker does: a context with the options, then the page's own override."""
    context = await host.new_context(**options)
    page = await context.new_page()
    await identity.emulate(page, options)
    return page


def by_family() -> list[Any]:
    """One entry of each browser family, by its index in the list."""
    firsts: dict[str, int] = {}
    for index, entry in enumerate(identity.USER_AGENTS):
        firsts.setdefault(entry.browser, index)
    return [pytest.param(index, id=name) for name, index in firsts.items()]


def test_the_list_is_consistent() -> None:
    families = {(ua.browser, ua.platform) for ua in identity.USER_AGENTS}
    assert {"Windows", "macOS", "Linux"} <= {platform for _, platform in families}
    assert {"Chrome", "Edge", "Firefox", "Safari"} <= {browser for browser, _ in families}
    assert len(identity.USER_AGENTS) == len({ua.user_agent for ua in identity.USER_AGENTS})
    os_token = {"Windows": "Windows NT 10.0", "macOS": "Macintosh", "Linux": "Linux x86_64"}
    version_token = {
        "Chrome": "Chrome/{}.0.0.0",
        "Edge": "Edg/{}.0.0.0",
        "Firefox": "Firefox/{}",
        "Safari": "Version/{} Safari",
    }
    for ua in identity.USER_AGENTS:
        assert os_token[ua.platform] in ua.user_agent
        assert version_token[ua.browser].format(ua.version) in ua.user_agent
        assert ("Edg/" in ua.user_agent) == (ua.browser == "Edge")
        assert ua.chromium_based == ("Chrome/" in ua.user_agent)


def test_grease_follows_chromium() -> None:
    # Published headers of real releases.
    assert identity.chromium_brands(120, "Google Chrome") == [
        ("Not_A Brand", "8"),
        ("Chromium", "120"),
        ("Google Chrome", "120"),
    ]
    assert identity.chromium_brands(131, "Google Chrome") == [
        ("Google Chrome", "131"),
        ("Chromium", "131"),
        ("Not_A Brand", "24"),
    ]
    assert identity.chromium_brands(124, "Google Chrome") == [
        ("Chromium", "124"),
        ("Google Chrome", "124"),
        ("Not-A.Brand", "99"),
    ]


async def test_grease_matches_the_installed_chromium(host: BrowserHost, echo: EchoSite) -> None:
    page = await open_page(host, {})
    await page.goto(echo.url)
    brands = await page.evaluate("navigator.userAgentData.brands.map(b => [b.brand, b.version])")
    major = int(page.context.browser.version.split(".")[0])  # type: ignore[union-attr]
    # The headless shell names itself as a third brand, in the place the grease puts it.
    names = {name for name, _ in brands} - {"Chromium"}
    own = next((name for name in names if "Brand" not in name), None)
    assert own in (None, "HeadlessChrome")
    assert [tuple(b) for b in brands] == identity.chromium_brands(major, own)


def test_nothing_rotates_by_default() -> None:
    assert identity.context_options(Task(), [], random.Random()) == {}
    task = Task(rotateProxies=True)
    assert identity.context_options(task, [], random.Random()) == {}


@pytest.mark.parametrize("rotate", [False, True])
def test_the_one_proxy_chosen_at_dispatch_is_used(rotate: bool) -> None:
    """Run requests carry the proxy chosen at dispatch (the default one, for instance),
    whether or not the task rotates."""
    proxies = [ProxyConfig(server="http://p:1", username="u", password="pw")]
    options = identity.context_options(Task(rotateProxies=rotate), proxies, Pick(5))
    assert options == {"proxy": {"server": "http://p:1", "username": "u", "password": "pw"}}


def test_every_saved_proxy_as_the_previous_release_sent_them() -> None:
    proxies = [ProxyConfig(server=f"http://p:{port}") for port in (1, 2, 3)]
    options = identity.context_options(Task(rotateProxies=True), proxies, Pick(2))
    assert options["proxy"] == {"server": "http://p:3"}


@pytest.mark.parametrize("index", by_family())
async def test_rotated_user_agent_is_consistent(
    host: BrowserHost, echo: EchoSite, index: int
) -> None:
    chosen = identity.USER_AGENTS[index]
    options = identity.context_options(Task(rotateUserAgents=True), [], Pick(index))
    assert options["user_agent"] == chosen.user_agent
    page = await open_page(host, options)
    await page.goto(f"{echo.url}/first")
    seen = echo.requests[-1]
    assert seen["user-agent"] == chosen.user_agent
    assert await page.evaluate("navigator.userAgent") == chosen.user_agent
    expected_platform = {"Windows": "Win32", "macOS": "MacIntel", "Linux": "Linux x86_64"}
    assert await page.evaluate("navigator.platform") == expected_platform[chosen.platform]
    hints = {k: v for k, v in seen.items() if k.startswith("sec-ch-ua")}
    brands = await page.evaluate("navigator.userAgentData.brands.map(b => [b.brand, b.version])")
    if chosen.chromium_based:
        brand = "Google Chrome" if chosen.browser == "Chrome" else "Microsoft Edge"
        assert f'"{brand}";v="{chosen.major}"' in hints["sec-ch-ua"]
        assert f'"Chromium";v="{chosen.major}"' in hints["sec-ch-ua"]
        assert hints == chosen.client_hints()
        assert hints["sec-ch-ua-platform"] == f'"{chosen.platform}"'
        assert hints["sec-ch-ua-mobile"] == "?0"
        assert [tuple(b) for b in brands] == chosen.brands()
    else:
        # Real Firefox and Safari send no client hints at all.
        assert hints == {}
        assert brands == []
    # Still true after a navigation to another origin (another renderer process).
    await page.goto(f"{echo.url.replace('127.0.0.1', 'localhost')}/second")
    again = echo.requests[-1]
    assert again["user-agent"] == chosen.user_agent
    assert {k: v for k, v in again.items() if k.startswith("sec-ch-ua")} == hints
    await page.context.close()


async def test_random_user_agent_comes_from_the_list(host: BrowserHost, echo: EchoSite) -> None:
    options = identity.context_options(Task(rotateUserAgents=True), [], random.Random())
    page = await open_page(host, options)
    await page.goto(echo.url)
    agents = {ua.user_agent for ua in identity.USER_AGENTS}
    assert echo.requests[-1]["user-agent"] in agents
    assert await page.evaluate("navigator.userAgent") == echo.requests[-1]["user-agent"]
    await page.context.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_rotated_viewport(host: BrowserHost, echo: EchoSite, seed: int) -> None:
    options = identity.context_options(Task(rotateViewport=True), [], random.Random(seed))
    page = await open_page(host, options)
    await page.goto(echo.url)
    size = await page.evaluate("[window.innerWidth, window.innerHeight]")
    assert tuple(size) in identity.VIEWPORTS
    assert tuple(size) == (options["viewport"]["width"], options["viewport"]["height"])
    await page.context.close()


async def test_rotated_proxy_with_credentials(
    host: BrowserHost, echo: EchoSite, proxy: Proxy
) -> None:
    proxies = [
        ProxyConfig(server=f"http://127.0.0.1:{proxy.port}", username="ann", password="s3cret"),
        ProxyConfig(server=f"http://127.0.0.1:{proxy.port}", username="bob", password="hunter2"),
    ]
    options = identity.context_options(Task(rotateProxies=True), proxies, random.Random())
    chosen = options["proxy"]
    page = await open_page(host, options)
    # The name does not resolve: the page can only come through the proxy.
    response = await page.goto("http://identity.test/via-proxy")
    assert response is not None and response.ok
    assert await page.text_content("#p") == "echo"
    token = base64.b64encode(f"{chosen['username']}:{chosen['password']}".encode()).decode()
    assert ("http://identity.test/via-proxy", f"Basic {token}") in proxy.seen
    assert "proxy-authorization" not in echo.requests[-1]
    await page.context.close()


def test_description_leaves_credentials_out() -> None:
    proxies = [ProxyConfig(server="http://user:pw@proxy.example:8080", username="u", password="p")]
    task = Task(rotateProxies=True, rotateUserAgents=True, rotateViewport=True)
    options = identity.context_options(task, proxies, Pick(0))
    described = identity.describe(options)
    assert described["proxy"] == "http://proxy.example:8080"
    assert described["user_agent"] == "Chrome 156 on Windows"
    assert "pw" not in str(described) and "'p'" not in str(described)
