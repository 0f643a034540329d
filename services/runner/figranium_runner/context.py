"""A run's browser context: opened behind its own egress proxy with the saved browser
state, recording its video into a folder of its own; and what is kept of it at the end
(the browser state for the task's next run, the video)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import structlog
from playwright.async_api import BrowserContext, Video
from playwright.async_api import Error as PlaywrightError

from figranium_common.errors import first_line
from figranium_common.jsontypes import StorageState
from figranium_common.models import now_ms
from figranium_runner.browser import BrowserHost, ContextOptions
from figranium_runner.egress import EgressPolicy, EgressProxy, pin_upstream
from figranium_runner.state import Capture
from figranium_runner.upstream_proxy import Upstream

log = structlog.get_logger(__name__)

# A run records its video into a folder of its own, named after the runner's pid.
VIDEO_DIR_PREFIX = "figranium-video-"


def new_video_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"{VIDEO_DIR_PREFIX}{os.getpid()}-")


def remove_orphaned_video_dirs(parent: Path | None = None) -> int:
    """Remove the video folders of runners that are gone (a SIGKILL leaves its folders
    behind); returns how many. Folders of live processes are left alone."""
    removed = 0
    for path in Path(parent or tempfile.gettempdir()).glob(f"{VIDEO_DIR_PREFIX}*-*"):
        pid = path.name.removeprefix(VIDEO_DIR_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


async def open_context(
    browser: BrowserHost,
    options: ContextOptions,
    storage_state: StorageState | None,
    policy: EgressPolicy,
    video_dir: Path | None = None,
    upstream: Upstream | None = None,
) -> BrowserContext:
    """A run's browser context, with the saved browser state when Playwright accepts it.

    What it reaches stays inside the URL policy: its connections go through an egress proxy
    of its own (egress.py), and from there through the task's proxy when ``options`` names
    one. ``upstream`` is that proxy pinned already; otherwise it is pinned here, and a proxy
    the policy refuses raises InvalidUrlError.
    """
    if upstream is None and "proxy" in options:
        upstream = await pin_upstream(options["proxy"], policy)
    egress = await EgressProxy.start(policy, upstream)
    options = {**options, "proxy": egress.browser_proxy}
    try:
        context = await _new_context(browser, options, storage_state, video_dir)
    except BaseException:
        await egress.close()
        raise
    context.on("close", lambda _: egress.close_soon())
    return context


async def _new_context(
    browser: BrowserHost,
    options: ContextOptions,
    storage_state: StorageState | None,
    video_dir: Path | None,
) -> BrowserContext:
    if storage_state is not None:
        try:
            return await browser.new_context(
                record_video_dir=video_dir, storage_state=storage_state, **options
            )
        except PlaywrightError as exc:
            # A saved state Playwright refuses must not block the task for good: start
            # clean, and this run's end state replaces it.
            log.warning("run.storage_state_refused", error=first_line(exc))
    return await browser.new_context(record_video_dir=video_dir, **options)


async def end_state(context: BrowserContext, max_bytes: int) -> StorageState | None:
    """Cookies and local storage to keep for the task's next run, at most ``max_bytes`` of
    JSON; None keeps the old."""
    try:
        state: StorageState = await context.storage_state()
    except PlaywrightError as exc:  # the browser died: the saved state stays as it was
        log.warning("run.storage_state_unavailable", error=first_line(exc))
        return None
    size = len(json.dumps(state))
    if size > max_bytes:
        log.warning("run.storage_state_too_large", bytes=size, limit=max_bytes)
        return None
    return state


async def recording(execution_id: str, video: Video | None) -> Capture | None:
    """The run's video, read once its context has closed; None without one."""
    if video is None:
        return None
    try:
        path = Path(await video.path())
        data = await asyncio.to_thread(path.read_bytes)
    except (PlaywrightError, OSError) as exc:
        log.warning("run.recording_missing", error=first_line(exc))
        return None
    if not data:
        log.warning("run.recording_empty")
        return None
    return Capture(f"{execution_id}_agent_{now_ms()}.webm", data, "video/webm")
