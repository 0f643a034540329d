"""The navigation guard in a real Chromium, against a site served by the test."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext
from playwright.async_api import Error as PlaywrightError

from figranium_runner.browser import BrowserHost
from figranium_runner.guard import install_navigation_guard
from services.runner.tests.navigation_site import METADATA, Blocks, Site, post_form

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def context(host: BrowserHost, site: Site) -> AsyncIterator[BrowserContext]:
    site.seen.clear()
    ctx = await host.new_context()
    yield ctx
    await ctx.close()


async def _guard(context: BrowserContext, *, allow_private: bool) -> Blocks:
    blocks = Blocks()
    await install_navigation_guard(context, allow_private=allow_private, on_block=blocks)
    return blocks


async def test_pages_and_redirect_chains_load(context: BrowserContext, site: Site) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    assert await page.title() == "Home"

    await page.goto(f"{site.base}/r1")
    assert page.url == f"{site.base}/final"
    assert await page.title() == "Final"
    # The cookie set on a redirect hop travels on, as with a browser-followed redirect.
    assert await page.text_content("#cookie") == "hop=1"
    assert site.seen == ["GET /", "GET /r1", "GET /r2", "GET /final"]  # each hop fetched once
    assert blocks.calls == []


async def test_goto_waits_for_the_page_at_the_end_of_a_redirect(
    context: BrowserContext, site: Site
) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/to-slow")
    assert page.url == f"{site.base}/slow"
    assert await page.title() == "Slow"


async def test_a_link_through_redirects_loads(context: BrowserContext, site: Site) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    await page.click("#chain")
    await page.wait_for_url(f"{site.base}/final")
    assert await page.title() == "Final"


async def test_a_redirect_to_the_metadata_address_is_blocked(
    context: BrowserContext, site: Site
) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        await page.goto(f"{site.base}/to-metadata")
    assert [url for url, _ in blocks.calls] == [METADATA]
    assert "blocked address" in blocks.calls[0][1]


async def test_a_link_to_the_metadata_address_is_blocked(
    context: BrowserContext, site: Site
) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/")
    await page.click("#meta", no_wait_after=True)
    await blocks.wait()
    assert [url for url, _ in blocks.calls] == [METADATA]
    assert page.url == f"{site.base}/"


async def test_an_iframe_to_the_metadata_address_is_blocked(
    context: BrowserContext, site: Site
) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/frame")
    await blocks.wait()
    assert await page.title() == "Framed"
    assert [url for url, _ in blocks.calls] == [METADATA]


async def test_a_private_address_is_refused(context: BrowserContext, site: Site) -> None:
    blocks = await _guard(context, allow_private=False)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        await page.goto(f"{site.base}/")
    assert [url for url, _ in blocks.calls] == [f"{site.base}/"]
    assert site.seen == []


async def test_a_script_navigation_to_a_private_address_never_leaves(
    context: BrowserContext, site: Site
) -> None:
    blocks = await _guard(context, allow_private=False)
    page = await context.new_page()
    await page.set_content(f"<script>location.href = '{site.base}/x'</script>")
    await blocks.wait()
    await asyncio.sleep(0.3)  # time for a request that should not come
    assert [url for url, _ in blocks.calls] == [f"{site.base}/x"]
    assert site.seen == []


async def test_a_gzipped_page_renders(context: BrowserContext, site: Site) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/gzip")
    assert await page.text_content("#z") == "unzipped fine"


@pytest.mark.parametrize(("status", "method", "body"), [(307, "POST", "a=307"), (303, "GET", "")])
async def test_a_posted_form_is_redirected_like_a_browser_would(
    context: BrowserContext, site: Site, status: int, method: str, body: str
) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    assert await post_form(page, site.base, status) == (method, body)
    assert site.seen[-2:] == [f"POST /post{status}", f"{method} /echo"]


async def test_five_redirects_are_followed(context: BrowserContext, site: Site) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/chain/4")  # four to /chain/0, a fifth to /final
    assert page.url == f"{site.base}/final"


async def test_a_sixth_redirect_is_refused(context: BrowserContext, site: Site) -> None:
    blocks = await _guard(context, allow_private=True)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
        await page.goto(f"{site.base}/chain/5")
    assert blocks.calls == [(f"{site.base}/final", "more than 5 redirects")]
    assert "GET /final" not in site.seen


async def test_a_download_behind_a_redirect_leaves_the_page_alone(
    context: BrowserContext, site: Site
) -> None:
    await _guard(context, allow_private=True)
    page = await context.new_page()
    await page.goto(f"{site.base}/form")
    async with page.expect_download() as downloading:
        await page.click("#dl")
    download = await downloading.value
    saved = Path(await download.path())
    assert await asyncio.to_thread(saved.read_text) == "a,b\n1,2\n"
    assert page.url == f"{site.base}/form"
    assert await page.title() == "Form"


async def test_an_unresolvable_host_is_a_dns_error_not_a_block(context: BrowserContext) -> None:
    blocks = await _guard(context, allow_private=False)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_NAME_NOT_RESOLVED"):
        await page.goto("http://no-such-host.invalid/")
    assert blocks.calls == []


async def test_a_refused_connection_shows_as_such(context: BrowserContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await _guard(context, allow_private=True)
    page = await context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_CONNECTION_REFUSED"):
        await page.goto(f"http://127.0.0.1:{port}/")
