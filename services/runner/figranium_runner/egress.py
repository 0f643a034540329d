"""A browser context's way out: a SOCKS5 proxy on loopback that applies the URL policy.

Chromium hands every connection of a context that has this proxy to it, by name: pages,
each redirect hop, frames, sub-resources, WebSockets, downloads, service workers, and
``context.request``. With ``<-loopback>`` in the bypass list, loopback hosts come here
too instead of being reached directly. The proxy resolves the name, checks every answer
with :func:`check_url`'s rules, and connects to exactly the addresses it checked, so a
second, different DNS answer is never used. A refused connection gets SOCKS reply 2 (not
allowed by ruleset), which Chromium shows as ``net::ERR_SOCKS_CONNECTION_FAILED``.

Compared with checking navigations in Playwright's request routing (``guard.py``, still used
for contexts that go out through a proxy of the task's), nothing passes through the driver:
Chromium fetches as it normally would, and the check costs one local hop per connection.

Each context gets a listener of its own, so a refusal is told to the run that caused it; the
listener closes, cutting its tunnels, when the context closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from figranium_common.errors import InvalidUrlError
from figranium_common.settings import Settings
from figranium_common.urls import IPAddress, check_url

log = structlog.get_logger(__name__)

_VERSION = 5
_NO_AUTH = 0
_NO_ACCEPTABLE_METHOD = 0xFF
_CONNECT = 1
_IPV4, _NAME, _IPV6 = 1, 3, 4
# RFC 1928 section 6 replies.
_SUCCEEDED = 0
_NOT_ALLOWED = 2
_HOST_UNREACHABLE = 4
_CONNECTION_REFUSED = 5
_COMMAND_NOT_SUPPORTED = 7
_ADDRESS_TYPE_NOT_SUPPORTED = 8

HANDSHAKE_TIMEOUT_S = 10.0  # a client that opens a connection and says nothing
CONNECT_TIMEOUT_S = 30.0  # per address, as a browser would wait for a TCP connect
_CHUNK = 256 * 1024
_HOST = re.compile(r"[A-Za-z0-9._\-]+|[0-9A-Fa-f:.]+")


@dataclass(frozen=True)
class EgressPolicy:
    """check_url's settings, and who hears of a refused connection (target, reason)."""

    allow_private: bool
    allow_metadata: bool = False
    on_block: Callable[[str, str], None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, on_block: Callable[[str, str], None] | None = None
    ) -> EgressPolicy:
        return cls(
            allow_private=settings.allow_private_networks,
            allow_metadata=settings.allow_metadata_address,
            on_block=on_block,
        )


class EgressProxy:
    """One context's SOCKS5 proxy. Start it, give :attr:`browser_proxy` to the context."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, policy: EgressPolicy) -> EgressProxy:
        proxy = cls(policy)
        proxy._server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
        return proxy

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def browser_proxy(self) -> dict[str, str]:
        """Playwright's ``proxy`` option: this proxy, for loopback hosts too."""
        return {"server": f"socks5://127.0.0.1:{self.port}", "bypass": "<-loopback>"}

    async def close(self) -> None:
        """Stop listening and cut every open tunnel."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        await self._server.wait_closed()

    def close_soon(self) -> None:
        """close() from a synchronous callback, such as a context's close event."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                target = await _read_request(reader, writer)
            if target is None:
                return
            connected = await self._connect(writer, *target)
            if connected is None:
                return
            upstream_reader, upstream = connected
            self._open.add(upstream)
            await asyncio.gather(
                _copy(reader, upstream, writer), _copy(upstream_reader, writer, upstream)
            )
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the browser or the server went away; the other side is closed below
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._open.discard(end)
                    end.close()

    async def _connect(
        self, writer: asyncio.StreamWriter, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The checked connection, answered to the browser; None if refused (and answered)."""
        policy = self._policy
        if not _HOST.fullmatch(host):  # the check reads the host inside a URL
            self._blocked(repr(host), "not a host name")
            await _reply(writer, _NOT_ALLOWED)
            return None
        literal = f"[{host}]" if ":" in host else host
        try:
            addresses = await check_url(
                f"http://{literal}:{port}/",
                allow_private=policy.allow_private,
                allow_metadata=policy.allow_metadata,
            )
        except InvalidUrlError as exc:
            if exc.details.startswith("cannot resolve host"):
                await _reply(writer, _HOST_UNREACHABLE)  # a typo, not an attack
            else:
                self._blocked(f"{literal}:{port}", exc.details)
                await _reply(writer, _NOT_ALLOWED)
            return None
        failure = _HOST_UNREACHABLE
        for address in addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    connected = await asyncio.open_connection(str(address), port)
            except ConnectionRefusedError:
                failure = _CONNECTION_REFUSED
            except (OSError, TimeoutError):
                pass
            else:
                await _reply(writer, _SUCCEEDED, _local_address(connected[1]))
                return connected
        await _reply(writer, failure)
        return None

    def _blocked(self, target: str, reason: str) -> None:
        log.debug("egress.blocked", target=target, reason=reason)  # on_block tells the run
        if self._policy.on_block is not None:
            try:
                self._policy.on_block(target, reason)
            except Exception:
                log.exception("egress.on_block_failed")


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, int] | None:
    """The host and port of a CONNECT (RFC 1928), or None after refusing anything else."""
    version, count = await reader.readexactly(2)
    if version != _VERSION:
        return None
    methods = await reader.readexactly(count)
    if _NO_AUTH not in methods:
        writer.write(bytes((_VERSION, _NO_ACCEPTABLE_METHOD)))
        await writer.drain()
        return None
    writer.write(bytes((_VERSION, _NO_AUTH)))
    version, command, _, kind = await reader.readexactly(4)
    if version != _VERSION:
        return None
    if kind == _IPV4:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif kind == _IPV6:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    elif kind == _NAME:
        (length,) = await reader.readexactly(1)
        host = (await reader.readexactly(length)).decode("ascii", errors="replace")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
    else:
        await _reply(writer, _ADDRESS_TYPE_NOT_SUPPORTED)
        return None
    port = int.from_bytes(await reader.readexactly(2), "big")
    if command != _CONNECT:
        await _reply(writer, _COMMAND_NOT_SUPPORTED)
        return None
    return host, port


def _local_address(writer: asyncio.StreamWriter) -> IPAddress | None:
    try:
        return ipaddress.ip_address(writer.get_extra_info("sockname")[0])
    except (TypeError, ValueError, IndexError):
        return None


async def _reply(writer: asyncio.StreamWriter, code: int, bound: IPAddress | None = None) -> None:
    if isinstance(bound, ipaddress.IPv6Address):
        address = bytes((_IPV6,)) + bound.packed
    else:
        address = bytes((_IPV4,)) + (bound.packed if bound is not None else bytes(4))
    writer.write(bytes((_VERSION, code, 0)) + address + bytes(2))
    await writer.drain()


async def _copy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
) -> None:
    """Bytes from reader to writer until EOF, then EOF; an error ends both directions."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()
        other.transport.abort()
