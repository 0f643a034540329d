"""One warm Chromium per runner process; every run gets a fresh, isolated context."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import structlog
from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright

log = structlog.get_logger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
_SYSTEM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def find_chromium(configured: str | None) -> str | None:
    """The Chromium to launch: configured, the system's, or None for Playwright's own build."""
    if configured:
        if not Path(configured).exists():
            raise FileNotFoundError(f"CHROMIUM_PATH {configured!r} does not exist")
        return configured
    for candidate in _SYSTEM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserHost:
    def __init__(self, chromium_path: str | None) -> None:
        self._executable = find_chromium(chromium_path)
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._playwright = await async_playwright().start()
        await self._ensure_browser()

    async def _ensure_browser(self) -> Browser:
        async with self._lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            assert self._playwright is not None, "BrowserHost.start() was not called"
            self._browser = await self._playwright.chromium.launch(
                executable_path=self._executable, headless=True, args=CHROMIUM_ARGS
            )
            log.info(
                "browser.launched",
                executable=self._executable or "playwright-bundled",
                version=self._browser.version,
            )
            return self._browser

    async def new_context(self) -> BrowserContext:
        """A context of its own for one run: no cookies or storage shared between runs."""
        browser = await self._ensure_browser()  # relaunches a Chromium that crashed
        return await browser.new_context(
            viewport={"width": 1280, "height": 800},
            bypass_csp=True,  # extraction scripts must run even under a strict CSP
            accept_downloads=True,
        )

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
