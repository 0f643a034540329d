from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy

from figranium_common import outbound_http
from figranium_common.errors import FigraniumError, InvalidUrlError, TooManyRedirects
from figranium_common.outbound_http import PinnedConnector, PinnedResolver, SafeResponse, pinned
from figranium_common.outbound_urls import IPAddress


@dataclass
class Site:
    base: str
    seen: list[str] = field(default_factory=list)  # "METHOD /path" per request received


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "headers": dict(request.headers),
            "body": (await request.read()).decode(),
        },
        headers={"X-Echo": "yes"},
    )


async def _redirect(request: web.Request) -> web.Response:
    """/redirect?status=302&to=/echo answers with that redirect."""
    status = int(request.query.get("status", "302"))
    return web.Response(status=status, headers={"Location": request.query["to"]})


async def _chain(request: web.Request) -> web.Response:
    """/chain/N redirects N more times (relative Locations), then lands on /echo."""
    remaining = int(request.match_info["n"])
    to = f"../chain/{remaining - 1}" if remaining else "/echo"
    if remaining == 0:
        return web.Response(text="done")
    return web.Response(status=302, headers={"Location": to})


async def _big(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    if "stream" not in request.query:
        return web.Response(body=b"x" * size)
    response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
    await response.prepare(request)
    for _ in range(size // 1000):
        await response.write(b"x" * 1000)
    await response.write_eof()
    return response


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


async def _start_site() -> tuple[Site, web.AppRunner]:
    site = Site(base="")

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        site.seen.append(f"{request.method} {request.path}")
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_route("*", "/echo", _echo)
    app.router.add_route("*", "/redirect", _redirect)
    app.router.add_get("/chain/{n}", _chain)
    app.router.add_get("/big", _big)
    app.router.add_get("/slow", _slow)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    site.base = f"http://127.0.0.1:{port}"
    return site, runner


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    site, runner = await _start_site()
    yield site
    await runner.cleanup()


@pytest.fixture
async def other_site() -> AsyncIterator[Site]:
    site, runner = await _start_site()
    yield site
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_get_sends_headers_and_returns_the_response(site: Site) -> None:
    response = await outbound_http.safe_request(
        "get", f"{site.base}/echo?q=1", allow_private=True, headers={"X-Token": "abc"}
    )
    assert response.status == 200
    assert response.url == f"{site.base}/echo?q=1"
    assert response.headers["x-echo"] == "yes"  # headers are case-insensitive
    echoed = response.json()
    assert echoed["method"] == "GET"
    assert echoed["headers"]["X-Token"] == "abc"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"\x00\x01raw", "application/octet-stream"), ('{"a": "\u00e9"}', "text/plain")],
)
async def test_post_sends_the_body(site: Site, body: bytes | str, content_type: str) -> None:
    response = await outbound_http.safe_request(
        "POST", f"{site.base}/echo", allow_private=True, body=body
    )
    echoed = response.json()
    assert echoed["method"] == "POST"
    expected = body.decode(errors="replace") if isinstance(body, bytes) else body
    assert echoed["body"] == expected
    assert echoed["headers"]["Content-Type"].startswith(content_type)


async def _send_json(method: str, url: str, body: str) -> SafeResponse:
    """``body`` sent with its Content-Type given as JSON."""
    return await outbound_http.safe_request(
        method, url, allow_private=True, headers={"Content-Type": "application/json"}, body=body
    )


async def test_a_given_content_type_is_kept(site: Site) -> None:
    response = await _send_json("PUT", f"{site.base}/echo", '{"x": 1}')
    assert response.json()["headers"]["Content-Type"] == "application/json"


async def test_a_redirect_chain_is_followed(site: Site) -> None:
    response = await outbound_http.safe_request("GET", f"{site.base}/chain/3", allow_private=True)
    assert response.status == 200
    assert response.text() == "done"
    assert response.url == f"{site.base}/chain/0"
    assert site.seen == [f"GET /chain/{n}" for n in (3, 2, 1, 0)]


async def test_an_absolute_location_is_followed(site: Site, other_site: Site) -> None:
    url = f"{site.base}/redirect?status=301&to={other_site.base}/echo"
    response = await outbound_http.safe_request("GET", url, allow_private=True)
    assert response.url == f"{other_site.base}/echo"
    assert response.json()["path"] == "/echo"


@pytest.mark.parametrize(("status", "method"), [(303, "GET"), (302, "GET"), (301, "GET")])
async def test_post_becomes_get_without_body(site: Site, status: int, method: str) -> None:
    response = await _send_json(
        "POST", f"{site.base}/redirect?status={status}&to=/echo", '{"a": 1}'
    )
    echoed = response.json()
    assert echoed["method"] == method
    assert echoed["body"] == ""
    assert "Content-Type" not in echoed["headers"]


@pytest.mark.parametrize("status", [307, 308])
async def test_307_and_308_keep_method_and_body(site: Site, status: int) -> None:
    response = await outbound_http.safe_request(
        "POST", f"{site.base}/redirect?status={status}&to=/echo", allow_private=True, body="keep"
    )
    assert response.json()["method"] == "POST"
    assert response.json()["body"] == "keep"


async def test_303_turns_put_into_get(site: Site) -> None:
    response = await outbound_http.safe_request(
        "PUT", f"{site.base}/redirect?status=303&to=/echo", allow_private=True, body="x"
    )
    assert response.json()["method"] == "GET"


CREDENTIALS = {"Authorization": "Bearer secret", "Cookie": "sid=1", "Proxy-Authorization": "x"}


async def test_credentials_are_stripped_on_a_cross_origin_redirect(
    site: Site, other_site: Site
) -> None:
    url = f"{site.base}/redirect?to={other_site.base}/echo"
    response = await outbound_http.safe_request(
        "GET", url, allow_private=True, headers={**CREDENTIALS, "X-Other": "kept"}
    )
    sent = response.json()["headers"]
    assert not set(CREDENTIALS) & set(sent)
    assert sent["X-Other"] == "kept"


async def test_url_userinfo_is_stripped_on_a_cross_origin_redirect(
    site: Site, other_site: Site
) -> None:
    host = site.base.removeprefix("http://")
    url = f"http://user:pw@{host}/redirect?to={other_site.base}/echo"
    response = await outbound_http.safe_request("GET", url, allow_private=True)
    assert "Authorization" not in response.json()["headers"]
    assert "user" not in response.url


async def test_credentials_stay_on_a_same_origin_redirect(site: Site) -> None:
    response = await outbound_http.safe_request(
        "GET", f"{site.base}/redirect?to=/echo", allow_private=True, headers=CREDENTIALS
    )
    sent = response.json()["headers"]
    assert {name: sent[name] for name in CREDENTIALS} == CREDENTIALS


async def test_userinfo_stays_on_a_same_origin_redirect_but_is_not_reported(site: Site) -> None:
    host = site.base.removeprefix("http://")
    response = await outbound_http.safe_request(
        "GET", f"http://user:pw@{host}/redirect?to=/echo", allow_private=True
    )
    assert response.json()["headers"]["Authorization"].startswith("Basic ")
    assert response.url == f"{site.base}/echo"


async def test_five_redirects_are_followed(site: Site) -> None:
    response = await outbound_http.safe_request("GET", f"{site.base}/chain/5", allow_private=True)
    assert response.text() == "done"


async def test_more_than_five_redirects_are_refused(site: Site) -> None:
    with pytest.raises(TooManyRedirects, match="more than 5 redirects") as caught:
        await outbound_http.safe_request("GET", f"{site.base}/chain/6", allow_private=True)
    assert caught.value.code == "TOO_MANY_REDIRECTS"
    assert len(site.seen) == 6  # the sixth Location was never requested


async def test_max_redirects_is_configurable(site: Site) -> None:
    with pytest.raises(TooManyRedirects):
        await outbound_http.safe_request(
            "GET", f"{site.base}/chain/1", allow_private=True, max_redirects=0
        )


async def test_a_private_address_is_refused_before_connecting(site: Site) -> None:
    with pytest.raises(InvalidUrlError, match="blocked address"):
        await outbound_http.safe_request("GET", f"{site.base}/echo", allow_private=False)
    assert site.seen == []


@pytest.mark.parametrize(
    "to", ["http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "//169.254.169.254/"]
)
async def test_a_redirect_to_a_blocked_target_is_refused(site: Site, to: str) -> None:
    with pytest.raises(InvalidUrlError, match=r"redirect to .* refused"):
        await outbound_http.safe_request("GET", f"{site.base}/redirect?to={to}", allow_private=True)


async def test_the_resolver_answers_only_with_pinned_addresses() -> None:
    resolver = PinnedResolver()
    v4 = ipaddress.ip_address("93.184.216.34")
    v6 = ipaddress.ip_address("2606:2800:220:1::")
    addresses: list[IPAddress] = [v4, v6]
    with pinned("Example.COM.", addresses):
        results = await resolver.resolve("example.com", 443, socket.AF_UNSPEC)
        assert [(r["host"], r["port"], r["hostname"]) for r in results] == [
            ("93.184.216.34", 443, "example.com"),
            ("2606:2800:220:1::", 443, "example.com"),
        ]
        only_v4 = await resolver.resolve("example.com", 443, socket.AF_INET)
        assert [r["host"] for r in only_v4] == ["93.184.216.34"]
        with pytest.raises(OSError, match="not checked"):
            await resolver.resolve("example.org", 443, socket.AF_UNSPEC)
    with pytest.raises(OSError, match="not checked"):
        await resolver.resolve("example.com", 443, socket.AF_UNSPEC)
    await resolver.close()


async def test_the_connection_goes_to_the_checked_address_not_a_new_lookup(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []

    async def fake_check(
        url: str, *, allow_private: bool, allow_metadata: bool = False
    ) -> list[IPAddress]:
        checked.append(url)
        return [ipaddress.ip_address("127.0.0.1")]

    # rebinding.invalid resolves nowhere: only the pinned address can make this work.
    monkeypatch.setattr(outbound_http, "check_url", fake_check)
    port = site.base.rsplit(":", 1)[1]
    response = await outbound_http.safe_request(
        "GET", f"http://rebinding.invalid:{port}/redirect?to=/echo", allow_private=False
    )
    assert response.json()["headers"]["Host"] == f"rebinding.invalid:{port}"
    assert len(checked) == 2  # every hop is checked


async def test_a_hostname_is_resolved_checked_and_pinned(site: Site) -> None:
    port = site.base.rsplit(":", 1)[1]
    response = await outbound_http.safe_request(
        "GET", f"http://localhost:{port}/echo", allow_private=True
    )
    assert response.json()["headers"]["Host"] == f"localhost:{port}"


async def test_a_shared_session_needs_a_pinned_connector(site: Site) -> None:
    async with aiohttp.ClientSession(connector=PinnedConnector()) as session:
        first = await outbound_http.safe_request(
            "GET", f"{site.base}/echo", allow_private=True, session=session
        )
        second = await outbound_http.safe_request(
            "GET", f"{site.base}/redirect?to=/echo", allow_private=True, session=session
        )
    assert first.status == second.status == 200
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(TypeError, match="PinnedConnector"):
            await outbound_http.safe_request(
                "GET", f"{site.base}/echo", allow_private=True, session=plain
            )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_body_over_the_limit_is_refused(site: Site, stream: bool) -> None:
    url = f"{site.base}/big?size=5000" + ("&stream=1" if stream else "")
    with pytest.raises(FigraniumError, match="larger than 4096 bytes") as caught:
        await outbound_http.safe_request("GET", url, allow_private=True, max_bytes=4096)
    assert caught.value.code == "RESPONSE_TOO_LARGE"


async def test_a_body_at_the_limit_is_fine(site: Site) -> None:
    response = await outbound_http.safe_request(
        "GET", f"{site.base}/big?size=4000&stream=1", allow_private=True, max_bytes=4000
    )
    assert len(response.body) == 4000


async def test_connection_refused_is_an_http_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/"
    with pytest.raises(FigraniumError, match="failed") as caught:
        await outbound_http.safe_request("GET", url, allow_private=True)
    assert caught.value.code == "HTTP_ERROR"
    assert not isinstance(caught.value.__cause__, FigraniumError)


async def test_a_timeout_is_an_http_error(site: Site) -> None:
    with pytest.raises(FigraniumError, match=r"timed out after 0\.2s") as caught:
        await outbound_http.safe_request(
            "GET", f"{site.base}/slow", allow_private=True, timeout=0.2
        )
    assert caught.value.code == "HTTP_ERROR"


async def test_a_malformed_header_is_an_http_error(site: Site) -> None:
    with pytest.raises(FigraniumError) as caught:
        await outbound_http.safe_request(
            "GET", f"{site.base}/echo", allow_private=True, headers={"X-Bad": "a\r\nInjected: 1"}
        )
    assert caught.value.code == "HTTP_ERROR"
    assert site.seen == []


async def test_a_non_http_url_is_refused() -> None:
    with pytest.raises(InvalidUrlError):
        await outbound_http.safe_request("GET", "ftp://example.com/", allow_private=True)


def _response(body: bytes, content_type: str | None) -> SafeResponse:
    headers: CIMultiDict[str] = CIMultiDict()
    if content_type is not None:
        headers["Content-Type"] = content_type
    return SafeResponse(status=200, headers=CIMultiDictProxy(headers), body=body, url="http://x/")


@pytest.mark.parametrize(
    ("body", "content_type", "text"),
    [
        ("caf\u00e9".encode("latin-1"), "text/plain; charset=ISO-8859-1", "caf\u00e9"),
        ("caf\u00e9".encode(), "text/html", "caf\u00e9"),
        ("caf\u00e9".encode(), None, "caf\u00e9"),
        (b"\xef\xbb\xbfbom", "text/plain; charset=utf-8", "bom"),
        (b"bad \xff", "text/plain", "bad \ufffd"),
        (b"odd", "text/plain; charset=no-such-charset", "odd"),
    ],
)
def test_text_decodes_by_charset(body: bytes, content_type: str | None, text: str) -> None:
    assert _response(body, content_type).text() == text


def test_json_parses_the_body() -> None:
    assert _response(b'{"a": [1, 2]}', "application/json").json() == {"a": [1, 2]}
