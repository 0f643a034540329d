"""A task's own proxy behind the run's egress proxy: pinned once per run, checked like any
other address, and reached only for destinations the URL policy allows.

The proxies here are the test's own, on loopback; their names resolve through a resolver
the test injects, so a name can "move" to a refused address without touching real DNS.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext
from playwright.async_api import Error as PlaywrightError

from figranium_common import outbound_urls
from figranium_common.errors import InvalidUrlError
from figranium_common.outbound_urls import IPAddress
from figranium_runner.browser import BrowserHost
from figranium_runner.context import open_context
from figranium_runner.egress import EgressPolicy
from services.runner.tests.navigation_site import METADATA, Blocks, Site

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROXY_NAME = "proxy.invalid"  # never in real DNS: only the injected resolver knows it
REFUSED = "ERR_SOCKS_CONNECTION_FAILED"


@dataclass
class Seen:
    """What a test proxy was asked for: one entry per connection that reached it."""

    connections: int = 0
    targets: list[str] = field(default_factory=list)
    credentials: list[str | None] = field(default_factory=list)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _tunnel(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    await asyncio.gather(_pipe(client[0], server[1]), _pipe(server[0], client[1]))


@dataclass
class LoopbackProxy:
    port: int
    seen: Seen


async def _http_connect_proxy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    seen.connections += 1
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request, *lines = head.split("\r\n")
        method, target, _ = request.split(" ")
        auth = next(
            (
                line.split(":", 1)[1].strip()
                for line in lines
                if line.lower().startswith("proxy-authorization:")
            ),
            None,
        )
        seen.targets.append(target)
        seen.credentials.append(auth)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        upstream = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _tunnel((reader, writer), upstream)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def _socks5_proxy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    """SOCKS5 that insists on username and password (RFC 1929)."""
    seen.connections += 1
    try:
        _, count = await reader.readexactly(2)
        if 2 not in await reader.readexactly(count):
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x02")
        _, length = await reader.readexactly(2)
        user = await reader.readexactly(length)
        (length,) = await reader.readexactly(1)
        password = await reader.readexactly(length)
        seen.credentials.append(f"{user.decode()}:{password.decode()}")
        writer.write(b"\x01\x00")
        _, _, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        seen.targets.append(f"{host}:{port}")
        upstream = await asyncio.open_connection(host, port)
        writer.write(b"\x05\x00\x00\x01" + bytes(4) + bytes(2))
        await writer.drain()
        await _tunnel((reader, writer), upstream)
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest_asyncio.fixture(loop_scope="module")
async def http_proxy() -> AsyncIterator[LoopbackProxy]:
    seen = Seen()
    server = await asyncio.start_server(
        lambda r, w: _http_connect_proxy(r, w, seen), "127.0.0.1", 0
    )
    yield LoopbackProxy(server.sockets[0].getsockname()[1], seen)
    server.close()


@pytest_asyncio.fixture(loop_scope="module")
async def socks_proxy() -> AsyncIterator[LoopbackProxy]:
    seen = Seen()
    server = await asyncio.start_server(lambda r, w: _socks5_proxy(r, w, seen), "127.0.0.1", 0)
    yield LoopbackProxy(server.sockets[0].getsockname()[1], seen)
    server.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[list[str]]]]:
    """Answers for PROXY_NAME, one list per lookup (the last one repeats); the lookups
    made are counted in the "asked" entry."""
    answers: dict[str, list[list[str]]] = {PROXY_NAME: [], "asked": []}
    real = outbound_urls._resolve

    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host != PROXY_NAME:
            return await real(host, port)
        answers["asked"].append([host])
        queue = answers[PROXY_NAME]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(address) for address in reply]

    monkeypatch.setattr(outbound_urls, "_resolve", resolve)
    yield answers


@pytest_asyncio.fixture(loop_scope="module")
async def contexts() -> AsyncIterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        await context.close()


async def _open(
    host: BrowserHost,
    contexts: list[BrowserContext],
    proxy: dict[str, Any],
    *,
    allow_private: bool,
) -> tuple[BrowserContext, Blocks]:
    blocks = Blocks()
    policy = EgressPolicy(allow_private=allow_private, on_block=blocks)
    context = await open_context(host, {"proxy": proxy}, None, policy)
    contexts.append(context)
    return context, blocks


async def test_a_proxy_named_by_host_is_used_at_its_pinned_address_only(
    host: BrowserHost,
    site: Site,
    http_proxy: LoopbackProxy,
    dns: dict[str, list[list[str]]],
    contexts: list[BrowserContext],
) -> None:
    # The first answer is the proxy; every later one points at the metadata address, as a
    # DNS record changed under a running task would.
    dns[PROXY_NAME] = [["127.0.0.1"], ["169.254.169.254"]]
    server = f"http://{PROXY_NAME}:{http_proxy.port}"
    context, blocks = await _open(
        host,
        contexts,
        {"server": server, "username": "user", "password": "secret"},
        allow_private=True,
    )
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    assert await page.title() == "Home"
    await page.goto(f"{site.base}/r1")
    assert page.url == f"{site.base}/final"

    site_target = site.base.removeprefix("http://")
    assert http_proxy.seen.connections >= 1
    assert set(http_proxy.seen.targets) == {site_target}
    expected = "Basic " + base64.b64encode(b"user:secret").decode()
    assert set(http_proxy.seen.credentials) == {expected}
    assert len(dns["asked"]) == 1  # pinned: resolved once for the whole run

    # The destination is checked before anything is tunnelled.
    with pytest.raises(PlaywrightError, match=REFUSED):
        await page.goto(METADATA)
    assert [target for target, _ in blocks.calls] == ["169.254.169.254:80"]
    assert set(http_proxy.seen.targets) == {site_target}


@pytest.mark.parametrize(
    ("allow_private", "answer", "reason"),
    [
        (False, "127.0.0.1", "loopback"),
        (True, "169.254.169.254", "cloud metadata endpoint"),
        (False, "10.1.2.3", "private"),
    ],
)
async def test_a_proxy_whose_name_resolves_to_a_refused_address_is_refused(
    host: BrowserHost,
    http_proxy: LoopbackProxy,
    dns: dict[str, list[list[str]]],
    contexts: list[BrowserContext],
    allow_private: bool,
    answer: str,
    reason: str,
) -> None:
    dns[PROXY_NAME] = [[answer]]
    before = http_proxy.seen.connections
    server = f"http://{PROXY_NAME}:{http_proxy.port}"
    with pytest.raises(InvalidUrlError) as refused:
        await _open(host, contexts, {"server": server}, allow_private=allow_private)
    assert refused.value.details.startswith(f"the proxy {server} is refused: ")
    assert f"resolves to a blocked address ({answer}: {reason})" in refused.value.details
    assert http_proxy.seen.connections == before  # nothing reached the proxy


async def test_a_socks5_proxy_gets_its_credentials_and_checked_addresses(
    host: BrowserHost,
    site: Site,
    socks_proxy: LoopbackProxy,
    dns: dict[str, list[list[str]]],
    contexts: list[BrowserContext],
) -> None:
    dns[PROXY_NAME] = [["127.0.0.1"]]
    context, blocks = await _open(
        host,
        contexts,
        {
            "server": f"socks5://{PROXY_NAME}:{socks_proxy.port}",
            "username": "user",
            "password": "secret",
        },
        allow_private=True,
    )
    page = await context.new_page()
    # By name: the egress proxy resolves it and hands the proxy the checked address.
    port = site.base.rsplit(":", 1)[1]
    await page.goto(f"http://localhost:{port}/")
    assert await page.title() == "Home"
    assert socks_proxy.seen.credentials
    assert set(socks_proxy.seen.credentials) == {"user:secret"}
    assert set(socks_proxy.seen.targets) <= {f"127.0.0.1:{port}", f"::1:{port}"}
    assert blocks.calls == []
