"""A task's own proxy (``rotateProxies``) behind the egress proxy: its pinned addresses, and
the tunnels opened through it (HTTP CONNECT for http and https proxies, SOCKS5 for socks5
ones), each to a destination address the egress proxy checked."""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from typing import Literal

from figranium_common.outbound_urls import IPAddress
from figranium_runner import socks5

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]

_MAX_PROXY_ANSWER = 16 * 1024  # an HTTP proxy's answer to CONNECT, headers included


class UpstreamError(Exception):
    """The task's proxy failed a tunnel; ``code`` is the SOCKS reply the browser gets."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Upstream:
    """A task's proxy, pinned: its host was resolved once and every answer was checked."""

    scheme: Literal["http", "https", "socks5"]
    host: str  # as read from the server URL; names the proxy and is its TLS server name
    port: int
    addresses: tuple[IPAddress, ...]  # the checked answers, the only ones connected to
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def named(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def _with_password(self) -> bool:
        return self.username is not None or self.password is not None

    async def tunnel(self, address: IPAddress, port: int) -> Stream:
        """A tunnel to address:port through this proxy, at one of its pinned addresses.

        The destination is given as the address checked already, never as a name: the
        proxy resolving it again could get another answer. UpstreamError when the proxy
        cannot be reached or refuses.
        """
        connected: Stream | None = None
        error: OSError | None = None
        for proxy_address in self.addresses:
            try:
                if self.scheme == "https":
                    connected = await asyncio.open_connection(
                        str(proxy_address),
                        self.port,
                        ssl=ssl.create_default_context(),
                        server_hostname=self.host,
                    )
                else:
                    connected = await asyncio.open_connection(str(proxy_address), self.port)
                break
            except OSError as exc:
                error = exc
        if connected is None:
            raise UpstreamError(socks5.GENERAL_FAILURE, f"cannot connect to the proxy: {error}")
        try:
            if self.scheme == "socks5":
                await self._socks5_connect(connected, address, port)
            else:
                await self._http_connect(connected, address, port)
        except BaseException:
            connected[1].transport.abort()
            raise
        return connected

    async def _http_connect(self, stream: Stream, address: IPAddress, port: int) -> None:
        reader, writer = stream
        authority = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if self._with_password:
            pair = f"{self.username or ''}:{self.password or ''}".encode()
            lines.append(f"Proxy-Authorization: Basic {base64.b64encode(pair).decode('ascii')}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise UpstreamError(socks5.GENERAL_FAILURE, "the proxy's answer is too long") from None
        if len(head) > _MAX_PROXY_ANSWER:
            raise UpstreamError(socks5.GENERAL_FAILURE, "the proxy's answer is too long")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status_line.split(" ", 2)
        status = fields[1] if len(fields) > 1 else ""
        if not (status.isdigit() and 200 <= int(status) < 300):
            refused = status in ("502", "503", "504")
            code = socks5.CONNECTION_REFUSED if refused else socks5.GENERAL_FAILURE
            raise UpstreamError(code, f"the proxy answered {status_line[:200]!r}")

    async def _socks5_connect(self, stream: Stream, address: IPAddress, port: int) -> None:
        reader, writer = stream
        failure = socks5.GENERAL_FAILURE
        if self._with_password:
            methods = bytes((socks5.NO_AUTH, socks5.USERNAME_PASSWORD))
        else:
            methods = bytes((socks5.NO_AUTH,))
        writer.write(bytes((socks5.VERSION, len(methods))) + methods)
        version, method = await reader.readexactly(2)
        if version != socks5.VERSION or method not in methods:
            raise UpstreamError(failure, "the proxy accepts none of our methods")
        if method == socks5.USERNAME_PASSWORD:
            user = (self.username or "").encode()
            secret = (self.password or "").encode()
            if len(user) > 255 or len(secret) > 255:
                raise UpstreamError(failure, "the proxy's credentials are too long")
            writer.write(bytes((1, len(user))) + user + bytes((len(secret),)) + secret)
            _, status = await reader.readexactly(2)
            if status != 0:
                raise UpstreamError(failure, "the proxy refused the credentials")
        kind = socks5.IPV6 if address.version == 6 else socks5.IPV4
        request = bytes((socks5.VERSION, socks5.CONNECT, 0, kind))
        writer.write(request + address.packed + port.to_bytes(2, "big"))
        version, code, _, bound = await reader.readexactly(4)
        if version != socks5.VERSION:
            raise UpstreamError(failure, "the proxy does not speak SOCKS5")
        if bound == socks5.IPV4:
            await reader.readexactly(4 + 2)
        elif bound == socks5.IPV6:
            await reader.readexactly(16 + 2)
        elif bound == socks5.NAME:
            (length,) = await reader.readexactly(1)
            await reader.readexactly(length + 2)
        else:
            raise UpstreamError(failure, "the proxy's answer is malformed")
        if code != socks5.SUCCEEDED:
            raise UpstreamError(code if code <= 8 else failure, f"the proxy answered {code}")
