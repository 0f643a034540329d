"""Pulls run requests from JetStream, at most as many as there are free slots, and runs them.

Acknowledgement comes last: started → run → captures uploaded → result published → ack.
A runner that dies anywhere before the ack leaves the message to be redelivered. A run
that cannot finish here but is not at fault (drained at shutdown, its Chromium crashed)
publishes no result and is handed back with a nak, so another delivery starts at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from playwright.async_api import BrowserContext, Video
from playwright.async_api import Error as PlaywrightError
from pydantic import ValidationError

from figranium_common import transit
from figranium_common.config import Config
from figranium_common.errors import InvalidUrlError
from figranium_common.models import (
    LogEvent,
    ResultEvent,
    RunRequest,
    RunResult,
    StartedEvent,
    Task,
    now_ms,
)
from figranium_common.nats import (
    CAPTURES_BUCKET,
    RESULTS_BUCKET,
    RUNNERS_CONSUMER,
    RUNS_STREAM,
    STOP_SUBJECT_PREFIX,
    captures_store,
    event_subject,
    is_no_room,
    put_file_object,
    put_new_object,
    result_object_name,
    results_store,
    stops_store,
    unsubscribe,
)
from figranium_common.pull import PullStream
from figranium_common.secretbox import SecretBox, SecretError
from figranium_runner import identity, output
from figranium_runner.browser import BrowserCrashed, BrowserHost
from figranium_runner.egress import EgressPolicy, EgressProxy, Upstream, pin_upstream
from figranium_runner.engine import Capture, Limits, execute
from figranium_runner.metrics import RunnerMetrics

log = structlog.get_logger(__name__)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# A run records its video into a folder of its own, named after the runner's pid.
VIDEO_DIR_PREFIX = "figranium-video-"


async def _close(context: BrowserContext) -> None:
    with contextlib.suppress(Exception):
        await context.close()


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Done callback of a task nobody awaits: its exception is not logged as unretrieved."""
    if not task.cancelled():
        task.exception()


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
    options: dict[str, Any],
    storage_state: dict[str, Any] | None,
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
    options: dict[str, Any],
    storage_state: dict[str, Any] | None,
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
            log.warning("run.storage_state_refused", error=_first_line(exc))
    return await browser.new_context(record_video_dir=video_dir, **options)


MAX_BLOCKED_LINES = 20  # refused connections listed in a run's log
_MAX_LINES_PER_EVENT = 200
# The lines still waiting when the run ends ride in its result event, up to this much: the
# result has to fit in one NATS message with its data.
_MAX_LINES_IN_RESULT = 50
_MAX_CHARS_IN_RESULT = 16 * 1024
_MAX_CHARS_PER_EVENT = 256 * 1024
# Room left in a NATS message for its headers (the de-duplication id).
_HEADERS_ROOM = 4096
# The error of a stand-in result keeps this much of the run's own error.
_MAX_ERROR_CHARS = 2048


class EventPublisher:
    """Publishes one execution attempt's events, each with a de-duplication id.

    Lines said within ``linger_seconds`` of each other go out as one event
    (``RUN_LOG_LINGER_SECONDS``): a short run then sends one or two events instead of one
    per action, each of which is a NATS round trip and a database commit. The start waits
    as long, with the first lines, and a run that ends sooner announces it in its result.
    A live watcher sees a line at most this much later.

    Neither the start nor the log lines hold up the run: a background task publishes them
    in order, those that came together in one event, and the result waits until every
    event before it is out, so the ingester still sees the events of an attempt in
    sequence.
    """

    def __init__(
        self,
        js: JetStreamContext,
        execution_id: str,
        attempt: int,
        *,
        linger_seconds: float,
        max_payload: int = 1024 * 1024,
        max_result_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """``max_payload``: the NATS server's message limit; a result event larger than it
        goes through the results bucket, up to ``max_result_bytes`` (MAX_RESULT_BYTES)."""
        self._js = js
        self._max_event_bytes = max_payload - _HEADERS_ROOM
        self._max_result_bytes = max_result_bytes
        self._execution_id = execution_id
        self._attempt = attempt
        self._linger = linger_seconds
        self._seq = 0
        self._start: StartedEvent | None = None  # said, not published yet
        self._lines: collections.deque[tuple[int, str]] = collections.deque()
        self._flushing = asyncio.Event()
        self._finishing = False  # the result takes what is still waiting
        self._sender: asyncio.Task[None] | None = None

    @property
    def execution_id(self) -> str:
        return self._execution_id

    async def _publish(
        self, event: StartedEvent | LogEvent | ResultEvent, body: bytes | None = None
    ) -> None:
        await self._js.publish(
            event_subject(self._execution_id),
            event.model_dump_json().encode() if body is None else body,
            headers={"Nats-Msg-Id": f"{self._execution_id}:{self._attempt}:{event.seq}"},
            timeout=10,
        )

    def _next(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    async def started(self, runner_id: str) -> None:
        """The attempt started here; it is announced with the lines of the first linger."""
        self._start = StartedEvent(
            execution_id=self._execution_id,
            attempt=self._attempt,
            seq=self._next(),
            runner_id=runner_id,
        )
        self._send_soon()

    async def log(self, line: str) -> None:
        self._lines.append((self._next(), line))
        self._send_soon()

    def note(self, line: str) -> None:
        """A line from outside the action engine, such as a refused connection; dropped
        once the result is on its way."""
        if not self._finishing:
            self._lines.append((self._next(), line))
            self._send_soon()

    def _send_soon(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_lines(), name="run-log-sender")

    async def _send_lines(self) -> None:
        while self._lines or self._start is not None:
            if not self._flushing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flushing.wait(), self._linger)
            if self._finishing:
                return
            if self._start is None:
                await self._send_event(self._take_lines())
            elif not await self._announce():
                return  # tried again with the next line, or the result carries it

    async def _announce(self) -> bool:
        """Publish the start with the lines waiting behind it; whether it went out (if
        not, its lines wait again)."""
        assert self._start is not None
        lines = self._take_lines() if self._lines else []
        try:
            await self._publish(self._start.model_copy(update={"lines": [x for _, x in lines]}))
        except Exception as exc:
            log.warning("run.start_publish_failed", error=str(exc) or type(exc).__name__)
            self._lines.extendleft(reversed(lines))
            return False
        self._start = None
        return True

    async def _send_event(self, lines: list[tuple[int, str]]) -> None:
        event = LogEvent(
            execution_id=self._execution_id,
            attempt=self._attempt,
            seq=lines[0][0],
            lines=[line for _, line in lines],
        )
        try:
            await self._publish(event)
        except Exception as exc:  # a lost log line must not fail the run
            log.warning("run.log_publish_failed", error=str(exc) or type(exc).__name__)

    def _take_lines(self) -> list[tuple[int, str]]:
        """The oldest waiting lines that fit in one event (their seqs are consecutive)."""
        taken = [self._lines.popleft()]
        chars = len(taken[0][1])
        while self._lines and len(taken) < _MAX_LINES_PER_EVENT:
            chars += len(self._lines[0][1])
            if chars > _MAX_CHARS_PER_EVENT:
                break
            taken.append(self._lines.popleft())
        return taken

    def _too_many_to_ride(self) -> bool:
        return len(self._lines) > _MAX_LINES_IN_RESULT or (
            sum(len(line) for _, line in self._lines) > _MAX_CHARS_IN_RESULT
        )

    async def flush(self) -> None:
        """Publish the start and every log line so far now (or give up on them), without
        the linger; once the result is on its way, only what is already being published."""
        self._flushing.set()
        while self._sender is not None and not self._sender.done():
            # Shielded: a run cancelled while waiting leaves its lines going out.
            await asyncio.shield(self._sender)

    async def result(
        self,
        result: RunResult,
        duration_ms: int,
        storage_state: dict[str, Any] | None = None,
        *,
        sealed_storage_state: str | None = None,
    ) -> None:
        # What is already on its way goes out first; the last lines, and the start if it
        # is still waiting, ride in the result.
        self._finishing = True
        await self.flush()
        while self._too_many_to_ride():
            if self._start is None or not await self._announce():
                await self._send_event(self._take_lines())
        event = ResultEvent(
            execution_id=self._execution_id,
            attempt=self._attempt,
            seq=self._next(),
            result=result,
            duration_ms=duration_ms,
            storage_state=storage_state,
            sealed_storage_state=sealed_storage_state,
            lines=[line for _, line in self._lines],
            started=self._start,
        )
        body = event.model_dump_json().encode()
        if len(body) > self._max_event_bytes:
            event = await self._stored_apart(event, body)
            body = event.model_dump_json().encode()
        await self._publish(event, body)
        self._start = None
        self._lines.clear()

    async def _stored_apart(self, event: ResultEvent, body: bytes) -> ResultEvent:
        """A stand-in for a result too large for one message: the whole event goes to the
        results bucket. When it cannot (larger than MAX_RESULT_BYTES, or the bucket is
        full), the run ends with an error instead: storing it would fail at every attempt,
        and each attempt would repeat the run's side effects.

        A transient failure (NATS unreachable) raises: the run is not acknowledged, and is
        delivered again as any run whose result was not published."""
        if len(body) > self._max_result_bytes:
            return await self._failed(
                event,
                f"RESULT_TOO_LARGE: the run's result is {len(body)} bytes, more than"
                f" MAX_RESULT_BYTES ({self._max_result_bytes})",
            )
        name = result_object_name(self._execution_id, self._attempt)
        try:
            await results_store(self._js, create=False)
            await put_new_object(self._js, RESULTS_BUCKET, name, body)
        except Exception as exc:
            if not is_no_room(exc):
                raise
            return await self._failed(
                event,
                f"RESULT_TOO_LARGE: the results bucket has no room for the run's result"
                f" ({len(body)} bytes; RESULTS_MAX_BYTES)",
            )
        log.info("run.result_stored_apart", bytes=len(body), object=name)
        stand_in = self._stand_in(event, event.result.error)
        return stand_in.model_copy(update={"result_object": name})

    async def _failed(self, event: ResultEvent, error: str) -> ResultEvent:
        log.error("run.result_too_large", error=error)
        # The lines that would have ridden in the result go out on their own.
        while self._lines:
            if self._start is None or not await self._announce():
                await self._send_event(self._take_lines())
        stand_in = self._stand_in(event, error)
        stand_in.result.outcome = "error"
        return stand_in

    def _stand_in(self, event: ResultEvent, error: str | None) -> ResultEvent:
        """``event`` without what makes it large: no data, HTML, logs or browser state."""
        result = event.result
        return ResultEvent(
            execution_id=event.execution_id,
            attempt=event.attempt,
            seq=event.seq,
            at=event.at,
            result=RunResult(
                outcome=result.outcome,
                final_url=result.final_url,
                screenshot_url=result.screenshot_url,
                error=None if error is None else error[:_MAX_ERROR_CHARS],
            ),
            duration_ms=event.duration_ms,
            lines=[line for _, line in self._lines],
            started=self._start,
        )


def runner_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class RunObserver(Protocol):
    """Told when a run starts and ends here (a headful runner announces its session)."""

    async def run_started(self, execution_id: str) -> None: ...

    async def run_ended(self, execution_id: str) -> None: ...


class Worker:
    def __init__(
        self,
        config: Config,
        nc: NATS,
        js: JetStreamContext,
        browser: BrowserHost,
        metrics: RunnerMetrics | None = None,
        *,
        consumer: str = RUNNERS_CONSUMER,
        slots: int | None = None,
        runner_id: str | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        """``consumer``: the durable consumer runs are pulled from; ``slots``: how many run
        at once (``RUNNER_CONCURRENCY`` by default)."""
        self._config = config
        self._transit_box: SecretBox | None = None
        self._limits = Limits.from_config(config)
        self._nc = nc
        self._js = js
        self._browser = browser
        self._consumer = consumer
        self._slots = slots or config.runner_concurrency
        self._observer = observer
        self._active: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self.runner_id = runner_id or runner_name()
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._stop_requested: set[str] = set()
        self._browser_died: set[str] = set()  # runs cancelled because their Chromium died
        self._metrics = metrics or RunnerMetrics()
        self._metrics.watch_slots(self._slots, lambda: len(self._active))
        # Looked up once, not once per run: each lookup is a request to NATS.
        self._captures_ready = False  # the object store exists
        self._stops: KeyValue | None = None

    @property
    def busy(self) -> int:
        return len(self._active)

    async def run(self, stopping: asyncio.Event) -> None:
        """Take runs while not stopping; then wait for in-flight runs (the caller bounds it)."""
        stops = await self._nc.subscribe(f"{STOP_SUBJECT_PREFIX}.*", cb=self._on_stop)
        if removed := await asyncio.to_thread(remove_orphaned_video_dirs):
            log.info("runner.orphaned_video_dirs_removed", count=removed)
        async with PullStream(self._nc, RUNS_STREAM, self._consumer) as pulled:
            log.info(
                "runner.ready", runner=self.runner_id, slots=self._slots, consumer=self._consumer
            )
            # A stop must end a wait for runs at once: a drain's bound starts at the signal.
            stopped = asyncio.ensure_future(stopping.wait())
            stopped.add_done_callback(lambda _: pulled.wake())
            try:
                await self._take_runs(pulled, stopping)
            finally:
                stopped.cancel()
        await unsubscribe(stops)

    async def _take_runs(self, pulled: PullStream, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            free = self._slots - len(self._active)
            if free <= 0:
                stop = asyncio.ensure_future(stopping.wait())
                try:
                    await asyncio.wait({*self._active, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                continue
            try:
                messages = await pulled.take(free, timeout=5)
            except NatsError as exc:
                # Disconnected or reconnecting: the client reconnects by itself; a NATS restart
                # must not take this service down with it.
                log.warning("nats.pull_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for msg in messages:
                task = asyncio.create_task(self._handle(msg), name="run")
                self._active.add(task)
                task.add_done_callback(self._active.discard)
                # A slot that frees up asks for the next run at once, not when take times out.
                task.add_done_callback(lambda _: pulled.wake())

    async def drain(self, bound_seconds: float) -> None:
        """Let running runs finish within the bound, then cancel and hand them back."""
        if not self._active:
            return
        log.info("runner.draining", running=len(self._active), bound_s=bound_seconds)
        _, pending = await asyncio.wait(self._active, timeout=bound_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _handle(self, msg: Msg) -> None:
        try:
            request = RunRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("run.bad_request", error=str(exc))
            await msg.term()  # without an execution id there is nobody to tell
            return
        attempt = msg.metadata.num_delivered or 1
        try:
            # Sealed by gateway or scheduler; one queued in clear by an older release as is.
            request = transit.open_run_request(self._transit(), request)
        except SecretError as exc:
            await self._refuse(msg, request, attempt, exc.details)
            return
        try:
            task = Task.model_validate(request.task)
        except ValidationError as exc:
            await self._refuse(msg, request, attempt, f"the task is not valid: {exc}")
            return
        with structlog.contextvars.bound_contextvars(
            execution_id=request.execution_id, task_id=task.id, attempt=attempt
        ):
            heartbeat = asyncio.create_task(self._heartbeat(msg), name="heartbeat")
            try:
                await self._run(msg, request, task, attempt)
            except asyncio.CancelledError:
                if request.execution_id not in self._browser_died:
                    # Drained away at shutdown: hand the run back for another runner at once.
                    await self._hand_back(msg, "drained")
                    raise
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                await self._browser_crashed(msg, "the browser crashed during the run")
            except BrowserCrashed as exc:
                await self._browser_crashed(msg, _first_line(exc))
            except Exception as exc:
                # NATS unreachable while publishing the result, say: no ack, so JetStream
                # redelivers after the ack wait.
                self._metrics.runs_finished.labels(outcome="unfinished").inc()
                log.error("run.unfinished", error=repr(exc))
            finally:
                heartbeat.cancel()
                self._browser_died.discard(request.execution_id)

    def _blocked_for(self, events: EventPublisher) -> Callable[[str, str], None]:
        """on_block for one run: its own log also says why a request of its page failed,
        for the first few refusals (a page may retry without end)."""
        noted = 0

        def on_block(target: str, reason: str) -> None:
            nonlocal noted
            self._metrics.connections_blocked.inc()
            log.warning("run.connection_blocked", target=target, reason=reason)
            noted += 1
            if noted <= MAX_BLOCKED_LINES:
                events.note(f"[BLOCKED] Connection to {target} refused: {reason}")
            elif noted == MAX_BLOCKED_LINES + 1:
                events.note("[BLOCKED] More connections were refused; the runner's log has each")

        return on_block

    async def _browser_crashed(self, msg: Msg, error: str) -> None:
        # Not the run's fault: another attempt on a new Chromium, here or elsewhere.
        # RUN_MAX_DELIVER still bounds a run that crashes every browser it gets.
        log.error("run.browser_crashed", error=error)
        await self._hand_back(msg, "browser_crashed")

    async def _watch_browser(self, context: BrowserContext, execution_id: str) -> None:
        """Cancel the run when its Chromium dies: Playwright calls in flight at that moment
        may never return."""
        await self._browser.died(context).wait()
        running = self._running.get(execution_id)
        if running is not None:
            self._browser_died.add(execution_id)
            running.cancel()

    async def _hand_back(self, msg: Msg, reason: str) -> None:
        self._metrics.runs_finished.labels(outcome="handed_back").inc()
        with contextlib.suppress(Exception):
            await msg.nak()
        log.warning("run.handed_back", reason=reason)

    def _transit(self) -> SecretBox:
        """The transit key's box, made at the first run that needs it."""
        if self._transit_box is None:
            self._transit_box = transit.transit_box(self._config)
        return self._transit_box

    def _events(self, execution_id: str, attempt: int) -> EventPublisher:
        return EventPublisher(
            self._js,
            execution_id,
            attempt,
            linger_seconds=self._config.run_log_linger_seconds,
            max_payload=int(self._nc.max_payload),
            max_result_bytes=self._config.max_result_bytes,
        )

    async def _refuse(self, msg: Msg, request: RunRequest, attempt: int, error: str) -> None:
        """Finish a run that cannot start with an error result, so it is not left queued."""
        events = self._events(request.execution_id, attempt)
        with contextlib.suppress(Exception):
            await events.result(RunResult(outcome="error", error=error), 0)
            await msg.ack()
            return
        log.error("run.refuse_failed", execution_id=request.execution_id)

    async def _heartbeat(self, msg: Msg) -> None:
        interval = max(1.0, self._config.run_ack_wait_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _on_stop(self, msg: Msg) -> None:
        execution_id = msg.subject.rsplit(".", 1)[-1]
        running = self._running.get(execution_id)
        if running is not None:
            self._stop_requested.add(execution_id)
            running.cancel()

    async def _stop_was_requested(self, execution_id: str) -> bool:
        """A stop that arrived before this runner took the run (kept in the KV bucket)."""
        try:
            if self._stops is None:
                self._stops = await stops_store(self._js, create=False)
            await self._stops.get(execution_id)
        except Exception:  # KeyNotFoundError, or the bucket is unreachable: run it
            return False
        return True

    async def _run(self, msg: Msg, request: RunRequest, task: Task, attempt: int) -> None:
        events = self._events(request.execution_id, attempt)
        if await self._stop_was_requested(request.execution_id):
            await events.result(RunResult(outcome="stopped", error="stopped before it started"), 0)
            await msg.ack()
            log.info("run.skipped_stopped")
            return
        current = asyncio.current_task()
        assert current is not None
        self._running[request.execution_id] = current
        if self._observer is not None:
            await self._observer.run_started(request.execution_id)
        try:
            await self._run_started(msg, request, task, attempt, events)
        finally:
            self._running.pop(request.execution_id, None)
            self._stop_requested.discard(request.execution_id)
            if self._observer is not None:
                await self._observer.run_ended(request.execution_id)

    async def _run_started(
        self,
        msg: Msg,
        request: RunRequest,
        task: Task,
        attempt: int,
        events: EventPublisher,
    ) -> None:
        await events.started(self.runner_id)
        self._metrics.runs_started.inc()
        log.info("run.started", mode=task.mode)
        started = time.monotonic()
        captures: list[Capture] = []
        end_state: dict[str, Any] | None = None
        video: Video | None = None
        options = identity.context_options(task, request.proxies, self._rng)
        if options:
            log.info("run.identity", **identity.describe(options))
        if task.mode == "scrape":
            options["java_script_enabled"] = False  # a scrape shows the fetched HTML as it is
        policy = EgressPolicy.from_config(self._config, on_block=self._blocked_for(events))
        upstream: Upstream | None = None
        if "proxy" in options:
            try:
                # Again for every run: the proxy's DNS answer may have changed since it was
                # saved. A refusal is final, so the run ends here rather than going back.
                upstream = await pin_upstream(options["proxy"], policy)
            except InvalidUrlError as exc:
                await events.log(f"Run failed: {exc.details}")
                duration_ms = int((time.monotonic() - started) * 1000)
                result = RunResult(outcome="error", error=f"{exc.code}: {exc.details}")
                await self._finish(msg, events, result, duration_ms, None)
                return
        # A folder for the video only when there is one to record.
        videos = None if task.disableRecording else new_video_dir()
        uploading: asyncio.Task[None] | None = None
        closing: asyncio.Task[None] | None = None
        ran = False  # to the end of the run, without an exception
        try:
            context = await self._open_context(
                request,
                task,
                None if videos is None else Path(videos.name),
                options,
                policy,
                upstream,
            )
            watcher = asyncio.create_task(
                self._watch_browser(context, request.execution_id), name="browser-watch"
            )
            try:
                page = await context.new_page()
                video = page.video
                await identity.emulate(page, options)
                try:
                    async with asyncio.timeout(request.timeout_seconds):
                        result, captures = await execute(
                            page,
                            task,
                            request.variables,
                            execution_id=request.execution_id,
                            limits=self._limits,
                            emit=events.log,
                            subtasks=request.subtasks,
                        )
                except TimeoutError:
                    message = f"the run did not finish within {request.timeout_seconds:g} s"
                    await events.log(f"Run failed: {message}")
                    result = RunResult(outcome="error", final_url=page.url, error=message)
                except asyncio.CancelledError:
                    if request.execution_id not in self._stop_requested:
                        raise  # a shutdown drain, not a stop request
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
                    await events.log("Execution stopped by request")
                    result = RunResult(
                        outcome="stopped", final_url=page.url, error="stopped by request"
                    )
                # A dead Chromium shows in a run as failed actions or an error result;
                # only the browser can tell the two apart.
                if result.outcome == "error" and await self._browser.lost(context):
                    raise BrowserCrashed("the browser crashed during the run")
                # The screenshots are in hand: stored while the context closes.
                uploading = asyncio.create_task(
                    self._upload(captures, events), name="captures-upload"
                )
                ran = True
            except PlaywrightError as exc:
                if await self._browser.lost(context):
                    raise BrowserCrashed("the browser crashed during the run") from exc
                raise
            finally:
                watcher.cancel()
                if request.execution_id not in self._browser_died:  # else nothing to save
                    if not task.statelessExecution:
                        end_state = await self._end_state(context)
                    closing = asyncio.create_task(_close(context), name="context-close")
                    # Closing finishes the video. Without one, and unless the run failed,
                    # the context closes while the result goes out.
                    if video is not None or not ran:
                        await closing
            recording = await self._recording(request.execution_id, video)
        except BaseException:
            if uploading is not None:  # the run goes back or fails: nothing to wait for
                uploading.cancel()
                uploading.add_done_callback(_retrieved)
            _discard_files(captures)
            raise
        finally:
            if videos is not None:
                videos.cleanup()
        try:
            if uploading is not None:
                await uploading
            if recording is not None:
                await self._upload([recording], events)
            result = await output.deliver(
                result,
                request.output,
                allow_private=self._config.allow_private_networks,
                emit=events.log,
            )
            duration_ms = int((time.monotonic() - started) * 1000)
            finishing = asyncio.create_task(
                self._finish(msg, events, result, duration_ms, end_state), name="run-finish"
            )
            try:
                await asyncio.shield(finishing)
            except asyncio.CancelledError:
                # Drained or stopped while the result was being published: it may be stored
                # already, so finish with the ack rather than hand the run back to run twice.
                await finishing
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
        finally:
            if closing is not None:
                await asyncio.shield(closing)  # the slot is free once its context is closed

    async def _finish(
        self,
        msg: Msg,
        events: EventPublisher,
        result: RunResult,
        duration_ms: int,
        end_state: dict[str, Any] | None,
    ) -> None:
        # Sealed under the transit key: the events stream on disk holds no cookies.
        sealed = transit.seal_result_state(self._transit(), events.execution_id, end_state)
        await events.result(result, duration_ms, sealed_storage_state=sealed)
        # The result is stored in the stream (its publish was acknowledged): the run is done
        # whatever happens to the ack. Not waiting for the server to confirm the ack saves a
        # round trip per run; an ack that is lost lets the run be delivered again, and the
        # ingester keeps the first result of an execution.
        await msg.ack()
        self._metrics.runs_finished.labels(outcome=result.outcome).inc()
        self._metrics.run_duration.observe(duration_ms / 1000)
        log.info("run.finished", outcome=result.outcome, duration_ms=duration_ms)

    async def _open_context(
        self,
        request: RunRequest,
        task: Task,
        video_dir: Path | None,
        options: dict[str, Any],
        policy: EgressPolicy,
        upstream: Upstream | None = None,
    ) -> BrowserContext:
        state = None if task.statelessExecution else request.storage_state
        return await open_context(self._browser, options, state, policy, video_dir, upstream)

    async def _end_state(self, context: BrowserContext) -> dict[str, Any] | None:
        """Cookies and local storage to keep for the task's next run; None keeps the old."""
        try:
            state: dict[str, Any] = dict(await context.storage_state())
        except PlaywrightError as exc:  # the browser died: the saved state stays as it was
            log.warning("run.storage_state_unavailable", error=_first_line(exc))
            return None
        # The state rides in the result event; half the message limit leaves room for the
        # result itself, and a result that cannot be published would never be acked.
        size = len(json.dumps(state))
        limit = int(self._nc.max_payload) // 2
        if size > limit:
            log.warning("run.storage_state_too_large", bytes=size, limit=limit)
            return None
        return state

    async def _recording(self, execution_id: str, video: Video | None) -> Capture | None:
        if video is None:
            return None
        try:
            path = Path(await video.path())
            data = await asyncio.to_thread(path.read_bytes)
        except (PlaywrightError, OSError) as exc:
            log.warning("run.recording_missing", error=_first_line(exc))
            return None
        if not data:
            log.warning("run.recording_empty")
            return None
        return Capture(f"{execution_id}_agent_{now_ms()}.webm", data, "video/webm")

    async def _upload(self, captures: list[Capture], events: EventPublisher) -> None:
        try:
            for capture in captures:
                try:
                    await self._put_capture(capture)
                except NatsError as exc:
                    if is_no_room(exc):
                        await self._dropped(capture, events)
                        continue
                    # Looked up again, once: the bucket may be gone with a NATS server
                    # that lost its store (until a gateway declares it again).
                    self._captures_ready = False
                    try:
                        await self._put_capture(capture)
                    except NatsError as again:
                        if not is_no_room(again):
                            raise
                        await self._dropped(capture, events)
        finally:
            _discard_files(captures)

    async def _dropped(self, capture: Capture, events: EventPublisher) -> None:
        # Not the run's fault, and storing it again would fail the same way: the run
        # finishes without this file rather than run again.
        log.error("run.capture_dropped", capture=capture.name, reason="CAPTURES_MAX_BYTES")
        await events.log(
            f"[CAPTURE ERROR] {capture.name} dropped: the captures bucket is full"
            " (CAPTURES_MAX_BYTES)"
        )

    async def _put_capture(self, capture: Capture) -> None:
        if not self._captures_ready:
            # Looked up only: the gateway declares it (runners may not).
            await captures_store(self._js, create=False)
            self._captures_ready = True
        if capture.path is not None:
            await put_file_object(self._js, CAPTURES_BUCKET, capture.name, capture.path)
        else:
            await put_new_object(self._js, CAPTURES_BUCKET, capture.name, capture.data)


def _discard_files(captures: list[Capture]) -> None:
    """Remove the files of captures kept on disk (downloads), stored or not."""
    for capture in captures:
        if capture.path is not None:
            capture.path.unlink(missing_ok=True)
