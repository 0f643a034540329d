"""The life of one run here, step by step: announce it, open its browser context, execute
the task, close the context, store the captures, deliver the output, publish the result
and acknowledge the message.

A run that cannot finish here but is not at fault raises instead of publishing a result:
BrowserCrashed when its Chromium died, CancelledError when drained at shutdown. The worker
hands those back. Whatever happens, the captures of a run that does not finish are not
kept (but for the screenshots stored as they were taken: live_captures.py), its video
folder is removed, and its context is closed before its slot is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from playwright.async_api import BrowserContext, Page, Video
from playwright.async_api import Error as PlaywrightError

from figranium_common import transit
from figranium_common.cabinet_models import StoredDownload
from figranium_common.capture_models import StoredCapture
from figranium_common.config import Config
from figranium_common.errors import InvalidUrlError
from figranium_common.jsontypes import StorageState
from figranium_common.models import RunRequest, RunResult
from figranium_common.secretbox import SecretBox
from figranium_runner import identity, output, stealth
from figranium_runner.browser import BrowserCrashed, BrowserHost, ContextOptions
from figranium_runner.cabinet_run import RunCabinets
from figranium_runner.cabinet_store import CabinetStore
from figranium_runner.capture_store import CaptureStore
from figranium_runner.context import end_state, new_video_dir, open_context, recording
from figranium_runner.egress import EgressPolicy, pin_upstream
from figranium_runner.engine import Limits, execute
from figranium_runner.events import EventPublisher
from figranium_runner.live_captures import LiveCaptures
from figranium_runner.metrics import RunnerMetrics
from figranium_runner.state import Capture, discard_files
from figranium_runner.upstream_proxy import Upstream

log = structlog.get_logger(__name__)

MAX_BLOCKED_LINES = 20  # refused connections listed in a run's log


@dataclass(frozen=True)
class RunResources:
    """What every run on this runner shares."""

    config: Config
    limits: Limits
    nc: NATS
    browser: BrowserHost
    captures: CaptureStore
    cabinets: CabinetStore
    metrics: RunnerMetrics
    rng: random.Random
    runner_id: str
    transit: Callable[[], SecretBox]  # the transit key's box, made when first needed


class Run:
    """One attempt at a run request, from its start event to its ack. Made and run in the
    task that handles the message: :meth:`stop` and a crashed browser cancel that task."""

    def __init__(
        self,
        resources: RunResources,
        msg: Msg,
        request: RunRequest,
        events: EventPublisher,
    ) -> None:
        current = asyncio.current_task()
        assert current is not None, "made in the task that runs it"
        self._task = current
        self._res = resources
        self._msg = msg
        self.request = request
        self.task = request.task
        self.events = events
        self.stop_requested = False
        self.browser_died = False  # cancelled because its Chromium died
        self._started = 0.0
        self._captures: list[Capture] = []
        self._live = LiveCaptures(resources.captures, events)  # screenshots as taken
        self._stored_captures: list[StoredCapture] = []  # at the end
        self._cabinets = RunCabinets(plan=request.cabinets, source=resources.cabinets)
        self._stored: list[StoredDownload] = []  # downloads in the cabinets bucket
        self._uploading: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._end_state: StorageState | None = None
        self._agent: identity.UserAgent | None = None  # a stealth run's (stealth.py)

    def stop(self) -> None:
        """A stop request: the run ends now, as ``stopped``, with its result published."""
        self.stop_requested = True
        self._task.cancel()

    async def run(self) -> None:
        """Announce → pin the task's proxy → open, execute, close (:meth:`_browse`) →
        store the captures → deliver the output → publish the result and ack. A proxy the
        URL policy refuses ends the run at once, with an error result."""
        await self._announce()
        options = self._context_options()
        policy = EgressPolicy.from_config(self._res.config, on_block=self._on_block())
        try:
            upstream = await self._pinned_proxy(options, policy)
        except InvalidUrlError as exc:
            await self.events.log(f"Run failed: {exc.details}")
            result = RunResult(outcome="error", error=f"{exc.code}: {exc.details}")
            await self._finish(result, None)
            return
        try:
            result, video = await self._browse(options, policy, upstream)
            await self._store_captures(video)
            result = await output.deliver(
                result,
                self.request.output,
                allow_private=self._res.config.allow_private_networks,
                emit=self.events.log,
            )
            await self._finish_despite_cancel(result)
        except BaseException:
            self._abandon_captures()
            raise
        finally:
            if self._closing is not None:
                await asyncio.shield(self._closing)  # the slot is free once it is closed

    async def _announce(self) -> None:
        await self.events.started(self._res.runner_id)
        self._res.metrics.runs_started.inc()
        log.info("run.started", mode=self.task.mode)
        self._started = time.monotonic()

    def _context_options(self) -> ContextOptions:
        options = identity.context_options(self.task, self.request.proxies, self._res.rng)
        if self.task.stealth.enabled:
            self._agent = stealth.disguise(options)
        if options:
            log.info("run.identity", **identity.describe(options))
        if self.task.mode == "scrape":
            options["java_script_enabled"] = False  # a scrape shows the fetched HTML as it is
        return options

    def _on_block(self) -> Callable[[str, str], None]:
        """The run's own log also says why a request of its page failed, for the first few
        refusals (a page may retry without end)."""
        noted = 0

        def on_block(target: str, reason: str) -> None:
            nonlocal noted
            self._res.metrics.connections_blocked.inc()
            log.warning("run.connection_blocked", target=target, reason=reason)
            noted += 1
            if noted <= MAX_BLOCKED_LINES:
                self.events.note(f"[BLOCKED] Connection to {target} refused: {reason}")
            elif noted == MAX_BLOCKED_LINES + 1:
                self.events.note(
                    "[BLOCKED] More connections were refused; the runner's log has each"
                )

        return on_block

    async def _pinned_proxy(self, options: ContextOptions, policy: EgressPolicy) -> Upstream | None:
        """The task's proxy, pinned again for every run: its DNS answer may have changed
        since it was saved. A refusal (InvalidUrlError) is final: the run ends with it."""
        if "proxy" not in options:
            return None
        return await pin_upstream(options["proxy"], policy)

    async def _browse(
        self, options: ContextOptions, policy: EgressPolicy, upstream: Upstream | None
    ) -> tuple[RunResult, Capture | None]:
        """Open the context, execute the task in it, close it: the result and the video."""
        # A folder for the video only when there is one to record.
        folder: contextlib.AbstractContextManager[str | None] = (
            contextlib.nullcontext() if self.task.disableRecording else new_video_dir()
        )
        with folder as video_dir:
            state = None if self.task.statelessExecution else self.request.storage_state
            context = await open_context(
                self._res.browser,
                options,
                state,
                policy,
                None if video_dir is None else Path(video_dir),
                upstream,
            )
            result, video = await self._execute_in(context, options)
            return result, await recording(self.request.execution_id, video)

    async def _execute_in(
        self, context: BrowserContext, options: ContextOptions
    ) -> tuple[RunResult, Video | None]:
        watcher = asyncio.create_task(self._watch_browser(context), name="browser-watch")
        video: Video | None = None
        ran = False  # to the end of the run, without an exception
        try:
            if self._agent is not None:
                await stealth.prepare(context, self._agent)
            page = await context.new_page()
            video = page.video
            await identity.emulate(page, options)
            result = await self._execute(page)
            # A dead Chromium shows in a run as failed actions or an error result; only
            # the browser can tell the two apart.
            if result.outcome == "error" and await self._res.browser.lost(context):
                raise BrowserCrashed("the browser crashed during the run")
            # The screenshots and downloads are in hand: stored while the context closes.
            self._uploading = asyncio.create_task(self._store_files(), name="captures-upload")
            ran = True
        except PlaywrightError as exc:
            if await self._res.browser.lost(context):
                raise BrowserCrashed("the browser crashed during the run") from exc
            raise
        finally:
            watcher.cancel()
            # Closing finishes the video. Without one, and unless the run failed, the
            # context closes while the result goes out.
            await self._close(context, wait=video is not None or not ran)
        return result, video

    async def _execute(self, page: Page) -> RunResult:
        """The task's result within the run's timeout; a stop request ends it as stopped."""
        request = self.request
        try:
            async with asyncio.timeout(request.timeout_seconds):
                result, self._captures = await execute(
                    page,
                    self.task,
                    request.variables,
                    execution_id=request.execution_id,
                    limits=self._res.limits,
                    emit=self.events.log,
                    subtasks=request.subtasks,
                    captcha_solver=request.captcha_solver,
                    rng=self._res.rng,
                    cabinets=self._cabinets,
                    store_now=self._live.keep,
                )
        except TimeoutError:
            message = f"the run did not finish within {request.timeout_seconds:g} s"
            await self.events.log(f"Run failed: {message}")
            return RunResult(outcome="error", final_url=page.url, error=message)
        except asyncio.CancelledError:
            if not self.stop_requested:
                raise  # a shutdown drain, not a stop request
            self._task.uncancel()
            await self.events.log("Execution stopped by request")
            return RunResult(outcome="stopped", final_url=page.url, error="stopped by request")
        return result

    async def _watch_browser(self, context: BrowserContext) -> None:
        """Cancel the run when its Chromium dies: Playwright calls in flight at that moment
        may never return."""
        await self._res.browser.died(context).wait()
        self.browser_died = True
        self._task.cancel()

    async def _close(self, context: BrowserContext, *, wait: bool) -> None:
        """Keep the browser state for the task's next run, and close the context; a dead
        browser has nothing to save or close."""
        if self.browser_died:
            return
        if not self.task.statelessExecution:
            # The state rides in the result event; half the message limit leaves room for
            # the result itself, and a result that cannot be published would never be acked.
            self._end_state = await end_state(context, int(self._res.nc.max_payload) // 2)
        self._closing = asyncio.create_task(_close_quietly(context), name="context-close")
        if wait:
            await self._closing

    async def _store_files(self) -> None:
        last = [*await self._live.settle(), *self._captures]
        self._stored_captures += await self._res.captures.upload(last, self.events.log)
        self._stored = await self._res.cabinets.put(self._cabinets.downloads, self.events.log)

    async def _store_captures(self, video: Capture | None) -> None:
        if self._uploading is not None:
            await self._uploading
        if video is not None:
            self._stored_captures += await self._res.captures.upload([video], self.events.log)

    def _abandon_captures(self) -> None:
        """The run goes back or fails: no upload to wait for, no file to keep."""
        self._live.abandon()
        if self._uploading is not None:
            self._uploading.cancel()
            self._uploading.add_done_callback(_retrieved)
        discard_files(self._captures)
        self._cabinets.discard_files()

    async def _finish_despite_cancel(self, result: RunResult) -> None:
        finishing = asyncio.create_task(self._finish(result, self._end_state), name="run-finish")
        try:
            await asyncio.shield(finishing)
        except asyncio.CancelledError:
            # Drained or stopped while the result was being published: it may be stored
            # already, so finish with the ack rather than hand the run back to run twice.
            await finishing
            self._task.uncancel()

    async def _finish(self, result: RunResult, state: StorageState | None) -> None:
        duration_ms = int((time.monotonic() - self._started) * 1000)
        # Sealed under the transit key: the events stream on disk holds no cookies.
        sealed = transit.seal_result_state(self._res.transit(), self.events.execution_id, state)
        await self.events.result(
            result,
            duration_ms,
            sealed_storage_state=sealed,
            stored_downloads=self._stored,
            uploaded_items=self._cabinets.marked,
            # Every capture this attempt stored, those announced while it ran too: the
            # gateway's index is whole even if one of their events was lost.
            stored_captures=[*self._live.stored, *self._stored_captures],
        )
        # The result is stored in the stream (its publish was acknowledged): the run is done
        # whatever happens to the ack. Not waiting for the server to confirm the ack saves a
        # round trip per run; an ack that is lost lets the run be delivered again, and the
        # ingester keeps the first result of an execution.
        await self._msg.ack()
        self._res.metrics.runs_finished.labels(outcome=result.outcome).inc()
        self._res.metrics.run_duration.observe(duration_ms / 1000)
        log.info("run.finished", outcome=result.outcome, duration_ms=duration_ms)


async def _close_quietly(context: BrowserContext) -> None:
    with contextlib.suppress(Exception):
        await context.close()


def _retrieved(task: asyncio.Task[object]) -> None:
    """Done callback of a task nobody awaits: its exception is not logged as unretrieved."""
    if not task.cancelled():
        task.exception()
