"""Pulls run requests from JetStream, at most as many as there are free slots, and runs them.

Acknowledgement comes last: started → run → captures uploaded → result published → ack
(run.py). A runner that dies anywhere before the ack leaves the message to be redelivered.
A run that cannot finish here but is not at fault (drained at shutdown, its Chromium
crashed) publishes no result and is handed back with a nak, so another delivery starts at
once. A request that cannot be read is terminated; one that cannot start ends with an
error result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from typing import Protocol

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import ValidationError

from figranium_common import transit
from figranium_common.config import Config
from figranium_common.errors import describe, first_line
from figranium_common.models import RunRequest, RunRequestHead, RunResult
from figranium_common.nats import (
    RUNNERS_CONSUMER,
    RUNS_STREAM,
    STOP_SUBJECT_PREFIX,
    stops_store,
    unsubscribe,
)
from figranium_common.pull import PullStream
from figranium_common.secretbox import SecretBox, SecretError
from figranium_runner.browser import BrowserCrashed, BrowserHost
from figranium_runner.cabinet_store import CabinetStore
from figranium_runner.capture_store import CaptureStore
from figranium_runner.context import remove_orphaned_video_dirs
from figranium_runner.engine import Limits
from figranium_runner.events import EventPublisher
from figranium_runner.metrics import RunnerMetrics
from figranium_runner.null_engine import NullRun
from figranium_runner.run import Run, RunResources

log = structlog.get_logger(__name__)


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
        self._nc = nc
        self._js = js
        self._consumer = consumer
        self._slots = slots or config.runner_concurrency
        self._observer = observer
        self._active: set[asyncio.Task[None]] = set()
        self.runner_id = runner_id or runner_name()
        self._running: dict[str, Run] = {}
        self._metrics = metrics or RunnerMetrics()
        self._metrics.watch_slots(self._slots, lambda: len(self._active))
        self._resources = RunResources(
            config=config,
            limits=Limits.from_config(config),
            nc=nc,
            browser=browser,
            captures=CaptureStore(js),
            cabinets=CabinetStore(js),
            metrics=self._metrics,
            rng=random.Random(),
            runner_id=self.runner_id,
            transit=self._transit,
        )
        self._stops: KeyValue | None = None  # looked up once, at the first run

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
                log.warning("nats.pull_failed", error=describe(exc))
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
            await self._refuse_invalid(msg, exc)
            return
        attempt = msg.metadata.num_delivered or 1
        try:
            # Sealed by gateway or scheduler; one queued in clear by an older release as is.
            request = transit.open_run_request(self._transit(), request)
        except SecretError as exc:
            await self._refuse(msg, request.execution_id, attempt, exc.details)
            return
        with structlog.contextvars.bound_contextvars(
            execution_id=request.execution_id, task_id=request.task.id, attempt=attempt
        ):
            events = self._events(request.execution_id, attempt)
            engine = NullRun if self._config.runner_engine == "null" else Run
            run = engine(self._resources, msg, request, events)
            heartbeat = asyncio.create_task(self._heartbeat(msg), name="heartbeat")
            try:
                await self._run(msg, run)
            except asyncio.CancelledError:
                if not run.browser_died:
                    # Drained away at shutdown: hand the run back for another runner at once.
                    await self._hand_back(msg, "drained")
                    raise
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                await self._browser_crashed(msg, "the browser crashed during the run")
            except BrowserCrashed as exc:
                await self._browser_crashed(msg, first_line(exc))
            except Exception as exc:
                # NATS unreachable while publishing the result, say: no ack, so JetStream
                # redelivers after the ack wait.
                self._metrics.runs_finished.labels(outcome="unfinished").inc()
                log.error("run.unfinished", error=repr(exc))
            finally:
                heartbeat.cancel()

    async def _run(self, msg: Msg, run: Run) -> None:
        execution_id = run.request.execution_id
        if await self._stop_was_requested(execution_id):
            result = RunResult(outcome="stopped", error="stopped before it started")
            await run.events.result(result, 0)
            await msg.ack()
            log.info("run.skipped_stopped")
            return
        self._running[execution_id] = run
        if self._observer is not None:
            await self._observer.run_started(execution_id)
        try:
            await run.run()
        finally:
            self._running.pop(execution_id, None)
            if self._observer is not None:
                await self._observer.run_ended(execution_id)

    async def _browser_crashed(self, msg: Msg, error: str) -> None:
        # Not the run's fault: another attempt on a new Chromium, here or elsewhere.
        # RUN_MAX_DELIVER still bounds a run that crashes every browser it gets.
        log.error("run.browser_crashed", error=error)
        await self._hand_back(msg, "browser_crashed")

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

    async def _refuse_invalid(self, msg: Msg, exc: ValidationError) -> None:
        """A request that does not validate. One whose task alone is not valid (queued
        before a rule became stricter, say) finishes with an error result; any other is
        dropped: without an execution id there is nobody to tell."""
        log.error("run.bad_request", error=str(exc))
        try:
            execution_id = RunRequestHead.model_validate_json(msg.data).execution_id
        except ValidationError:
            execution_id = None
        if execution_id is None or any(error["loc"][:1] != ("task",) for error in exc.errors()):
            await msg.term()
            return
        attempt = msg.metadata.num_delivered or 1
        await self._refuse(msg, execution_id, attempt, f"the task is not valid: {exc}")

    async def _refuse(self, msg: Msg, execution_id: str, attempt: int, error: str) -> None:
        """Finish a run that cannot start with an error result, so it is not left queued."""
        events = self._events(execution_id, attempt)
        with contextlib.suppress(Exception):
            await events.result(RunResult(outcome="error", error=error), 0)
            await msg.ack()
            return
        log.error("run.refuse_failed", execution_id=execution_id)

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
            running.stop()

    async def _stop_was_requested(self, execution_id: str) -> bool:
        """A stop that arrived before this runner took the run (kept in the KV bucket)."""
        try:
            if self._stops is None:
                self._stops = await stops_store(self._js, create=False)
            await self._stops.get(execution_id)
        except Exception:  # KeyNotFoundError, or the bucket is unreachable: run it
            return False
        return True
