"""One warm Chromium per runner process; every run gets a fresh, isolated context."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import structlog
from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

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
        self.can_record = False

    async def start(self) -> None:
        self._playwright = await async_playwright().start()
        await self._ensure_browser()
        self.can_record = await self._probe_recording()

    async def _probe_recording(self) -> bool:
        """Whether videos can be recorded: Playwright needs its ffmpeg, which may be missing.

        Without this check every run would fail on its first page instead of running
        without a video.
        """
        browser = await self._ensure_browser()
        with tempfile.TemporaryDirectory(prefix="figranium-probe-") as directory:
            context = await browser.new_context(record_video_dir=directory)
            try:
                await context.new_page()
            except PlaywrightError as exc:
                log.warning(
                    "browser.recording_unavailable",
                    error=(str(exc).strip().splitlines() or [type(exc).__name__])[0],
                    hint="run scripts/ensure-ffmpeg.sh",
                )
                return False
            finally:
                await context.close()
        return True

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

    async def new_context(
        self, *, record_video_dir: Path | None = None, **options: Any
    ) -> BrowserContext:
        """A context of its own for one run: nothing shared with other runs but ``options``.

        ``options`` (user agent, viewport, proxy, storage state...) go to Playwright over
        the defaults. The video is left out when this machine cannot record.
        """
        browser = await self._ensure_browser()  # relaunches a Chromium that crashed
        settings: dict[str, Any] = {
            "viewport": {"width": 1280, "height": 800},
            "bypass_csp": True,  # extraction scripts must run even under a strict CSP
            "accept_downloads": True,
        }
        if record_video_dir is not None and self.can_record:
            settings["record_video_dir"] = str(record_video_dir)
        settings.update(options)
        return await browser.new_context(**settings)

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
