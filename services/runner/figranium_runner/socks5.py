"""SOCKS5's numbers (RFC 1928, RFC 1929) and the framing of the egress proxy's side of it:
reading a client's CONNECT request and answering it."""

from __future__ import annotations

import asyncio
import ipaddress

from figranium_common.outbound_urls import IPAddress

VERSION = 5
NO_AUTH = 0
USERNAME_PASSWORD = 2  # RFC 1929
NO_ACCEPTABLE_METHOD = 0xFF
CONNECT = 1
IPV4, NAME, IPV6 = 1, 3, 4
# RFC 1928 section 6 replies.
SUCCEEDED = 0
GENERAL_FAILURE = 1
NOT_ALLOWED = 2
HOST_UNREACHABLE = 4
CONNECTION_REFUSED = 5
COMMAND_NOT_SUPPORTED = 7
ADDRESS_TYPE_NOT_SUPPORTED = 8


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, int] | None:
    """The host and port of a CONNECT, or None after refusing anything else."""
    version, count = await reader.readexactly(2)
    if version != VERSION:
        return None
    methods = await reader.readexactly(count)
    if NO_AUTH not in methods:
        writer.write(bytes((VERSION, NO_ACCEPTABLE_METHOD)))
        await writer.drain()
        return None
    writer.write(bytes((VERSION, NO_AUTH)))
    version, command, _, kind = await reader.readexactly(4)
    if version != VERSION:
        return None
    if kind == IPV4:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif kind == IPV6:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    elif kind == NAME:
        (length,) = await reader.readexactly(1)
        host = (await reader.readexactly(length)).decode("ascii", errors="replace")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
    else:
        await reply(writer, ADDRESS_TYPE_NOT_SUPPORTED)
        return None
    port = int.from_bytes(await reader.readexactly(2), "big")
    if command != CONNECT:
        await reply(writer, COMMAND_NOT_SUPPORTED)
        return None
    return host, port


async def reply(writer: asyncio.StreamWriter, code: int, bound: IPAddress | None = None) -> None:
    """Answer a request with ``code``; ``bound`` is the address the tunnel left from."""
    if isinstance(bound, ipaddress.IPv6Address):
        address = bytes((IPV6,)) + bound.packed
    else:
        address = bytes((IPV4,)) + (bound.packed if bound is not None else bytes(4))
    writer.write(bytes((VERSION, code, 0)) + address + bytes(2))
    await writer.drain()
