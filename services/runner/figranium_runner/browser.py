"""One warm Chromium per runner process; every run gets a fresh, isolated context.

The Chromium is supervised: one that dies is replaced at once (runs on it fail and are
handed back by the worker), and one that has opened ``max_contexts`` contexts is replaced
for new runs while the runs in flight finish on it, then closed. Long-lived Chromiums
grow; recycling bounds the memory a runner needs.

Given a :class:`Screen`, Chromium runs headed on that X display, its window filling the
screen (a headful runner's virtual display, watched through noVNC); otherwise headless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict, Unpack

import structlog
from playwright.async_api import (
    Browser,
    BrowserContext,
    Playwright,
    ProxySettings,
    ViewportSize,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from figranium_common.errors import FigraniumError, first_line
from figranium_common.jsontypes import StorageState
from figranium_runner.priority import lower_browser_priority, session_leaders

log = structlog.get_logger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Every context's traffic goes through its egress proxy (egress.py), which carries TCP
    # only: QUIC would be UDP straight out, and so would WebRTC's STUN and media unless
    # UDP that cannot go through the proxy is turned off. The headless shell reads the
    # first WebRTC switch, the full browser the second (checked with Chromium 156).
    "--disable-quic",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--no-first-run",
    # navigator.webdriver stays false: the first thing bot-detection scripts read.
    "--disable-blink-features=AutomationControlled",
]
# How long asking a Chromium that may have died can take before it counts as dead.
LIVENESS_PROBE_SECONDS = 5.0
_SYSTEM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
_HEADLESS_SHELLS = ("/usr/bin/chromium-headless-shell",)


class ContextOptions(TypedDict, total=False):
    """The ``new_context`` arguments runs choose, under Playwright's names and types."""

    user_agent: str
    extra_http_headers: dict[str, str]
    viewport: ViewportSize
    no_viewport: bool
    proxy: ProxySettings
    java_script_enabled: bool
    bypass_csp: bool
    accept_downloads: bool


def find_chromium(configured: str | None) -> str | None:
    """The Chromium to launch headed: configured, the system's, or None for Playwright's own
    build."""
    if configured:
        return _existing(configured, "CHROMIUM_PATH")
    return (
        _first_present(_SYSTEM_CANDIDATES)
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def find_headless_chromium(configured: str | None, full: str | None) -> str | None:
    """The Chromium for headless runs: ``configured`` (CHROMIUM_HEADLESS_PATH), else the
    system's headless shell, else the full browser :func:`find_chromium` gives for ``full``
    (CHROMIUM_PATH).

    The headless shell is the build Playwright itself runs headless. The full browser
    run headless still builds its window's toolbar, and with it loads the omnibox popup
    (a WebUI page with its own renderer) for every new context: measured on one core,
    a short run costs it 1.2-1.8 s of CPU against 0.35-0.4 s in the shell.
    """
    if configured:
        return _existing(configured, "CHROMIUM_HEADLESS_PATH")
    return (
        _first_present(_HEADLESS_SHELLS)
        or shutil.which("chromium-headless-shell")
        or find_chromium(full)
    )


def _existing(path: str, setting: str) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(f"{setting} {path!r} does not exist")
    return path


def _first_present(candidates: tuple[str, ...]) -> str | None:
    return next((candidate for candidate in candidates if Path(candidate).exists()), None)


RestartReason = Literal["crash", "recycle"]


class Screen(Protocol):
    """An X display to show a headed Chromium on; read at every launch, since a display
    that was restarted may have another number."""

    @property
    def display(self) -> str: ...  # ":1"

    @property
    def size(self) -> tuple[int, int]: ...  # width, height


class BrowserCrashed(FigraniumError):
    """The Chromium under a run died: the run is not at fault and goes back to the queue."""

    code = "BROWSER_CRASHED"


@dataclass(eq=False)
class _Generation:
    """One launched Chromium and the contexts opened on it."""

    browser: Browser
    opened: int = 0
    live: int = 0
    retired: bool = False
    closing: bool = False
    crashed: bool = False
    died: asyncio.Event = field(default_factory=asyncio.Event)


class BrowserHost:
    def __init__(
        self,
        chromium_path: str | None,
        *,
        headless_path: str | None = None,
        max_contexts: int = 0,
        retire_grace_seconds: float = 600.0,
        on_restart: Callable[[RestartReason], None] | None = None,
        screen: Screen | None = None,
        nice: int = 0,
    ) -> None:
        """``max_contexts`` 0 never recycles. A recycled Chromium is closed when its last
        context closes, or after ``retire_grace_seconds`` at the latest (a context that is
        never closed must not keep it alive for good). ``screen``: run headed on it, with
        ``chromium_path``'s browser; headless runs take :func:`find_headless_chromium`'s.
        ``nice``: the CPU priority each Chromium launched gets (priority.py); 0 keeps it."""
        self._executable = (
            find_chromium(chromium_path)
            if screen is not None
            else find_headless_chromium(headless_path, chromium_path)
        )
        self._screen = screen
        self._nice = nice
        self._max_contexts = max_contexts
        self._retire_grace_seconds = retire_grace_seconds
        self._on_restart = on_restart
        self._playwright: Playwright | None = None
        self._current: _Generation | None = None
        self._retired: set[_Generation] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._owners: weakref.WeakKeyDictionary[BrowserContext, _Generation] = (
            weakref.WeakKeyDictionary()
        )
        self._closing = False
        self._lock = asyncio.Lock()
        self.can_record = False

    @property
    def connected(self) -> bool:
        """Whether a Chromium is up for the next run (for readiness)."""
        current = self._current
        return current is not None and not current.crashed and current.browser.is_connected()

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
                    error=first_line(exc),
                    hint="run scripts/ensure-ffmpeg.sh",
                )
                return False
            finally:
                await context.close()
        return True

    async def _ensure_browser(self) -> Browser:
        return (await self._generation()).browser

    async def _generation(self) -> _Generation:
        """The Chromium new contexts go to: launched now if there is none, it died, or it
        has served its contexts."""
        async with self._lock:
            current = self._current
            if current is not None and not current.crashed and current.browser.is_connected():
                if not self._max_contexts or current.opened < self._max_contexts:
                    return current
                log.info("browser.recycled", contexts=current.opened, in_flight=current.live)
                # Launched before the old one is retired: should the launch fail, the old
                # one goes on serving until the next try.
                self._current = await self._launch()
                self._retire(current)
                if self._on_restart is not None:
                    self._on_restart("recycle")
                return self._current
            self._current = await self._launch()
            return self._current

    async def _launch(self) -> _Generation:
        assert self._playwright is not None, "BrowserHost.start() was not called"
        # The sessions there already (another Chromium, a virtual display) keep theirs.
        others = await asyncio.to_thread(session_leaders) if self._nice else set()
        if self._screen is None:
            browser = await self._playwright.chromium.launch(
                executable_path=self._executable, headless=True, args=CHROMIUM_ARGS
            )
        else:
            # No window manager places the window: put it at the origin, screen-sized.
            width, height = self._screen.size
            browser = await self._playwright.chromium.launch(
                executable_path=self._executable,
                headless=False,
                args=[*CHROMIUM_ARGS, "--window-position=0,0", f"--window-size={width},{height}"],
                env={**os.environ, "DISPLAY": self._screen.display},
            )
        generation = _Generation(browser)
        browser.on("disconnected", lambda _: self._disconnected(generation))
        lowered = 0
        if self._nice:
            lowered = await asyncio.to_thread(lower_browser_priority, self._nice, skip=others)
        log.info(
            "browser.launched",
            executable=self._executable or "playwright-bundled",
            version=browser.version,
            nice=self._nice,
            processes_lowered=lowered,
        )
        return generation

    def _disconnected(self, generation: _Generation) -> None:
        if generation.closing or self._closing:
            return  # closed on purpose
        generation.crashed = True
        generation.died.set()
        self._retired.discard(generation)
        log.error("browser.crashed", contexts=generation.opened, in_flight=generation.live)
        if self._on_restart is not None:
            self._on_restart("crash")
        if generation is self._current:
            # At once rather than with the next run, so readiness recovers by itself.
            self._spawn(self._relaunch(), "browser-relaunch")

    async def _relaunch(self) -> None:
        try:
            await self._ensure_browser()
        except Exception as exc:  # the next run's context tries again
            log.error("browser.relaunch_failed", error=repr(exc))

    async def relaunch_if_down(self) -> None:
        """Launch a Chromium now if none is up (after its display came back, say), rather
        than with the next run; a failure is logged and left to the next run."""
        if not self._closing and not self.connected:
            await self._relaunch()

    def _retire(self, generation: _Generation) -> None:
        generation.retired = True
        self._retired.add(generation)
        if generation.live <= 0:
            self._spawn(self._close_retired(generation), "browser-retire")
        else:
            self._spawn(self._close_retired_later(generation), "browser-retire-deadline")

    def _context_closed(self, generation: _Generation) -> None:
        generation.live -= 1
        if generation.retired and generation.live <= 0 and not generation.closing:
            self._spawn(self._close_retired(generation), "browser-retire")

    async def _close_retired_later(self, generation: _Generation) -> None:
        await asyncio.sleep(self._retire_grace_seconds)
        if not generation.closing:
            log.warning("browser.retired_with_open_contexts", in_flight=generation.live)
            await self._close_retired(generation)

    async def _close_retired(self, generation: _Generation) -> None:
        if generation.closing or generation.crashed:
            return
        generation.closing = True
        self._retired.discard(generation)
        with contextlib.suppress(PlaywrightError):
            await generation.browser.close()
        log.info("browser.retired_closed", contexts=generation.opened)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def new_context(
        self,
        *,
        record_video_dir: Path | None = None,
        storage_state: StorageState | None = None,
        **options: Unpack[ContextOptions],
    ) -> BrowserContext:
        """A context of its own for one run: nothing shared with other runs but ``options``.

        ``options`` (user agent, viewport, proxy...) go to Playwright over the defaults,
        with the saved ``storage_state`` if any. The video is left out when this machine
        cannot record. Raises :class:`BrowserCrashed` when the Chromium died under the call.
        """
        generation = await self._generation()  # relaunches a Chromium that crashed
        config: ContextOptions = {
            "bypass_csp": True,  # extraction scripts must run even under a strict CSP
            "accept_downloads": True,
        }
        if self._screen is None or "viewport" in options:
            config["viewport"] = {"width": 1280, "height": 800}
        else:
            # Headed, the page fills the window; a fixed viewport would grow the window
            # past the screen's edge.
            config["no_viewport"] = True
        config.update(options)
        recorded = record_video_dir is not None and self.can_record
        try:
            context = await generation.browser.new_context(
                record_video_dir=str(record_video_dir) if recorded else None,
                storage_state=storage_state,
                **config,
            )
        except PlaywrightError as exc:
            if generation.crashed or not generation.browser.is_connected():
                raise BrowserCrashed("the browser crashed while opening a context") from exc
            raise
        generation.opened += 1
        generation.live += 1
        self._owners[context] = generation
        context.on("close", lambda _: self._context_closed(generation))
        return context

    def died(self, context: BrowserContext) -> asyncio.Event:
        """Set when the Chromium under ``context`` crashes (not when it is closed on purpose)."""
        generation = self._owners.get(context)
        return asyncio.Event() if generation is None else generation.died

    async def lost(self, context: BrowserContext) -> bool:
        """Whether the Chromium under ``context`` died, rather than the run failing by itself.

        Asks the browser once: the failure a crash causes in a run can arrive before the
        browser's disconnection is known here.
        """
        browser = context.browser
        if browser is None or not browser.is_connected():
            return True
        try:
            async with asyncio.timeout(LIVENESS_PROBE_SECONDS):
                await context.cookies()
        except (PlaywrightError, TimeoutError):
            return True
        return False

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        generations = [*self._retired, *([self._current] if self._current else [])]
        self._current = None
        self._retired.clear()
        for generation in generations:
            generation.closing = True
            with contextlib.suppress(PlaywrightError):
                await generation.browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
