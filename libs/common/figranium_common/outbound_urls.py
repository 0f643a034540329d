"""Checks on outbound URLs, so the platform is no way into the network it runs in.

The host is read the way a browser reads it (WHATWG URL Standard): IDNA/NFKC mapping, then
IPv4 in any of the decimal, octal, hex and short spellings. Text that a browser and
urllib.parse would read as two different hosts (a backslash, whitespace or a control
character before the path, more than one "@") is refused rather than guessed at, and so is a
host that has no single reading (percent-escapes, zone ids, characters no DNS name has).
Names are resolved and every answer is checked; http.safe_request then connects to exactly
those answers, so a second, different DNS answer is never used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import string
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from figranium_common.errors import InvalidUrlError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# COMPATIBILITY.md, "Outbound requests (SSRF)"; the label ends up in the refusal.
# An address is only ever in a network of its own version.
_BLOCKED = tuple(
    (ipaddress.ip_network(net), label)
    for net, label in (
        ("0.0.0.0/8", "'this' network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)
METADATA_ADDRESS = ipaddress.IPv4Address("169.254.169.254")
# Instance metadata and credential endpoints: blocked even with private networks allowed.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        METADATA_ADDRESS,  # AWS, GCP, Azure, OCI, DigitalOcean, ...
        ipaddress.IPv4Address("169.254.170.2"),  # AWS ECS task credentials
        ipaddress.IPv4Address("169.254.170.23"),  # AWS EKS Pod Identity
        ipaddress.IPv4Address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.IPv6Address("fd00:ec2::254"),  # AWS, IPv6
        ipaddress.IPv6Address("fd00:ec2::23"),  # AWS EKS Pod Identity, IPv6
    }
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_COMPATIBLE = ipaddress.IPv6Network("::/96")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# After IDNA: what a DNS name we would look up may consist of.
_DNS_NAME = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*")
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """Where an http(s) URL points, read as a browser reads it."""

    scheme: str
    host: str  # A-label, lowercase, no trailing dot; the canonical text for an IP address
    port: int
    address: IPAddress | None  # set when the host is an IP address
    written: str  # the host as the URL spells it, for messages

    @property
    def named(self) -> str:
        """The host for a refusal: as written, and as read when that differs."""
        if self.written in (self.host, f"[{self.host}]"):
            return repr(self.host)
        return f"{self.written!r} ({self.host})"


def blocked_reason(
    address: IPAddress, *, allow_private: bool, allow_metadata: bool = False
) -> str | None:
    """Why connecting to address is refused, or None if it is allowed."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            address = ipaddress.IPv6Address(int(address))  # the zone changes no network
        for kind, embedded in _embedded_v4(address):
            reason = blocked_reason(
                embedded, allow_private=allow_private, allow_metadata=allow_metadata
            )
            if reason is not None:
                return f"{kind} {embedded}, {reason}"
    if address in METADATA_ADDRESSES and not allow_metadata:
        return "cloud metadata endpoint"
    if allow_private:
        return None
    for network, label in _BLOCKED:
        if address in network:
            return label
    return None


def is_blocked_address(
    address: IPAddress, *, allow_private: bool, allow_metadata: bool = False
) -> bool:
    return (
        blocked_reason(address, allow_private=allow_private, allow_metadata=allow_metadata)
        is not None
    )


def _embedded_v4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, for the stacks and relays that unwrap them."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped", address.ipv4_mapped))
    elif address in _TRANSLATED:
        found.append(("IPv4-translated", low32))
    elif address in _COMPATIBLE and int(address) > 1:  # deprecated, still routed by some stacks
        found.append(("IPv4-compatible", low32))
    elif address in _NAT64 or address in _LOCAL_NAT64:
        found.append(("NAT64", low32))
    elif address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    elif address.teredo is not None:
        server, client = address.teredo
        found += [("Teredo server", server), ("Teredo client", client)]
    return found


def check_url_syntax(url: str) -> None:
    """Refuse text whose host a browser and urllib.parse could read differently.

    Works on relative references too (a redirect's Location). WHATWG parsers drop tabs and
    newlines anywhere, strip leading and trailing spaces and controls, and treat "\\" as "/"
    in http(s) URLs, so "http://127.0.0.1\\@example.com/" is 127.0.0.1 to a browser and
    example.com to urlsplit.
    """
    if url != url.strip(_C0_OR_SPACE):
        raise InvalidUrlError(f"the URL {url!r} has leading or trailing whitespace")
    if any(_is_control(char) for char in url):
        raise InvalidUrlError(f"the URL {url!r} contains a control character")
    head, authority = _head(url)
    if "\\" in head:
        raise InvalidUrlError(f"the URL {url!r} has a backslash before its path")
    if any(char.isspace() for char in head):
        raise InvalidUrlError(f"the URL {url!r} has whitespace before its path")
    if authority.count("@") > 1:
        raise InvalidUrlError(f"the URL {url!r} has more than one '@' in its authority")


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F


def _head(url: str) -> tuple[str, str]:
    """The text up to where the path starts, and the authority within it ("" if none)."""
    match = _SCHEME.match(url)
    start = match.end() if match else 0
    slashes = start
    while slashes < len(url) and url[slashes] in "/\\":
        slashes += 1
    if match is None and slashes - start < 2:
        return "", ""  # a relative reference without an authority: the host stays the same
    end = slashes
    while end < len(url) and url[end] not in "/?#":
        end += 1
    return url[:end], url[slashes:end]


def parse_url(url: str) -> Target:
    """Scheme, host and port of an http(s) URL; InvalidUrlError for anything else."""
    check_url_syntax(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidUrlError(f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidUrlError(f"only http and https URLs are allowed, not {parts.scheme!r}")
    host_and_port = parts.netloc.rpartition("@")[2]
    if host_and_port.startswith("["):
        literal, bracket, port_text = host_and_port[1:].partition("]")
        if not bracket:
            raise InvalidUrlError(f"the host {host_and_port!r} has no closing ']'")
        if port_text and not port_text.startswith(":"):
            raise InvalidUrlError(f"the host {host_and_port!r} has text after its ']'")
        address: IPAddress | None = _ipv6_literal(literal)
        host, written = str(address), f"[{literal}]"
    else:
        raw_host, colon, port_text = host_and_port.partition(":")
        port_text = colon + port_text
        if not raw_host:
            raise InvalidUrlError("the URL has no host")
        host, address = _normalise_host(raw_host)
        written = raw_host
    return Target(scheme, host, _port(port_text, scheme, host), address, written)


def _ipv6_literal(literal: str) -> ipaddress.IPv6Address:
    if "%" in literal:
        # Only meaningful for link-local addresses, and a second way to spell one.
        raise InvalidUrlError(f"host [{literal}] has an IPv6 zone id, which is not allowed")
    try:
        return ipaddress.IPv6Address(literal)
    except ValueError:
        raise InvalidUrlError(f"host [{literal}] is not a valid IPv6 address") from None


def _normalise_host(raw: str) -> tuple[str, IPAddress | None]:
    if "%" in raw:
        # Browsers decode these (127%2E0.0.1 is 127.0.0.1); HTTP clients do not.
        raise InvalidUrlError(f"host {raw!r} is percent-encoded")
    host = raw
    if not host.isascii():
        try:
            host = idna.encode(unicodedata.normalize("NFKC", host), uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidUrlError(f"host {raw!r} cannot be IDNA-encoded: {exc}") from None
    host = host.lower()
    name = host[:-1] if host.endswith(".") else host  # "example.com." is example.com
    if not _DNS_NAME.fullmatch(name):
        raise InvalidUrlError(f"host {raw!r} is not a valid host name")
    if _ends_in_number(name):
        address = _whatwg_ipv4(name)
        if address is None:
            raise InvalidUrlError(f"host {raw!r} is not a valid IPv4 address")
        return str(address), address
    return name, None


def _ends_in_number(name: str) -> bool:
    """The WHATWG rule that decides whether a host is read as an IPv4 address."""
    last = name.rpartition(".")[2]
    return last.isdigit() or _ipv4_number(last) is not None


def _ipv4_number(part: str) -> int | None:
    digits, radix = part, 10
    if part[:2] in ("0x", "0X"):
        digits, radix = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, radix = part[1:], 8
    if not part:
        return None
    if not digits:
        return 0
    allowed = {10: string.digits, 8: string.octdigits, 16: string.hexdigits}[radix]
    if not all(char in allowed for char in digits):
        return None
    return int(digits, radix)


def _whatwg_ipv4(name: str) -> ipaddress.IPv4Address | None:
    """127.1, 0x7f.1, 0177.0.0.1, 2130706433 … as browsers read them; None if invalid."""
    numbers = [_ipv4_number(part) for part in name.split(".")]
    if len(numbers) > 4 or any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *leading, last = values
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(values)):
        return None
    total = last
    for index, number in enumerate(leading):
        total += number * 256 ** (3 - index)
    return ipaddress.IPv4Address(total)


def _port(text: str, scheme: str, host: str) -> int:
    if text in ("", ":"):
        return _DEFAULT_PORTS[scheme]
    digits = text[1:]
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidUrlError(f"host {host!r} has an invalid port {digits!r}")
    port = int(digits)
    if not 0 < port <= 65535:
        raise InvalidUrlError(f"host {host!r} has port {port}, outside 1-65535")
    return port


async def check_url(
    url: str, *, allow_private: bool, allow_metadata: bool = False
) -> list[IPAddress]:
    """Refuse anything but http(s) to public hosts; returns the addresses that were checked.

    allow_private lets private, loopback and link-local addresses through, but not the cloud
    metadata endpoints; allow_metadata lets those through too. Every DNS answer must pass.
    """
    target = parse_url(url)
    if target.address is not None:
        reason = blocked_reason(
            target.address, allow_private=allow_private, allow_metadata=allow_metadata
        )
        if reason is not None:
            raise InvalidUrlError(f"host {target.named} is a blocked address ({reason})")
        return [target.address]
    host = target.host
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise InvalidUrlError(f"host {host!r} is a private address (localhost)")
    addresses = await _resolve(host, target.port)
    for address in addresses:
        reason = blocked_reason(address, allow_private=allow_private, allow_metadata=allow_metadata)
        if reason is not None:
            raise InvalidUrlError(
                f"host {host!r} resolves to a blocked address ({address}: {reason})"
            )
    return addresses


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address host resolves to (the guard relies on the "cannot resolve host" text)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidUrlError(f"cannot resolve host {host!r}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        try:
            address = ipaddress.ip_address(info[4][0])
        except ValueError:
            raise InvalidUrlError(f"host {host!r} resolves to {info[4][0]!r}") from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise InvalidUrlError(f"cannot resolve host {host!r}: no addresses")
    return addresses
