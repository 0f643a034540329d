# ruff: noqa: RUF001  (look-alike characters are the point of several payloads)
"""The outbound-URL policy against known SSRF bypasses (PayloadsAllTheThings and friends).

No network: names are answered by a fake getaddrinfo, and every name a refusal depends on is
in it, so no row passes only because a lookup failed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from figranium_common import outbound_http
from figranium_common.errors import FigraniumError, InvalidUrlError
from figranium_common.outbound_urls import IPAddress, check_url, is_blocked_address, parse_url

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:4700::1111"

# name → addresses; a name that is not here makes the fake resolver fail the test.
DNS: dict[str, list[str]] = {
    "public.example": [PUBLIC_V4],
    "example.com": [PUBLIC_V4, PUBLIC_V6],
    "xn--bcher-kva.example": [PUBLIC_V4],  # bücher.example
    "my_host.example": [PUBLIC_V4],
    "localhost": ["127.0.0.1", "::1"],
    "loopback.test": ["127.0.0.1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "mixed.test": [PUBLIC_V4, "10.0.0.5"],
    "mixed6.test": [PUBLIC_V6, "::1"],
    "metadata.google.internal": ["169.254.169.254"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "ula.test": ["fd00::1"],
    "nxdomain.test": [],  # NXDOMAIN
}


class FakeDns:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def getaddrinfo(
        self, host: str, port: int | str | None, *args: Any, **kwargs: Any
    ) -> list[tuple[Any, ...]]:
        self.lookups.append(host)
        if host not in self.answers:
            raise AssertionError(f"unexpected DNS lookup of {host!r}")
        if not self.answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos: list[tuple[Any, ...]] = []
        for text in self.answers[host]:
            address = ipaddress.ip_address(text)
            if address.version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port)))
            else:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, port, 0, 0)))
        return infos


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    fake = FakeDns(dict(DNS))

    async def getaddrinfo(
        loop: asyncio.AbstractEventLoop, host: str, port: Any, *args: Any, **kwargs: Any
    ) -> list[tuple[Any, ...]]:
        return await fake.getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    yield fake


REFUSED = [
    # loopback, every spelling browsers accept
    pytest.param("http://127.0.0.1/", id="loopback"),
    pytest.param("http://127.0.0.2:8080/admin", id="loopback-other"),
    pytest.param("http://127.1/", id="short-2-parts"),
    pytest.param("http://127.0.1/", id="short-3-parts"),
    pytest.param("http://2130706433/", id="decimal"),
    pytest.param("http://017700000001/", id="octal-whole"),
    pytest.param("http://0177.0.0.1/", id="octal-dotted"),
    pytest.param("http://0000177.000.000.001/", id="octal-padded"),
    pytest.param("http://0x7f000001/", id="hex-whole"),
    pytest.param("http://0x7f.0.0.1/", id="hex-dotted"),
    pytest.param("http://0X7F.1/", id="hex-short-upper"),
    pytest.param("http://0x7f.0x0.0x0.0x1/", id="hex-every-part"),
    pytest.param("http://127.0.0.1./", id="trailing-dot-ip"),
    pytest.param("http://１２７.０.０.１/", id="fullwidth-digits"),
    pytest.param("http://127。0。0。1/", id="ideographic-full-stops"),
    pytest.param("http://①②⑦.0.0.1/", id="circled-digits"),
    pytest.param("http://127.0.0.1\u200b/", id="zero-width-space"),
    pytest.param("http://0/", id="zero"),
    pytest.param("http://0.0.0.0:8080/", id="unspecified"),
    pytest.param("http://0x0/", id="zero-hex"),
    # localhost names
    pytest.param("http://localhost/", id="localhost"),
    pytest.param("http://LOCALHOST:8080/", id="localhost-upper"),
    pytest.param("http://localhost./", id="localhost-trailing-dot"),
    pytest.param("http://foo.localhost/", id="subdomain-of-localhost"),
    pytest.param("http://ｌｏｃａｌｈｏｓｔ/", id="fullwidth-localhost"),
    pytest.param("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", id="enclosed-localhost"),
    # private, link-local, CGNAT, special-purpose IPv4
    pytest.param("http://10.0.0.1/", id="10/8"),
    pytest.param("http://172.16.0.1/", id="172.16/12"),
    pytest.param("http://172.31.255.255/", id="172.16/12-top"),
    pytest.param("http://192.168.0.1/", id="192.168/16"),
    pytest.param("http://3232235521/", id="192.168-decimal"),
    pytest.param("http://100.64.0.1/", id="cgnat"),
    pytest.param("http://169.254.1.1/", id="link-local"),
    pytest.param("http://192.0.0.192/", id="ietf-assignments"),
    pytest.param("http://192.0.2.1/", id="test-net-1"),
    pytest.param("http://198.18.0.1/", id="benchmarking"),
    pytest.param("http://198.51.100.7/", id="test-net-2"),
    pytest.param("http://203.0.113.9/", id="test-net-3"),
    pytest.param("http://224.0.0.1/", id="multicast"),
    pytest.param("http://239.255.255.250:1900/", id="ssdp-multicast"),
    pytest.param("http://240.0.0.1/", id="reserved"),
    pytest.param("http://255.255.255.255/", id="broadcast"),
    # cloud metadata
    pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata"),
    pytest.param("http://0xa9fea9fe/", id="metadata-hex"),
    pytest.param("http://2852039166/", id="metadata-decimal"),
    pytest.param("http://0251.0376.0251.0376/", id="metadata-octal"),
    pytest.param("http://0xa9.0xfe.0xa9.0xfe/", id="metadata-hex-dotted"),
    pytest.param("http://169.254.43518/", id="metadata-short"),
    pytest.param("http://[::ffff:169.254.169.254]/", id="metadata-mapped-dotted"),
    pytest.param("http://[::ffff:a9fe:a9fe]/", id="metadata-mapped-hex"),
    pytest.param("http://[fd00:ec2::254]/", id="metadata-aws-ipv6"),
    pytest.param("http://100.100.100.200/", id="metadata-alibaba"),
    pytest.param("http://metadata.google.internal/", id="metadata-by-name"),
    # IPv6 and IPv4 inside IPv6
    pytest.param("http://[::1]/", id="v6-loopback"),
    pytest.param("http://[0:0:0:0:0:0:0:1]:8080/", id="v6-loopback-long"),
    pytest.param("http://[::]/", id="v6-unspecified"),
    pytest.param("http://[::ffff:127.0.0.1]/", id="v4-mapped-dotted"),
    pytest.param("http://[::ffff:7f00:1]/", id="v4-mapped-hex"),
    pytest.param("http://[0:0:0:0:0:ffff:7f00:1]/", id="v4-mapped-long"),
    pytest.param("http://[::127.0.0.1]/", id="v4-compatible"),
    pytest.param("http://[::ffff:0:7f00:1]/", id="v4-translated"),
    pytest.param("http://[64:ff9b::7f00:1]/", id="nat64-loopback"),
    pytest.param("http://[64:ff9b::a9fe:a9fe]/", id="nat64-metadata"),
    pytest.param("http://[64:ff9b:1::a00:1]/", id="local-nat64"),
    pytest.param("http://[2002:7f00:1::]/", id="6to4-loopback"),
    pytest.param("http://[2002:a9fe:a9fe::1]/", id="6to4-metadata"),
    # Teredo: the client address is stored inverted, 80ff:fffe is 127.0.0.1
    pytest.param("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", id="teredo-loopback"),
    pytest.param("http://[fc00::1]/", id="ula-fc"),
    pytest.param("http://[fd12:3456::1]/", id="ula-fd"),
    pytest.param("http://[fe80::1]/", id="v6-link-local"),
    pytest.param("http://[fe80::1%25eth0]/", id="v6-zone-id"),
    pytest.param("http://[ff02::1]/", id="v6-multicast"),
    pytest.param("http://[2001:db8::1]/", id="v6-documentation"),
    pytest.param("http://[127.0.0.1]/", id="v4-in-brackets"),
    pytest.param("http://[::1/", id="unclosed-bracket"),
    pytest.param("http://[::1]80/", id="text-after-bracket"),
    # userinfo: the host is after the last "@", for urlsplit and browsers alike
    pytest.param("http://public.example@127.0.0.1/", id="userinfo-public-host-loopback"),
    pytest.param("http://user:pass@127.0.0.1:80/", id="userinfo-credentials-loopback"),
    pytest.param("http://127.0.0.1:80@localhost/", id="userinfo-ip-host-localhost"),
    pytest.param("http://public.example:80@169.254.169.254/", id="userinfo-port-metadata"),
    pytest.param("http://public.example@public.example@127.0.0.1/", id="userinfo-two-ats"),
    pytest.param("http://1.1.1.1&@127.0.0.1#@public.example/", id="userinfo-orange-tsai"),
    # backslash, whitespace, controls: browsers and urlsplit disagree on the host
    pytest.param("http://127.0.0.1\\@public.example/", id="backslash-before-at"),
    pytest.param("http://public.example\\127.0.0.1/", id="backslash-in-host"),
    pytest.param("http:\\\\127.0.0.1/", id="backslashes-after-scheme"),
    pytest.param("http:/\\127.0.0.1/", id="slash-backslash"),
    pytest.param(" http://127.0.0.1/", id="leading-space"),
    pytest.param("http://127.0.0.1 /", id="space-in-authority"),
    pytest.param("http://127.0.0.1\t.public.example/", id="tab-in-host"),
    pytest.param("http://12\n7.0.0.1/", id="newline-in-host"),
    pytest.param("http://127.0.0.1\x00.public.example/", id="nul-in-host"),
    pytest.param("http://127.0.0.1\u3000.public.example/", id="ideographic-space"),
    pytest.param("http://public.example/a\x0bb", id="control-in-path"),
    # encodings and host names that have no single reading
    pytest.param("http://127%2E0%2E0%2E1/", id="percent-encoded-dots"),
    pytest.param("http://%6c%6f%63%61%6c%68%6f%73%74/", id="percent-encoded-localhost"),
    pytest.param("http://☃.public.example/", id="not-idna-encodable"),
    pytest.param("http://public.example:80:80/", id="two-ports"),
    pytest.param("http://127.0.0.1.1/", id="five-numeric-parts"),
    pytest.param("http://256.0.0.1/", id="octet-over-255"),
    pytest.param("http://08.0.0.1/", id="invalid-octal"),
    pytest.param("http://public.example..//", id="empty-label"),
    pytest.param("http://public.example,127.0.0.1/", id="comma-in-host"),
    # names resolving to blocked addresses
    pytest.param("http://loopback.test/", id="dns-loopback"),
    pytest.param("http://127.0.0.1.nip.io/", id="dns-wildcard-service"),
    pytest.param("http://mixed.test/", id="dns-one-public-one-private"),
    pytest.param("http://mixed6.test/", id="dns-one-public-one-v6-loopback"),
    pytest.param("http://mapped.test/", id="dns-v4-mapped-private"),
    pytest.param("http://ula.test/", id="dns-ula"),
    pytest.param("http://nxdomain.test/", id="dns-nxdomain"),
    # schemes
    pytest.param("file:///etc/passwd", id="file"),
    pytest.param("gopher://127.0.0.1:6379/_INFO", id="gopher"),
    pytest.param("dict://public.example:11211/stat", id="dict"),
    pytest.param("ftp://public.example/", id="ftp"),
    pytest.param("sftp://public.example/", id="sftp"),
    pytest.param("ldap://public.example/", id="ldap"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("data:text/html,<script>alert(1)</script>", id="data"),
    pytest.param("ws://public.example/", id="ws"),
    pytest.param("wss://public.example/", id="wss"),
    pytest.param("jar:http://public.example/x.jar!/", id="jar"),
    pytest.param("//public.example/", id="scheme-relative"),
    # no host, bad ports
    pytest.param("http:///127.0.0.1/", id="three-slashes"),
    pytest.param("http:127.0.0.1/", id="no-slashes"),
    pytest.param("http://", id="empty"),
    pytest.param("http://:80/", id="port-only"),
    pytest.param("http://user@/", id="userinfo-only"),
    pytest.param("http://public.example:0/", id="port-0"),
    pytest.param("http://public.example:65536/", id="port-over-65535"),
    pytest.param("http://public.example:-1/", id="port-negative"),
    pytest.param("http://public.example:8o/", id="port-not-a-number"),
    pytest.param("http://public.example:１２３/", id="port-fullwidth"),
]


def test_the_table_is_long_enough() -> None:
    assert len(REFUSED) >= 60
    assert len({param.values[0] for param in REFUSED}) == len(REFUSED)


@pytest.mark.parametrize("url", REFUSED)
async def test_bypass_attempts_are_refused(url: str, dns: FakeDns) -> None:
    with pytest.raises(InvalidUrlError) as caught:
        await check_url(url, allow_private=False)
    assert caught.value.code == "INVALID_URL"
    assert caught.value.details


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://0x7f.1/", "host '0x7f.1' (127.0.0.1) is a blocked address (loopback)"),
        ("http://[::ffff:a9fe:a9fe]/", "IPv4-mapped 169.254.169.254, cloud metadata endpoint"),
        ("http://mixed.test/", "host 'mixed.test' resolves to a blocked address (10.0.0.5"),
        ("http://127.0.0.1\\@public.example/", "backslash"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://foo.localhost/", "host 'foo.localhost' is a private address"),
        ("http://☃.public.example/", "cannot be IDNA-encoded"),
        ("http://nxdomain.test/", "cannot resolve host 'nxdomain.test'"),
        ("gopher://public.example/", "only http and https"),
    ],
)
async def test_a_refusal_names_the_host_and_the_reason(url: str, reason: str, dns: FakeDns) -> None:
    with pytest.raises(InvalidUrlError) as caught:
        await check_url(url, allow_private=False)
    assert reason in caught.value.details


ACCEPTED = [
    pytest.param(f"http://{PUBLIC_V4}/", [PUBLIC_V4], id="v4-literal"),
    pytest.param(f"https://[{PUBLIC_V6}]/", [PUBLIC_V6], id="v6-literal"),
    pytest.param("https://1.1.1.1:8443/dns-query?x=1#f", ["1.1.1.1"], id="v4-port-path-query"),
    pytest.param("http://8.8/", ["8.0.0.8"], id="short-public"),
    pytest.param(f"http://[::ffff:{PUBLIC_V4}]/", [f"::ffff:{PUBLIC_V4}"], id="mapped-public"),
    pytest.param("http://[2002:5db8:d70e::1]/", ["2002:5db8:d70e::1"], id="6to4-public"),
    pytest.param("http://[64:ff9b::5db8:d70e]/", ["64:ff9b::5db8:d70e"], id="nat64-public"),
    pytest.param("http://example.com/", [PUBLIC_V4, PUBLIC_V6], id="name"),
    pytest.param("http://example.com./", [PUBLIC_V4, PUBLIC_V6], id="name-trailing-dot"),
    pytest.param("HTTPS://EXAMPLE.COM:443/", [PUBLIC_V4, PUBLIC_V6], id="upper-case"),
    pytest.param("http://example.com:/", [PUBLIC_V4, PUBLIC_V6], id="empty-port"),
    pytest.param("http://user:pw@example.com/", [PUBLIC_V4, PUBLIC_V6], id="userinfo"),
    # Both parsers put this at example.com; "127.0.0.1:80" is only a user name.
    pytest.param("http://127.0.0.1:80@example.com/", [PUBLIC_V4, PUBLIC_V6], id="ip-as-user"),
    pytest.param("http://ｅｘａｍｐｌｅ.com/", [PUBLIC_V4, PUBLIC_V6], id="fullwidth-name"),
    pytest.param("http://bücher.example/", [PUBLIC_V4], id="idn"),
    pytest.param("http://xn--bcher-kva.example/", [PUBLIC_V4], id="idn-a-label"),
    pytest.param("http://my_host.example/", [PUBLIC_V4], id="underscore"),
    pytest.param("http://example.com/a\\b?q=a b", [PUBLIC_V4, PUBLIC_V6], id="odd-path-query"),
]


@pytest.mark.parametrize(("url", "addresses"), ACCEPTED)
async def test_public_urls_pass(url: str, addresses: list[str], dns: FakeDns) -> None:
    checked = await check_url(url, allow_private=False)
    assert checked == [ipaddress.ip_address(address) for address in addresses]


async def test_a_name_is_looked_up_as_its_a_label(dns: FakeDns) -> None:
    await check_url("http://bücher.example./", allow_private=False)
    assert dns.lookups == ["xn--bcher-kva.example"]


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://0x7f.1:8080/", "127.0.0.1", 8080),
        ("https://１２７.０.０.１/", "127.0.0.1", 443),
        ("http://[0:0::1]/", "::1", 80),
        ("http://Bücher.Example./", "xn--bcher-kva.example", 80),
    ],
)
def test_parse_url_reads_the_host_as_browsers_do(url: str, host: str, port: int) -> None:
    target = parse_url(url)
    assert (target.host, target.port) == (host, port)


PRIVATE = [
    "http://127.0.0.1:8080/",
    "http://127.1/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://[::1]/",
    "http://[fd00::1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://localhost:8080/",
    "http://mixed.test/",
]
METADATA = [
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://2852039166/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/",
]


@pytest.mark.parametrize("url", PRIVATE)
async def test_private_networks_can_be_allowed(url: str, dns: FakeDns) -> None:
    assert await check_url(url, allow_private=True)


@pytest.mark.parametrize("url", METADATA)
async def test_metadata_stays_refused_with_private_networks_allowed(url: str, dns: FakeDns) -> None:
    with pytest.raises(InvalidUrlError, match="cloud metadata endpoint"):
        await check_url(url, allow_private=True)


@pytest.mark.parametrize("url", METADATA)
async def test_metadata_can_be_allowed_explicitly(url: str, dns: FakeDns) -> None:
    assert await check_url(url, allow_private=True, allow_metadata=True)


@pytest.mark.parametrize("url", METADATA)
async def test_allowing_metadata_alone_does_not_allow_link_local(url: str, dns: FakeDns) -> None:
    with pytest.raises(InvalidUrlError):
        await check_url(url, allow_private=False, allow_metadata=True)


@pytest.mark.parametrize(
    "url",
    [
        "gopher://127.0.0.1/",
        "http://127.0.0.1\\@public.example/",
        "http://[fe80::1%25eth0]/",
        "http://127%2E0.0.1/",
        "http://a@b@127.0.0.1/",
    ],
)
async def test_allowing_private_networks_keeps_the_other_rules(url: str, dns: FakeDns) -> None:
    with pytest.raises(InvalidUrlError):
        await check_url(url, allow_private=True, allow_metadata=True)


def test_a_zone_id_does_not_hide_a_blocked_address() -> None:
    scoped = ipaddress.IPv6Address("fe80::1%eth0")
    assert is_blocked_address(scoped, allow_private=False)
    assert not is_blocked_address(scoped, allow_private=True)


# safe_request: the rules hold for every hop, and the connection goes to what was checked.


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"host": request.headers.get("Host"), "path": request.path})


async def _redirect(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": request.query["to"]})


class Site:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int = 0) -> None:
        async def record(request: web.Request) -> web.Response:
            self.seen.append(request.path)
            handler = _redirect if request.path == "/redirect" else _echo
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    site = Site()
    await site.start("127.0.0.1")
    yield site
    await site.stop()


async def test_a_raw_backslash_url_is_refused_before_yarl_can_encode_it(site: Site) -> None:
    url = f"http://127.0.0.1:{site.port}\\@public.example/"
    with pytest.raises(InvalidUrlError, match="backslash"):
        await outbound_http.safe_request("GET", url, allow_private=True)
    assert site.seen == []


@pytest.mark.parametrize(
    "to",
    [
        "http://0xa9fea9fe/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://２８５２０３９１６６/",
        "/\\169.254.169.254/",
        "http://127.0.0.1\\@public.example/",
    ],
)
async def test_a_redirect_to_a_disguised_target_is_refused(site: Site, to: str) -> None:
    url = f"http://127.0.0.1:{site.port}/redirect?to={to}"
    with pytest.raises(InvalidUrlError, match=r"redirect to .* refused"):
        await outbound_http.safe_request("GET", url, allow_private=True)
    assert site.seen == ["/redirect"]


async def test_a_numeric_host_is_connected_to_as_the_address_it_was_read_as(site: Site) -> None:
    # aiohttp would hand "127.1" to the OS unresolved; safe_request connects to 127.0.0.1.
    to = f"http://2130706433:{site.port}/echo"
    response = await outbound_http.safe_request(
        "GET", f"http://127.1:{site.port}/redirect?to={to}", allow_private=True
    )
    assert response.json() == {"host": f"127.0.0.1:{site.port}", "path": "/echo"}
    assert response.url == f"http://127.0.0.1:{site.port}/echo"


async def test_allow_metadata_reaches_every_hop(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, bool, bool]] = []

    async def spy(
        url: str, *, allow_private: bool, allow_metadata: bool = False
    ) -> list[IPAddress]:
        calls.append((url, allow_private, allow_metadata))
        return await check_url(url, allow_private=allow_private, allow_metadata=allow_metadata)

    monkeypatch.setattr(outbound_http, "check_url", spy)
    base = f"http://127.0.0.1:{site.port}"
    await outbound_http.safe_request(
        "GET", f"{base}/redirect?to=/echo", allow_private=True, allow_metadata=True
    )
    assert calls == [(f"{base}/redirect?to=/echo", True, True), (f"{base}/echo", True, True)]


class SwitchingDns:
    """The first lookup gets one answer, every later one another: a rebinding name server."""

    def __init__(self, first: str, later: str) -> None:
        self.answers = [first, later]
        self.lookups = 0

    async def getaddrinfo(
        self, host: str, port: Any, *args: Any, **kwargs: Any
    ) -> list[tuple[Any, ...]]:
        answer = self.answers[min(self.lookups, 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]


async def test_a_second_dns_answer_is_not_used_to_connect(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_url sees a public address; a second lookup at connect time would get 127.0.0.1.

    Without pinning aiohttp resolves again, reaches the local site and the test fails.
    """
    switching = SwitchingDns(PUBLIC_V4, "127.0.0.1")
    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", switching.getaddrinfo)
    connects: list[Any] = []
    loop = asyncio.get_running_loop()
    real_sock_connect = loop.sock_connect

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        connects.append(address[0])
        if address[0] != "127.0.0.1":  # no network here: refuse the public address at once
            raise ConnectionRefusedError(f"connect to {address[0]} refused by the test")
        await real_sock_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    with pytest.raises(FigraniumError) as caught:
        await outbound_http.safe_request(
            "GET", f"http://rebinding.test:{site.port}/echo", allow_private=False
        )
    assert caught.value.code == "HTTP_ERROR"
    assert site.seen == []
    assert switching.lookups == 1
    assert PUBLIC_V4 in connects and "127.0.0.1" not in connects


async def test_a_second_dns_answer_is_not_used_with_private_networks_allowed(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two local sites on one port: the checked answer's site gets the request, not the other."""
    other = Site()
    try:
        await other.start("127.0.0.2", site.port)
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here")
    try:
        switching = SwitchingDns("127.0.0.1", "127.0.0.2")
        monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", switching.getaddrinfo)
        response = await outbound_http.safe_request(
            "GET", f"http://rebinding.test:{site.port}/echo", allow_private=True
        )
    finally:
        await other.stop()
    assert response.json()["host"] == f"rebinding.test:{site.port}"
    assert (site.seen, other.seen) == (["/echo"], [])
    assert switching.lookups == 1
