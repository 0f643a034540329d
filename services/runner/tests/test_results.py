"""What a run returns, as Figranium returns it: the page's HTML without an extraction
script, ``{$html}``, a script that throws, closed shadow roots, and scrape mode's fields
and request (selector, headers, cookies, user agent, proxy)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext

from figranium_common.models import RunResult, Task
from figranium_runner.bounds import Bounds
from figranium_runner.browser import BrowserHost
from figranium_runner.context import open_context
from figranium_runner.egress import EgressPolicy
from figranium_runner.engine import Limits, execute
from services.runner.tests.test_upstream_proxy import LoopbackProxy, http_proxy
from tests.integration.pages import QuietHandler, serve_http

pytestmark = pytest.mark.asyncio(loop_scope="module")

__all__ = ["http_proxy"]  # the CONNECT proxy fixture, shared with the upstream proxy tests

PAGE = """<!doctype html><html><head><title> Results </title></head><body>
<h1>Fruit</h1>
<div class="product"><b>Pear</b><script>var seen = 1;</script></div>
<div class="product">Plum</div>
<a href="/next">next</a> <a href="mailto:someone@example.com">mail</a>
<a href="https://example.com/x">away</a>
<button id="add" onclick="document.body.insertAdjacentHTML('beforeend', '<i id=added>new</i>')">
add</button>
<p id="ran">static</p><script>document.getElementById('ran').textContent = 'scripted';</script>
</body></html>"""

CLOSED = """<!doctype html><html><head><title>Closed</title></head><body>
<x-box id="host"></x-box>
<script>
const root = document.getElementById('host').attachShadow({ mode: 'closed' });
root.innerHTML = '<span class="secret">hidden text</span>';
</script></body></html>"""


@dataclass
class Site:
    base: str = ""
    posted: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


class _Handler(QuietHandler):
    site: Site

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/page":
            self.send_body(PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/closed":
            self.send_body(CLOSED.encode(), "text/html; charset=utf-8")
        elif path == "/big":
            rows = "".join(f"<li>row {i} {'x' * 80}</li>" for i in range(2000))
            self.send_body(f"<html><body><ul>{rows}</ul></body></html>".encode(), "text/html")
        elif path == "/echo":
            self.site.headers.append({k.lower(): v for k, v in self.headers.items()})
            self.send_body(
                b"<html><head><title>Echo</title></head><body>ok</body></html>", "text/html"
            )
        else:
            self.send_body(b"not found", "text/plain", status=404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.site.posted.append(self.rfile.read(length).decode())
        self.send_body(b"{}", "application/json")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    served = Site()
    with serve_http(type("Handler", (_Handler,), {"site": served})) as url:
        served.base = url
        yield served


@pytest_asyncio.fixture(loop_scope="module")
async def scrape_context(host: BrowserHost) -> AsyncIterator[BrowserContext]:
    """A context with a user agent of its own (and JavaScript on: the scrape turns the
    page's scripts off itself)."""
    ctx = await host.new_context(user_agent="FigTest/1.0")
    yield ctx
    await ctx.close()


async def run(
    context: BrowserContext,
    task: dict[str, Any],
    variables: dict[str, Any] | None = None,
    *,
    bounds: Bounds | None = None,
) -> RunResult:
    async def emit(line: str) -> None:
        pass

    page = await context.new_page()
    limits = Limits(allow_private=True, default_timeout_ms=3000, bounds=bounds or Bounds())
    result, _ = await execute(
        page,
        Task.model_validate(task),
        variables or {},
        execution_id="exec_r",
        limits=limits,
        emit=emit,
    )
    return result


# --- html and {$html} -------------------------------------------------------------------


async def test_a_run_without_a_script_returns_the_page_html(
    context: BrowserContext, site: Site
) -> None:
    bare = await run(context, {"url": f"{site.base}/page"})
    assert bare.outcome == "success" and bare.data is None
    assert bare.html is not None and '<div class="product">Plum</div>' in bare.html
    assert "scripted" in bare.html  # the page as it ended, not as it was fetched

    scripted = await run(context, {"url": f"{site.base}/page", "extractionScript": "return 1"})
    assert scripted.data == 1 and scripted.html is None
    both = await run(
        context,
        {"url": f"{site.base}/page", "extractionScript": "return 1", "includeHtml": True},
    )
    assert both.html is not None and "Plum" in both.html


async def test_a_huge_page_html_is_cut_not_the_run(context: BrowserContext, site: Site) -> None:
    limit = 50_000
    result = await run(
        context, {"url": f"{site.base}/big"}, bounds=Bounds(max_variable_bytes=limit)
    )
    assert result.outcome == "success"
    assert result.html is not None and "row 0 " in result.html
    assert 0.9 * limit < len(result.html.encode()) <= limit
    assert any("cut at RUNNER_MAX_VARIABLE_BYTES (50000 bytes)" in line for line in result.logs)
    # Asked for by name (includeHtml), the page is whole.
    whole = await run(
        context,
        {"url": f"{site.base}/big", "includeHtml": True, "extractionScript": "return 1"},
        bounds=Bounds(max_variable_bytes=limit),
    )
    assert whole.html is not None and "row 1999 " in whole.html


async def test_the_html_placeholder_is_the_page_at_that_moment(
    context: BrowserContext, site: Site
) -> None:
    before = len(site.posted)
    sink = f"{site.base}/sink"
    result = await run(
        context,
        {
            "url": f"{site.base}/page",
            "actions": [
                {"type": "http_request", "method": "POST", "value": sink, "body": "{$html}"},
                {"type": "click", "selector": "#add"},
                {"type": "http_request", "method": "POST", "value": sink, "body": "{$html}"},
            ],
            "extractionScript": "return String.raw`{$html}`.includes('id=\"added\"')",
        },
    )
    assert result.outcome == "success", result.logs
    first, second = site.posted[before:]
    assert "<title> Results </title>" in first and 'id="added"' not in first
    assert 'id="added"' in second
    assert result.data is True


async def test_a_page_too_large_for_the_html_placeholder_fails_the_run(
    context: BrowserContext, site: Site
) -> None:
    result = await run(
        context,
        {"url": f"{site.base}/big", "extractionScript": "return String.raw`{$html}`.length"},
        bounds=Bounds(max_variable_bytes=50_000),
    )
    assert result.outcome == "error"
    assert result.error is not None and "RUNNER_MAX_VARIABLE_BYTES" in result.error


# --- a script that throws -----------------------------------------------------------------


async def test_a_script_that_throws_fails_with_its_message_as_data(
    context: BrowserContext, site: Site
) -> None:
    result = await run(
        context,
        {
            "url": f"{site.base}/page",
            "extractionScript": "console.log('looking'); throw new Error('no rows here')",
        },
    )
    assert result.outcome == "error"
    assert result.data == "Extraction script error: no rows here"
    assert result.error == "Extraction script error: no rows here"
    assert "[extraction] looking" in result.logs

    broken = await run(context, {"url": f"{site.base}/page", "extractionScript": "return ("})
    assert broken.outcome == "error"
    assert isinstance(broken.data, str) and broken.data.startswith("Extraction script error: ")
    thrown = await run(context, {"url": f"{site.base}/page", "extractionScript": "throw 'plain'"})
    assert thrown.data == "Extraction script error: plain"


# --- closed shadow roots --------------------------------------------------------------


async def test_include_shadow_dom_reaches_closed_shadow_roots(
    host: BrowserHost, site: Site
) -> None:
    script = (
        "return [data.shadowQueryAll ? data.shadowQueryAll('.secret').length : null,"
        " data.shadowText ? data.shadowText().includes('hidden text') : null,"
        " document.getElementById('host').shadowRoot === null]"
    )
    for include, expected in ((True, [1, True, False]), (False, [None, None, True])):
        context = await host.new_context()
        try:
            task = {"url": f"{site.base}/closed", "includeShadowDom": include}
            result = await run(context, {**task, "extractionScript": script})
        finally:
            await context.close()
        assert result.outcome == "success", result.logs
        assert result.data == expected, include


# --- scrape ---------------------------------------------------------------------------


async def test_scrape_answers_figraniums_fields(scrape_context: BrowserContext, site: Site) -> None:
    url = f"{site.base}/page"
    result = await run(
        scrape_context,
        {
            "mode": "scrape",
            "url": url,
            "selector": ".product",
            "extractionScript": "return document.getElementById('ran').textContent",
        },
    )
    assert result.outcome == "success", result.logs
    extra = result.model_extra or {}
    assert result.html == '<div class="product"><b>Pear</b></div>\n<div class="product">Plum</div>'
    assert extra["selector_used"] == ".product" and extra["is_partial"] is True
    assert extra["title"] == "Results"
    assert extra["url"] == url
    assert extra["links"] == [f"{site.base}/next", "https://example.com/x"]
    assert result.data == "static"  # fetched and shown, never run

    missing = await run(scrape_context, {"mode": "scrape", "url": url, "selector": ".nope"})
    extra = missing.model_extra or {}
    assert extra["selector_used"] == ".nope (not found, using body)"
    assert extra["is_partial"] is False
    assert missing.html is not None and "<h1>Fruit</h1>" in missing.html
    assert "<script" not in missing.html
    default = await run(scrape_context, {"mode": "scrape", "url": url})
    assert (default.model_extra or {})["selector_used"] == "body (default)"

    invalid = await run(scrape_context, {"mode": "scrape", "url": url, "selector": "<<"})
    assert invalid.outcome == "error"
    assert invalid.error == "selector '<<' is not a valid CSS selector"


async def test_scrape_sends_the_headers_cookies_and_user_agent(
    scrape_context: BrowserContext, site: Site
) -> None:
    await scrape_context.add_cookies([{"name": "session", "value": "abc", "url": site.base}])
    result = await run(
        scrape_context,
        {"mode": "scrape", "url": f"{site.base}/echo", "headers": {"X-Custom": "v-{$who}"}},
        {"who": "me"},
    )
    assert result.outcome == "success", result.logs
    sent = site.headers[-1]
    assert sent["x-custom"] == "v-me"
    assert "session=abc" in sent["cookie"]
    assert sent["user-agent"] == "FigTest/1.0"

    # Headers given as JSON text, as an editor may save them; anything else is refused.
    text = await run(
        scrape_context,
        {"mode": "scrape", "url": f"{site.base}/echo", "headers": '{"X-Custom": "text"}'},
    )
    assert text.outcome == "success" and site.headers[-1]["x-custom"] == "text"
    bad = await run(
        scrape_context, {"mode": "scrape", "url": f"{site.base}/echo", "headers": ["X-A"]}
    )
    assert bad.outcome == "error"
    assert bad.error == "headers must be an object of header names and values"


async def test_scrape_goes_through_the_task_proxy(
    host: BrowserHost, site: Site, http_proxy: LoopbackProxy
) -> None:
    policy = EgressPolicy(allow_private=True)
    proxy = {"server": f"http://127.0.0.1:{http_proxy.port}"}
    context = await open_context(host, {"proxy": proxy}, None, policy)
    try:
        result = await run(context, {"mode": "scrape", "url": f"{site.base}/echo"})
    finally:
        await context.close()
    assert result.outcome == "success", result.logs
    assert (result.model_extra or {})["title"] == "Echo"
    assert http_proxy.seen.targets == [site.base.removeprefix("http://")]
