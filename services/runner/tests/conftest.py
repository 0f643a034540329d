"""Fixtures shared by the runner's browser tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from figranium_runner.browser import BrowserHost
from services.runner.tests.navigation_site import Site, serve_site


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
