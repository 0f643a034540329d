"""WebRTC cannot send UDP around a run's egress proxy.

A page served here asks a STUN server, which is a UDP socket of the test's on loopback, for
its address. With the runner's launch arguments nothing reaches the socket; the same page in
a Chromium launched without the WebRTC policy does reach it, so the test can tell.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
import pytest_asyncio

from figranium_runner import browser as browser_module
from figranium_runner.browser import (
    CHROMIUM_ARGS,
    BrowserHost,
    find_chromium,
    find_headless_chromium,
)
from figranium_runner.context import open_context
from figranium_runner.egress import EgressPolicy
from tests.integration.pages import QuietHandler, serve_http

pytestmark = pytest.mark.asyncio(loop_scope="module")

_PAGE = b"""<!doctype html><html><head><title>STUN</title><script>
window.gathered = new Promise((resolve) => {
  const port = new URLSearchParams(location.search).get("stun");
  const connection = new RTCPeerConnection({iceServers: [{urls: `stun:127.0.0.1:${port}`}]});
  connection.createDataChannel("probe");
  connection.onicegatheringstatechange = () => {
    if (connection.iceGatheringState === "complete") resolve(true);
  };
  connection.createOffer().then((offer) => connection.setLocalDescription(offer));
});
</script></head><body></body></html>"""
# After gathering is complete, how long a late packet still counts.
_QUIET_SECONDS = 2.0
_GATHERING_SECONDS = 60.0
_MAGIC_COOKIE = 0x2112A442


class _Page(QuietHandler):
    def do_GET(self) -> None:
        self.send_body(_PAGE, "text/html")


class _Stun(asyncio.DatagramProtocol):
    """Answers binding requests, so gathering ends at once rather than after its retries."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.arrived = asyncio.Event()
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.append(data)
        self.arrived.set()
        if len(data) < 20 or data[:2] != b"\x00\x01" or self._transport is None:
            return
        # XOR-MAPPED-ADDRESS (RFC 5389 section 15.2) of the sender.
        address = int(ipaddress.IPv4Address(addr[0])) ^ _MAGIC_COOKIE
        port = addr[1] ^ (_MAGIC_COOKIE >> 16)
        attribute = struct.pack("!HHBBHI", 0x0020, 8, 0, 1, port, address)
        header = struct.pack("!HHI", 0x0101, len(attribute), _MAGIC_COOKIE) + data[8:20]
        self._transport.sendto(header + attribute, addr)


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    with serve_http(_Page) as url:
        yield f"{url}/stun"


@pytest_asyncio.fixture(loop_scope="module")
async def stun() -> AsyncIterator[tuple[_Stun, int]]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        _Stun, local_addr=("127.0.0.1", 0)
    )
    yield protocol, transport.get_extra_info("sockname")[1]
    transport.close()


def _executables() -> list[Any]:
    shell = find_headless_chromium(None, None)
    full = find_chromium(None)
    found = [pytest.param(shell, id="headless-shell")]
    if full is not None and full != shell:
        found.append(pytest.param(full, id="full-browser"))
    return found


async def _gather(host: BrowserHost, page_url: str, stun_port: int) -> None:
    """Open the page in a context as a run has it, until ICE gathering is complete."""
    context = await open_context(host, {}, None, EgressPolicy(allow_private=True))
    try:
        page = await context.new_page()
        await page.goto(f"{page_url}?stun={stun_port}")
        async with asyncio.timeout(_GATHERING_SECONDS):
            assert await page.evaluate("window.gathered") is True
    finally:
        await context.close()


async def _launched(executable: str | None) -> BrowserHost:
    # As headless runs launch it, only with this executable.
    host = BrowserHost(None, headless_path=executable)
    await host.start()
    return host


@pytest.mark.parametrize("executable", _executables())
async def test_stun_sends_nothing_around_the_proxy(
    executable: str | None, page_url: str, stun: tuple[_Stun, int]
) -> None:
    listener, port = stun
    host = await _launched(executable)
    try:
        await _gather(host, page_url, port)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(listener.arrived.wait(), _QUIET_SECONDS)
    finally:
        await host.close()
    assert listener.received == []


@pytest.mark.parametrize("executable", _executables())
async def test_without_the_policy_the_same_page_reaches_the_listener(
    executable: str | None,
    page_url: str,
    stun: tuple[_Stun, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without = [arg for arg in CHROMIUM_ARGS if "webrtc-ip-handling-policy" not in arg]
    assert len(without) == len(CHROMIUM_ARGS) - 2
    monkeypatch.setattr(browser_module, "CHROMIUM_ARGS", without)
    listener, port = stun
    host = await _launched(executable)
    try:
        await _gather(host, page_url, port)
    finally:
        await host.close()
    # A binding request: STUN's message type 0x0001 and its magic cookie.
    assert any(
        data[:2] == b"\x00\x01" and data[4:8] == _MAGIC_COOKIE.to_bytes(4, "big")
        for data in listener.received
    ), listener.received
