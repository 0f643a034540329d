"""HTTP for URLs users hand us: every hop checked, and connected to exactly what was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from email.message import Message
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from figranium_common.errors import FigraniumError, InvalidUrlError, TooManyRedirects, describe
from figranium_common.jsontypes import JsonValue
from figranium_common.outbound_urls import IPAddress, check_url, check_url_syntax, parse_url

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")
# What the Fetch standard drops with the body when a redirect turns a request into a GET.
BODY_HEADERS = ("Content-Type", "Content-Length", "Content-Encoding", "Content-Language")
_CHUNK = 64 * 1024

# Context-scoped rather than held by the resolver, so one shared session can serve concurrent
# requests that each pinned their own host without seeing each other's pins.
_pins: ContextVar[Mapping[str, tuple[IPAddress, ...]]] = ContextVar("figranium_http_pins")


@dataclass(frozen=True)
class SafeResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str  # after redirects, without userinfo

    def text(self) -> str:
        charset = _charset(self.headers.get("Content-Type")) or "utf-8"
        if charset in ("utf-8", "utf8"):
            charset = "utf-8-sig"  # a BOM is not part of the text
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8-sig", errors="replace")

    def json(self) -> JsonValue:
        # JSON is UTF-8 by definition (RFC 8259); json.loads also copes with a BOM in bytes.
        value: JsonValue = json.loads(self.body)
        return value


def _charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    message = Message()
    message["Content-Type"] = content_type
    return message.get_content_charset()


def _host_key(host: str) -> str:
    return host.rstrip(".").lower()


@contextmanager
def pinned(host: str, addresses: Sequence[IPAddress]) -> Iterator[None]:
    """Let PinnedResolver answer for host with these addresses, inside this block only."""
    current = _pins.get({})
    token = _pins.set({**current, _host_key(host): tuple(addresses)})
    try:
        yield
    finally:
        _pins.reset(token)


class PinnedResolver(AbstractResolver):
    """Never looks anything up: it answers with the addresses check_url already approved.

    A second lookup at connect time could return something else (DNS rebinding), so the
    connection goes to the checked addresses while the hostname still drives Host and SNI.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = _pins.get({}).get(_host_key(host))
        if not addresses:
            raise OSError(f"host {host!r} was not checked before connecting")
        results: list[ResolveResult] = []
        for address in addresses:
            address_family = (
                socket.AF_INET if isinstance(address, ipaddress.IPv4Address) else socket.AF_INET6
            )
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=address_family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise OSError(f"host {host!r} has no checked address of family {family!r}")
        return results

    async def close(self) -> None:
        pass


class PinnedConnector(aiohttp.TCPConnector):
    """The connector a session passed to safe_request must use.

    Pooled keep-alive connections are reused per host and port, so give a shared session
    to callers with one allow_private setting only.
    """

    def __init__(self, **kwargs: Any) -> None:
        # A DNS cache would answer later requests from the pins of earlier ones.
        super().__init__(resolver=PinnedResolver(), use_dns_cache=False, **kwargs)


async def safe_request(
    method: str,
    url: str,
    *,
    allow_private: bool,
    allow_metadata: bool = False,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    timeout: float = 10.0,
    max_redirects: int = 5,
    max_bytes: int = 10 * 1024 * 1024,
    session: aiohttp.ClientSession | None = None,
) -> SafeResponse:
    """One request, redirects followed by hand; timeout bounds the whole chain.

    allow_private and allow_metadata are check_url's, applied to every hop. Raises
    InvalidUrlError for a refused URL or redirect target, TooManyRedirects, FigraniumError
    RESPONSE_TOO_LARGE past max_bytes and HTTP_ERROR for network failures.
    """
    if session is not None and not isinstance(session.connector, PinnedConnector):
        raise TypeError("safe_request needs a session whose connector is a PinnedConnector")
    # The text as given, before yarl re-serialises it (and percent-encodes a backslash away).
    parse_url(url)
    request = _Request(method.upper(), _parse(url), CIMultiDict(headers or {}), body)
    policy = _Policy(allow_private, allow_metadata, max_redirects, max_bytes)
    try:
        async with asyncio.timeout(timeout):
            if session is not None:
                return await _follow(session, request, policy)
            async with aiohttp.ClientSession(connector=PinnedConnector()) as own:
                return await _follow(own, request, policy)
    except TimeoutError as exc:
        raise FigraniumError(
            f"{request.method} {_public(request.url)} timed out after {timeout:g}s",
            code="HTTP_ERROR",
        ) from exc


@dataclass(frozen=True)
class _Policy:
    allow_private: bool
    allow_metadata: bool
    max_redirects: int
    max_bytes: int


@dataclass
class _Request:
    method: str
    url: URL
    headers: CIMultiDict[str]
    body: bytes | str | None


def _parse(url: str) -> URL:
    try:
        return URL(url)
    except (TypeError, ValueError) as exc:
        raise InvalidUrlError(f"not a valid URL: {exc}") from exc


def _public(url: URL) -> str:
    """The URL as we report it: no userinfo, no fragment, and "/" for an empty path."""
    text = str(_without_userinfo(url).with_fragment(None))
    if url.raw_path == "/" and not url.raw_query_string and not text.endswith("/"):
        text += "/"
    return text


def _without_userinfo(url: URL) -> URL:
    # yarl refuses with_user() on URLs without an authority, such as file: ones.
    return url.with_user(None) if url.raw_user or url.raw_password else url


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


async def _follow(
    session: aiohttp.ClientSession, request: _Request, policy: _Policy
) -> SafeResponse:
    for hop in range(policy.max_redirects + 1):
        request.url, addresses = await _check(request.url, policy, redirected=hop > 0)
        outcome = await _send(session, request, addresses, policy.max_bytes)
        if isinstance(outcome, SafeResponse):
            return outcome
        _redirect(request, *outcome)
    raise TooManyRedirects(
        f"{_public(request.url)} is more than {policy.max_redirects} redirects away"
        " from the URL asked for"
    )


async def _check(url: URL, policy: _Policy, *, redirected: bool) -> tuple[URL, list[IPAddress]]:
    """The URL to connect to, with an IP address host spelled canonically, and its addresses."""
    try:
        target = parse_url(str(url))
        if target.address is not None and url.raw_host != target.host:
            # aiohttp hands "127.1" or "2130706433" to the OS, which reads them as inet_aton
            # does; the address check_url read is what gets connected to instead.
            url = url.with_host(target.host)
        addresses = await check_url(
            str(url), allow_private=policy.allow_private, allow_metadata=policy.allow_metadata
        )
        if target.address is not None and target.address not in addresses:
            raise InvalidUrlError(f"host {target.named} was not the address checked")
    except InvalidUrlError as exc:
        if not redirected:
            raise
        raise InvalidUrlError(f"redirect to {_public(url)} refused: {exc.details}") from exc
    return url, addresses


async def _send(
    session: aiohttp.ClientSession,
    request: _Request,
    addresses: list[IPAddress],
    max_bytes: int,
) -> SafeResponse | tuple[int, str]:
    """The final response, or the status and Location of a redirect still to follow."""
    host = request.url.raw_host or ""
    try:
        with pinned(host, addresses):
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
            ) as response:
                location = response.headers.get("Location")
                if response.status in REDIRECT_STATUSES and location is not None:
                    return response.status, location
                return SafeResponse(
                    status=response.status,
                    headers=CIMultiDictProxy(CIMultiDict(response.headers)),
                    body=await _read_limited(response, request.url, max_bytes),
                    url=_public(request.url),
                )
    except aiohttp.InvalidURL as exc:
        raise InvalidUrlError(f"not a valid URL: {exc}") from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        # ValueError: aiohttp's word for a malformed method or header value.
        raise FigraniumError(
            f"{request.method} {_public(request.url)} failed: {describe(exc)}",
            code="HTTP_ERROR",
        ) from exc


async def _read_limited(response: aiohttp.ClientResponse, url: URL, max_bytes: int) -> bytes:
    def too_large() -> FigraniumError:
        return FigraniumError(
            f"the response from {_public(url)} is larger than {max_bytes} bytes",
            code="RESPONSE_TOO_LARGE",
        )

    # Content-Length counts encoded bytes; only without an encoding is it the size we limit.
    declared = response.content_length
    if declared is not None and declared > max_bytes and "Content-Encoding" not in response.headers:
        raise too_large()
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise too_large()
    return bytes(body)


def _redirect(request: _Request, status: int, location: str) -> None:
    """Turn request into the next hop, the way browsers do."""
    try:
        check_url_syntax(location)  # before yarl percent-encodes what makes it ambiguous
    except InvalidUrlError as exc:
        raise InvalidUrlError(f"redirect to {location!r} refused: {exc.details}") from exc
    try:
        target = request.url.join(URL(location)).with_fragment(None)
    except (TypeError, ValueError) as exc:
        raise InvalidUrlError(f"the redirect Location {location!r} is not a valid URL") from exc
    status_forces_get = request.method != "HEAD" and (
        status == 303 or (status in (301, 302) and request.method == "POST")
    )
    if status_forces_get:
        request.method = "GET"
        request.body = None
        for name in BODY_HEADERS:
            request.headers.popall(name, None)
    if _origin(target) != _origin(request.url):
        for name in CREDENTIAL_HEADERS:
            request.headers.popall(name, None)
        target = _without_userinfo(target)
    request.url = target
