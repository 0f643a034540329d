"""The scheduler's work: fire due schedules, sleep until the next one, report liveness.

It sleeps until the earliest ``next_run`` (never longer than the configured cap), and a
core-NATS notice from the gateway after any schedule change wakes it at once, so a
schedule saved for a moment from now is not slept past.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from datetime import timedelta

import psycopg
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from psycopg_pool import PoolTimeout

from figranium_common import changelog, queue, transit
from figranium_common.config import Config
from figranium_common.db import Pool
from figranium_common.errors import describe
from figranium_common.headful import HeadfulRoster
from figranium_common.nats import SCHEDULES_NOTIFY_SUBJECT, unsubscribe
from figranium_common.secretbox import SecretBox
from figranium_scheduler import claim
from figranium_scheduler.metrics import SchedulerMetrics

log = structlog.get_logger("figranium_scheduler")

# Wake a little after the due time, so ``next_run <= now()`` holds when the claim runs.
WAKE_MARGIN_SECONDS = 0.005
RETRY_SECONDS = 1.0
# Run requests awaiting their JetStream ack at once.
PUBLISH_CONCURRENCY = 64
_STORAGE_DOWN = (psycopg.OperationalError, PoolTimeout)


def replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Scheduler:
    def __init__(
        self, pool: Pool, nc: NATS, config: Config, metrics: SchedulerMetrics | None = None
    ) -> None:
        self.pool = pool
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.config = config
        self.box = SecretBox.from_config(config)
        self.transit = transit.derived_transit_box(self.box)
        self.replica_id = replica_name()
        self.fired = 0
        self.skipped = 0
        self.metrics = metrics or SchedulerMetrics()
        # Headful tasks are only fired while a headful runner is live to take them.
        self.headful = HeadfulRoster()
        self._wake = asyncio.Event()

    async def _on_notice(self, msg: Msg) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Fire schedules until ``stopping`` is set; a claim under way finishes first."""
        sub = await self.nc.subscribe(SCHEDULES_NOTIFY_SUBJECT, cb=self._on_notice)
        await self.headful.start(self.nc)
        log.info("scheduler.started", replica=self.replica_id)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._heartbeats(stopping), name="heartbeats")
                group.create_task(self._fire_loop(stopping), name="fire-loop")
        finally:
            await unsubscribe(sub)
            await self.headful.stop()
            with contextlib.suppress(*_STORAGE_DOWN):
                await claim.goodbye(self.pool, self.replica_id)

    async def _fire_loop(self, stopping: asyncio.Event) -> None:
        cap = self.config.scheduler_max_sleep_seconds
        while not stopping.is_set():
            # Cleared before reading: a notice that arrives during the claim wakes us again.
            self._wake.clear()
            try:
                await self.fire_due()
                until = await claim.seconds_until_next(self.pool)
                delay = cap if until is None else min(cap, max(0.0, until) + WAKE_MARGIN_SECONDS)
            except _STORAGE_DOWN as exc:
                log.warning("scheduler.storage_unavailable", error=str(exc))
                delay = RETRY_SECONDS
            await _first_of(stopping, self._wake, timeout=delay)

    async def fire_due(self) -> None:
        """Claim and fire everything due now, batch after batch.

        Run requests are published concurrently (up to ``PUBLISH_CONCURRENCY`` awaiting
        their JetStream acks at once) while the next batch is claimed; this returns when
        every one of them is acknowledged or left to the sweeper.
        """
        slots = asyncio.Semaphore(PUBLISH_CONCURRENCY)
        publishing: set[asyncio.Task[None]] = set()
        try:
            while True:
                claimed = await claim.claim_due(
                    self.pool,
                    self.box,
                    limit=self.config.scheduler_batch_size,
                    grace=timedelta(seconds=self.config.scheduler_misfire_grace_seconds),
                    timeout_seconds=self.config.run_timeout_seconds,
                    headful_available=await self.headful.check_available(),
                )
                for task_id, reason in claimed.skipped:
                    self.skipped += 1
                    self.metrics.skipped.labels(reason=reason).inc()
                    log.info("schedule.skipped", task_id=task_id, reason=reason)
                if claimed.fired:
                    await changelog.notify(self.nc)
                for fired in claimed.fired:
                    self.fired += 1
                    self.metrics.fired.inc()
                    self.metrics.lateness.observe(fired.lateness_ms / 1000)
                    publishing.add(asyncio.create_task(self._publish(fired, slots)))
                if claimed.rows < self.config.scheduler_batch_size:
                    return
        finally:
            # Even when a claim fails: what was claimed and committed still goes out.
            await asyncio.gather(*publishing)

    async def _publish(self, fired: claim.Fired, slots: asyncio.Semaphore) -> None:
        request = fired.request
        async with slots:
            try:
                await queue.publish_run(self.js, request, self.transit)
            except Exception as exc:
                # The execution is saved as queued: the gateway's sweeper publishes it later.
                log.warning(
                    "schedule.publish_failed",
                    execution_id=request.execution_id,
                    error=describe(exc),
                )
                return
        log.info(
            "schedule.fired",
            task_id=fired.task_id,
            execution_id=request.execution_id,
            due=fired.due.isoformat(),
            lateness_ms=fired.lateness_ms,
        )

    async def _heartbeats(self, stopping: asyncio.Event) -> None:
        every = self.config.scheduler_heartbeat_seconds
        while not stopping.is_set():
            try:
                await claim.heartbeat(self.pool, self.replica_id)
            except _STORAGE_DOWN as exc:
                log.warning("scheduler.heartbeat_failed", error=str(exc))
            log.info(
                "scheduler.heartbeat",
                replica=self.replica_id,
                fired=self.fired,
                skipped=self.skipped,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)


async def _first_of(stopping: asyncio.Event, wake: asyncio.Event, *, timeout: float) -> None:
    waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
