"""Checks on outbound URLs, so the platform is no way into the network it runs in."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from figranium_common.errors import InvalidUrlError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BLOCKED_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
    )
]
_BLOCKED_V6 = [
    ipaddress.ip_network(n) for n in ("::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8")
]
METADATA_ADDRESS = ipaddress.ip_address("169.254.169.254")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    # IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks)
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_blocked_address(address: IPAddress, *, allow_private: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            return is_blocked_address(embedded, allow_private=allow_private)
    if address == METADATA_ADDRESS:
        return True
    if allow_private:
        return False
    networks = _BLOCKED_V4 if isinstance(address, ipaddress.IPv4Address) else _BLOCKED_V6
    return any(address in net for net in networks)


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton accepts the decimal, octal and hex spellings browsers also accept.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def check_url(url: str, *, allow_private: bool) -> list[IPAddress]:
    """Refuse anything but http(s) to public hosts; returns the addresses that were checked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidUrlError(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidUrlError(f"only http and https URLs are allowed, not {parts.scheme!r}")
    if not host:
        raise InvalidUrlError("the URL has no host")
    host = host.rstrip(".").lower()
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise InvalidUrlError(f"host {host!r} is a private address")
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise InvalidUrlError(f"cannot resolve host {host!r}: {exc}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if is_blocked_address(address, allow_private=allow_private):
            raise InvalidUrlError(f"host {host!r} resolves to a blocked address ({address})")
    return addresses
