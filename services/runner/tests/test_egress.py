"""A run's context behind its egress proxy, in a real Chromium against a site served here."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext
from playwright.async_api import Error as PlaywrightError

from figranium_runner import context as context_module
from figranium_runner import egress
from figranium_runner.browser import BrowserHost
from figranium_runner.context import open_context
from figranium_runner.egress import EgressPolicy, EgressProxy
from figranium_runner.upstream_proxy import Upstream
from services.runner.tests.navigation_site import METADATA, Blocks, Site, post_form

pytestmark = pytest.mark.asyncio(loop_scope="module")

METADATA_TARGET = "169.254.169.254:80"
REFUSED = "ERR_SOCKS_CONNECTION_FAILED"

Opener = Callable[..., Awaitable[tuple[BrowserContext, Blocks]]]


@pytest_asyncio.fixture(loop_scope="module")
async def opened(host: BrowserHost, site: Site) -> AsyncIterator[Opener]:
    """Opens contexts as a run does (context_module.open_context); closes them afterwards."""
    site.seen.clear()
    contexts: list[BrowserContext] = []

    async def open_one(
        *, allow_private: bool, options: dict[str, Any] | None = None
    ) -> tuple[BrowserContext, Blocks]:
        blocks = Blocks()
        policy = EgressPolicy(allow_private=allow_private, on_block=blocks)
        context = await open_context(host, options or {}, None, policy)
        contexts.append(context)
        return context, blocks

    yield open_one
    for context in contexts:
        await context.close()


async def test_pages_redirects_and_their_cookies_load(opened: Opener, site: Site) -> None:
    context, blocks = await opened(allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    assert await page.title() == "Home"
    await page.goto(f"{site.base}/r1")
    assert page.url == f"{site.base}/final"
    assert await page.text_content("#cookie") == "hop=1"
    assert site.seen == ["GET /", "GET /r1", "GET /r2", "GET /final"]
    assert blocks.calls == []


async def test_a_redirect_to_the_metadata_address_never_connects(
    opened: Opener, site: Site
) -> None:
    context, blocks = await opened(allow_private=True)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match=REFUSED):
        await page.goto(f"{site.base}/to-metadata")
    assert [target for target, _ in blocks.calls] == [METADATA_TARGET]
    assert "blocked address" in blocks.calls[0][1]
    assert "cloud metadata endpoint" in blocks.calls[0][1]


async def test_a_link_and_an_iframe_to_the_metadata_address_are_refused(
    opened: Opener, site: Site
) -> None:
    context, blocks = await opened(allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/frame")
    await blocks.wait()
    assert await page.title() == "Framed"
    blocks.calls.clear()
    await page.goto(f"{site.base}/")
    await page.click("#meta", no_wait_after=True)
    await blocks.wait()
    assert [target for target, _ in blocks.calls] == [METADATA_TARGET]
    assert page.url == f"{site.base}/"


async def test_sub_resources_are_checked_too(opened: Opener, site: Site) -> None:
    context, blocks = await opened(allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/resources")
    await page.wait_for_function("document.body.dataset.meta === 'failed'")
    await page.wait_for_function("document.title === 'fetched'")  # its own fetch went out
    assert await page.evaluate("document.getElementById('own').naturalWidth") == 1
    assert await page.evaluate("document.getElementById('meta').naturalWidth") == 0
    assert {target for target, _ in blocks.calls} == {METADATA_TARGET}
    assert {"GET /pixel.gif", "GET /data.txt"} <= set(site.seen)


async def test_private_addresses_are_refused_unless_allowed(opened: Opener, site: Site) -> None:
    context, blocks = await opened(allow_private=False)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match=REFUSED):
        await page.goto(f"{site.base}/")
    page = await context.new_page()  # the first shows Chromium's error page
    await page.evaluate(f"setTimeout(() => location.href = '{site.base}/x')")
    await blocks.wait(2)
    await asyncio.sleep(0.3)  # time for a request that should not come
    port = site.base.rsplit(":", 1)[1]
    assert [target for target, _ in blocks.calls] == [f"127.0.0.1:{port}"] * 2
    assert "loopback" in blocks.calls[0][1]
    assert site.seen == []


async def test_localhost_by_name_is_refused(opened: Opener) -> None:
    context, blocks = await opened(allow_private=False)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match=REFUSED):
        await page.goto("http://localhost:8088/")
    assert blocks.calls == [("localhost:8088", "host 'localhost' is a private address (localhost)")]


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://[::1]:8080/", "[::1]:8080"),
        ("http://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]:80"),
        ("http://0x7f.1/", "127.0.0.1:80"),
        ("http://shop.localhost/", "shop.localhost:80"),
    ],
)
async def test_other_spellings_of_loopback_are_refused(
    opened: Opener, url: str, target: str
) -> None:
    context, blocks = await opened(allow_private=False)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match=REFUSED):
        await page.goto(url)
    assert [called for called, _ in blocks.calls] == [target]


@pytest.mark.parametrize(("status", "method", "body"), [(307, "POST", "a=307"), (303, "GET", "")])
async def test_forms_redirects_and_downloads_work_as_in_a_browser(
    opened: Opener, site: Site, status: int, method: str, body: str
) -> None:
    context, _ = await opened(allow_private=True)
    page = await context.new_page()
    assert await post_form(page, site.base, status) == (method, body)
    await page.goto(f"{site.base}/form")
    async with page.expect_download() as downloading:
        await page.click("#dl")
    saved = Path(await (await downloading.value).path())
    assert await asyncio.to_thread(saved.read_text) == "a,b\n1,2\n"
    await page.goto(f"{site.base}/gzip")
    assert await page.text_content("#z") == "unzipped fine"


async def test_unreachable_hosts_fail_without_a_block(opened: Opener) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context, blocks = await opened(allow_private=True)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match=REFUSED):
        await page.goto("http://no-such-host.invalid/")
    with pytest.raises(PlaywrightError, match=REFUSED):
        await page.goto(f"http://127.0.0.1:{port}/")
    assert blocks.calls == []


async def test_the_proxy_closes_with_its_context(
    host: BrowserHost, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[EgressProxy] = []

    class Recorded(EgressProxy):
        @classmethod
        async def start(cls, policy: EgressPolicy, upstream: Upstream | None = None) -> EgressProxy:
            proxy = await super().start(policy, upstream)
            started.append(proxy)
            return proxy

    monkeypatch.setattr(context_module, "EgressProxy", Recorded)
    context = await open_context(host, {}, None, EgressPolicy(allow_private=True))
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    (proxy,) = started
    port = proxy.port
    await context.close()

    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                break
            writer.close()
            await asyncio.sleep(0.05)


async def test_a_context_with_the_tasks_proxy_keeps_its_egress_proxy(opened: Opener) -> None:
    # Nothing listens on the task's proxy: only the egress proxy can answer for it.
    context, blocks = await opened(
        allow_private=True, options={"proxy": {"server": "http://127.0.0.1:9"}}
    )
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match=REFUSED):
        await page.goto(METADATA)
    assert [target for target, _ in blocks.calls] == [METADATA_TARGET]


# --- the SOCKS5 conversation itself ------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def proxy() -> AsyncIterator[EgressProxy]:
    started = await EgressProxy.start(EgressPolicy(allow_private=True))
    yield started
    await started.close()


async def _exchange(port: int, *messages: bytes, expect: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for message in messages:
            writer.write(message)
        await writer.drain()
        return await asyncio.wait_for(reader.read(expect), timeout=10)
    finally:
        writer.close()


async def test_a_client_without_the_no_auth_method_is_turned_away(proxy: EgressProxy) -> None:
    assert await _exchange(proxy.port, b"\x05\x01\x02", expect=2) == b"\x05\xff"


async def test_commands_other_than_connect_are_refused(proxy: EgressProxy) -> None:
    bind = b"\x05\x02\x00\x01\x7f\x00\x00\x01\x1f\x90"
    answer = await _exchange(proxy.port, b"\x05\x01\x00", bind, expect=12)
    assert answer[:2] == b"\x05\x00"  # no authentication
    assert answer[2:4] == b"\x05\x07"  # command not supported


@pytest.mark.parametrize("name", [b"example.com@127.0.0.1", b"127.0.0.1/x", b"a b"])
async def test_a_name_that_is_not_a_host_is_refused(proxy: EgressProxy, name: bytes) -> None:
    connect = b"\x05\x01\x00\x03" + bytes((len(name),)) + name + (80).to_bytes(2, "big")
    answer = await _exchange(proxy.port, b"\x05\x01\x00", connect, expect=12)
    assert answer[2:4] == b"\x05\x02"  # not allowed by ruleset


async def test_a_connect_reaches_the_checked_address(proxy: EgressProxy, site: Site) -> None:
    port = int(site.base.rsplit(":", 1)[1])
    name = b"localhost"
    connect = b"\x05\x01\x00\x03" + bytes((len(name),)) + name + port.to_bytes(2, "big")
    request = b"GET /data.txt HTTP/1.0\r\nHost: localhost\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"\x05\x01\x00" + connect)
        assert await reader.readexactly(2) == b"\x05\x00"
        reply = await reader.readexactly(4)
        assert reply[:2] == b"\x05\x00"
        await reader.readexactly(4 + 2 if reply[3] == 1 else 16 + 2)
        writer.write(request)
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.0 200")
    assert response.endswith(b"fetched")


async def test_a_client_that_says_nothing_is_dropped(
    proxy: EgressProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(egress, "HANDSHAKE_TIMEOUT_S", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    finally:
        writer.close()


async def _tunnel(
    proxy: EgressProxy, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
    assert await reader.readexactly(2) == b"\x05\x00"
    reply = await reader.readexactly(10)
    assert reply[:2] == b"\x05\x00"
    return reader, writer


async def test_a_tunnel_carries_bulk_both_ways_with_back_pressure_and_half_closes(
    proxy: EgressProxy,
) -> None:
    # A server that reads everything until the client's end of file, then answers with as
    # much again, reversed, and closes: the tunnel must pass the half-close on, keep the
    # other direction open, and hold bytes back while a side reads slowly.
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()
        writer.write(received[::-1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await _tunnel(proxy, port)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        await asyncio.sleep(0.5)  # the answer piles up while nobody reads it
        chunks = []
        async with asyncio.timeout(30):
            while chunk := await reader.read(64 * 1024):
                chunks.append(chunk)
                await asyncio.sleep(0)  # a slow reader
        writer.close()
        assert b"".join(chunks) == payload[::-1]
    finally:
        server.close()
        await server.wait_closed()


async def test_bytes_sent_before_the_answer_are_passed_on(proxy: EgressProxy) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(5))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        connect = b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big")
        writer.write(b"\x05\x01\x00" + connect + b"early")  # all at once, without waiting
        async with asyncio.timeout(10):
            assert await reader.readexactly(2) == b"\x05\x00"
            assert (await reader.readexactly(10))[:2] == b"\x05\x00"
            assert await reader.read() == b"early"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
