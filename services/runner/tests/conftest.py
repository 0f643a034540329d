"""Fixtures shared by the runner's browser tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext

from figranium_runner.browser import BrowserHost
from services.runner.tests.navigation_site import Site, serve_site
from services.runner.tests.site import serve


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def host() -> AsyncIterator[BrowserHost]:
    """One Chromium per test module, on the module's event loop."""
    browser = BrowserHost(None)
    await browser.start()
    yield browser
    await browser.close()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with serve_site() as served:
        yield served


@pytest_asyncio.fixture(loop_scope="module")
async def context(host: BrowserHost) -> AsyncIterator[BrowserContext]:
    """A fresh browser context per test, in the module's Chromium."""
    ctx = await host.new_context()
    yield ctx
    await ctx.close()


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """The test pages of ``site.py``, served for the module."""
    with serve() as (url, _):
        yield url
