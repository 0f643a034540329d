"""Durable consumers shared by all gateway replicas: run events and dead runs into PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from pydantic import ValidationError

from figranium_common.models import (
    ExecutionNotice,
    LogEvent,
    ResultEvent,
    RunEventEnvelope,
    RunRequest,
    RunResult,
    StartedEvent,
    now_ms,
)
from figranium_common.nats import (
    DEAD_CONSUMER,
    DEAD_STREAM,
    EVENTS_STREAM,
    INGESTER_CONSUMER,
    RUNS_STREAM,
    notify_subject,
    unsubscribe,
)
from figranium_common.queue import seal_browser_state
from figranium_common.secretbox import SecretBox
from figranium_gateway import changes, schedule_store, store
from figranium_gateway.metrics import GatewayMetrics

log = structlog.get_logger(__name__)


async def notify_finished(nc: NATS, execution_id: str) -> None:
    notice = ExecutionNotice(execution_id=execution_id, phase="finished")
    await nc.publish(notify_subject(execution_id), notice.model_dump_json().encode())


async def apply_event(
    pool: store.Pool,
    nc: NATS,
    box: SecretBox,
    raw: bytes,
    metrics: GatewayMetrics | None = None,
) -> None:
    """Write one run event; redelivered events are no-ops thanks to the event keys."""
    event = RunEventEnvelope.model_validate_json(b'{"event":' + raw + b"}").event
    payload = json.loads(raw)
    bound = structlog.contextvars.bound_contextvars(execution_id=event.execution_id)
    with bound:
        if isinstance(event, StartedEvent):
            if await store.record_started(
                pool, event.execution_id, event.attempt, event.seq, event.at, payload
            ):
                log.info("execution.started", attempt=event.attempt, runner=event.runner_id)
                await changes.notify(nc)
        elif isinstance(event, LogEvent):
            if await store.record_log(pool, event.execution_id, event.attempt, event.seq, payload):
                await changes.notify(nc)
        elif isinstance(event, ResultEvent):
            # Cookies may be session credentials: kept once, as the task's state, not in
            # every execution's event history.
            payload.pop("storage_state", None)
            if await store.record_result(
                pool,
                event.execution_id,
                event.attempt,
                event.seq,
                event.result,
                event.duration_ms,
                event.at,
                payload,
                storage_state=seal_browser_state(box, event.storage_state),
            ):
                log.info(
                    "execution.finished",
                    outcome=event.result.outcome,
                    duration_ms=event.duration_ms,
                    attempt=event.attempt,
                )
                if metrics is not None:
                    metrics.runs_finished.labels(outcome=event.result.outcome).inc()
                    metrics.run_duration.observe(event.duration_ms / 1000)
                await changes.notify(nc)
                await schedule_store.record_scheduled_result(pool, event.execution_id)
            await notify_finished(nc, event.execution_id)


async def mark_crashed(
    pool: store.Pool,
    nc: NATS,
    js: JetStreamContext,
    raw: bytes,
    metrics: GatewayMetrics | None = None,
) -> None:
    """A run message used up its deliveries: finish its execution as ``crashed``."""
    advisory = json.loads(raw)
    seq = int(advisory["stream_seq"])
    deliveries = int(advisory.get("deliveries", 0))
    try:
        stored = await js.get_msg(RUNS_STREAM, seq)
    except Exception as exc:  # already deleted: nothing left to mark
        log.warning("dead_letter.message_gone", stream_seq=seq, error=str(exc))
        return
    request = RunRequest.model_validate_json(stored.data or b"{}")
    result = RunResult(
        outcome="crashed",
        error=f"the run was started {deliveries} times and no runner finished it",
    )
    now = now_ms()
    duration = max(0, now - request.requested_at)
    crash = {"type": "result", "crashed": True}
    if await store.record_result(pool, request.execution_id, 0, 0, result, duration, now, crash):
        log.error("execution.crashed", execution_id=request.execution_id, deliveries=deliveries)
        if metrics is not None:
            metrics.runs_finished.labels(outcome="crashed").inc()
            metrics.run_duration.observe(duration / 1000)
        await changes.notify(nc)
        await schedule_store.record_scheduled_result(pool, request.execution_id)
    await notify_finished(nc, request.execution_id)
    try:
        await js.delete_msg(RUNS_STREAM, seq)
    except Exception as exc:
        log.warning("dead_letter.delete_failed", stream_seq=seq, error=str(exc))


async def consume(
    js: JetStreamContext,
    stream: str,
    durable: str,
    handle: object,
    *,
    batch: int = 64,
) -> None:
    """Fetch-and-handle loop; a message that cannot be parsed is logged and terminated."""
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    assert callable(handle)
    try:
        while True:
            try:
                messages: list[Msg] = await sub.fetch(batch=batch, timeout=1)
            except (NatsTimeoutError, TimeoutError):  # nats-py raises either
                continue
            except NatsError as exc:
                # Disconnected or reconnecting: the client reconnects by itself; a NATS restart
                # must not take this service down with it.
                log.warning("nats.fetch_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for msg in messages:
                await _handle_one(msg, stream, handle)
    finally:
        # An open pull subscription would hold up the connection's drain at shutdown.
        await unsubscribe(sub)


async def _handle_one(msg: Msg, stream: str, handle: Any) -> None:
    try:
        await handle(msg.data)
    except (ValidationError, ValueError, KeyError) as exc:
        log.error("ingest.bad_message", stream=stream, error=str(exc))
        await msg.term()
        return
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Database down, for instance: leave it for redelivery.
        log.warning("ingest.retry_later", stream=stream, error=str(exc))
        await msg.nak(delay=2)
        return
    await msg.ack()


async def run_ingester(
    pool: store.Pool,
    nc: NATS,
    js: JetStreamContext,
    box: SecretBox,
    metrics: GatewayMetrics | None = None,
) -> None:
    async def on_event(raw: bytes) -> None:
        await apply_event(pool, nc, box, raw, metrics)

    async def on_dead(raw: bytes) -> None:
        await mark_crashed(pool, nc, js, raw, metrics)

    async with asyncio.TaskGroup() as group:
        group.create_task(consume(js, EVENTS_STREAM, INGESTER_CONSUMER, on_event))
        group.create_task(consume(js, DEAD_STREAM, DEAD_CONSUMER, on_dead, batch=16))
