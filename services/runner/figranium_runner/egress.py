"""A browser context's way out: a SOCKS5 proxy on loopback that applies the URL policy.

Chromium hands every connection of a context that has this proxy to it, by name: pages,
each redirect hop, frames, sub-resources, WebSockets, downloads, service workers, and
``context.request``. With ``<-loopback>`` in the bypass list, loopback hosts come here
too instead of being reached directly. The proxy resolves the name, checks every answer
with :func:`check_url`'s rules, and connects to exactly the addresses it checked, so a
second, different DNS answer is never used. A refused connection gets SOCKS reply 2 (not
allowed by ruleset), which Chromium shows as ``net::ERR_SOCKS_CONNECTION_FAILED``.

Compared with checking navigations in Playwright's request routing, nothing passes
through the driver: Chromium fetches as it normally would, and the check costs one
local hop per connection.

A task's own proxy (``rotateProxies``) becomes this proxy's :class:`Upstream` rather than
Chromium's proxy: Chromium would resolve the proxy's host at every connection, so a DNS
answer that changed after the proxy was saved could point it at 169.254.169.254 or 10.x.
:func:`pin_upstream` resolves the host once per run and checks every answer with the same
rules; each allowed connection is then tunnelled through the proxy at those addresses
(HTTP CONNECT for http and https proxies, SOCKS5 for socks5 ones), to the destination
address this proxy checked.

Each context gets a listener of its own, so a refusal is told to the run that caused it; the
listener closes, cutting its tunnels, when the context closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog
from playwright.async_api import ProxySettings

from figranium_common.config import Config
from figranium_common.errors import InvalidUrlError
from figranium_common.outbound_urls import IPAddress, check_url, parse_url
from figranium_runner import socks5
from figranium_runner.upstream_proxy import Upstream, UpstreamError

log = structlog.get_logger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0  # a client that opens a connection and says nothing
CONNECT_TIMEOUT_S = 30.0  # per address, as a browser would wait for a TCP connect
_CHUNK = 256 * 1024
_HOST = re.compile(r"[A-Za-z0-9._\-]+|[0-9A-Fa-f:.]+")
# Playwright's reading of a proxy server without a port.
_PROXY_PORTS = {"http": 80, "https": 443, "socks5": 1080}


@dataclass(frozen=True)
class EgressPolicy:
    """check_url's settings, and who hears of a refused connection (target, reason)."""

    allow_private: bool
    allow_metadata: bool = False
    on_block: Callable[[str, str], None] | None = None

    @classmethod
    def from_config(
        cls, config: Config, on_block: Callable[[str, str], None] | None = None
    ) -> EgressPolicy:
        return cls(
            allow_private=config.allow_private_networks,
            allow_metadata=config.allow_metadata_address,
            on_block=on_block,
        )


async def pin_upstream(proxy: ProxySettings, policy: EgressPolicy) -> Upstream:
    """Resolve and check the host of Playwright's ``proxy`` option once, for one run.

    Raises InvalidUrlError, naming the proxy, when the server is malformed, its host does
    not resolve, or any answer is an address check_url refuses.
    """
    server = (proxy.get("server") or "").strip()
    scheme, sep, rest = server.partition("://")
    if not sep:
        scheme, rest = "http", server  # Playwright reads "host:port" as an HTTP proxy
    scheme = scheme.lower()
    rest = rest.rstrip("/")
    if scheme not in _PROXY_PORTS:
        raise InvalidUrlError(f"the proxy {scheme}://... is not an http, https or socks5 proxy")
    if "@" in rest:
        # The saved server never carries them (they have fields of their own); this keeps
        # them out of every message below.
        raise InvalidUrlError(f"the proxy {scheme}://... has credentials in its server URL")
    named = f"{scheme}://{rest}"
    try:
        explicit_port = urlsplit(named).port
        # The same reading and rules as every other URL, on the text Chromium was given.
        target = parse_url(f"http://{rest}")
        addresses = await check_url(
            f"http://{rest}",
            allow_private=policy.allow_private,
            allow_metadata=policy.allow_metadata,
        )
    except ValueError as exc:
        raise InvalidUrlError(f"the proxy {named!r} is not valid: {exc}") from None
    except InvalidUrlError as exc:
        raise InvalidUrlError(f"the proxy {named} is refused: {exc.details}") from None
    return Upstream(
        scheme,  # type: ignore[arg-type]  # one of _PROXY_PORTS', checked above
        target.host,
        explicit_port or _PROXY_PORTS[scheme],
        tuple(addresses),
        proxy.get("username"),
        proxy.get("password"),
    )


class EgressProxy:
    """One context's SOCKS5 proxy. Start it, give :attr:`browser_proxy` to the context.

    With an ``upstream``, every allowed connection goes out through that proxy.
    """

    def __init__(self, policy: EgressPolicy, upstream: Upstream | None = None) -> None:
        self._policy = policy
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, policy: EgressPolicy, upstream: Upstream | None = None) -> EgressProxy:
        proxy = cls(policy, upstream)
        proxy._server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
        return proxy

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def browser_proxy(self) -> ProxySettings:
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
                target = await socks5.read_request(reader, writer)
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
            await socks5.reply(writer, socks5.NOT_ALLOWED)
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
                await socks5.reply(writer, socks5.HOST_UNREACHABLE)  # a typo, not an attack
            else:
                self._blocked(f"{literal}:{port}", exc.details)
                await socks5.reply(writer, socks5.NOT_ALLOWED)
            return None
        failure = socks5.HOST_UNREACHABLE
        for address in addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    if self._upstream is None:
                        connected = await asyncio.open_connection(str(address), port)
                    else:
                        connected = await self._upstream.tunnel(address, port)
            except UpstreamError as exc:
                log.info(
                    "egress.upstream_failed",
                    proxy=self._upstream.named if self._upstream else None,
                    target=f"{literal}:{port}",
                    reason=exc.reason,
                )
                failure = exc.code
            except ConnectionRefusedError:
                failure = socks5.CONNECTION_REFUSED
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                pass
            else:
                await socks5.reply(writer, socks5.SUCCEEDED, _local_address(connected[1]))
                return connected
        await socks5.reply(writer, failure)
        return None

    def _blocked(self, target: str, reason: str) -> None:
        log.debug("egress.blocked", target=target, reason=reason)  # on_block tells the run
        if self._policy.on_block is not None:
            try:
                self._policy.on_block(target, reason)
            except Exception:
                log.exception("egress.on_block_failed")


def _local_address(writer: asyncio.StreamWriter) -> IPAddress | None:
    try:
        return ipaddress.ip_address(writer.get_extra_info("sockname")[0])
    except (TypeError, ValueError, IndexError):
        return None


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
