"""Durable consumers shared by all gateway replicas: run events and dead runs into PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Awaitable, Callable

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from figranium_common import transit
from figranium_common.db import Pool
from figranium_common.errors import describe
from figranium_common.jsontypes import JsonObject, StorageState
from figranium_common.models import (
    CaptureEvent,
    ExecutionNotice,
    LogEvent,
    LogLine,
    ResultEvent,
    RunEvent,
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
    results_store,
)
from figranium_common.pull import PullStream
from figranium_common.queue import seal_browser_state
from figranium_common.secretbox import SecretBox, SecretError
from figranium_gateway import cabinet_ingest, capture_index, changes
from figranium_gateway.cabinet_cleanup import delete_objects_logged
from figranium_gateway.metrics import GatewayMetrics
from figranium_gateway.store import captures, events, recording
from figranium_gateway.store.cabinets import Quotas
from figranium_gateway.store.executions import RunOutcome

log = structlog.get_logger(__name__)

# This replica's Waiters.finished: wakes the callers waiting for an execution.
Wake = Callable[[str, RunOutcome | None], None]

# A result that overtook the event before it waits this long, once, for it to be stored.
RESULT_WAIT_SECONDS = 0.2
# Longest wait for a large result to be read back from the results bucket.
RESULT_OBJECT_READ_SECONDS = 60.0
# Runs whose last stored event this replica remembers (the oldest are forgotten first).
REMEMBERED_RUNS = 10_000


async def notify_finished(
    nc: NATS,
    execution_id: str,
    wake: Wake | None = None,
    outcome: RunOutcome | None = None,
) -> None:
    """Tell every replica that ``execution_id`` finished; ``wake`` (this replica's
    ``Waiters.finished``) wakes the callers waiting here at once, without the round trip
    through NATS, and hands them ``outcome`` (as ``executions.run_outcome`` reads it) when the
    caller has it."""
    if wake is not None:
        wake(execution_id, outcome)
    notice = ExecutionNotice(execution_id=execution_id, phase="finished")
    await nc.publish(notify_subject(execution_id), notice.model_dump_json().encode())


def parse_event(raw: bytes) -> tuple[RunEvent, JsonObject]:
    """The event and its payload as published, from one parse of the JSON."""
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise ValueError("a run event is a JSON object")
    return RunEventEnvelope.model_validate({"event": payload}).event, payload


class EventIngester:
    """Stores run events from ``RUN_EVENTS``; redelivered events change nothing (event keys).

    A batch of messages is stored in order: consecutive log lines in one transaction
    (a run sends a line per action, so under load most events are lines), the other
    events each in their own. Each message is acknowledged once its transaction
    committed, and replicas are pinged once per batch. Run messages that used up their
    deliveries (``RUN_DEAD``) finish their executions as ``crashed``.
    """

    def __init__(
        self,
        pool: Pool,
        nc: NATS,
        box: SecretBox,
        metrics: GatewayMetrics | None = None,
        on_finished: Wake | None = None,
        *,
        preview_bytes: int | None = None,
        cabinet_quotas: Quotas = cabinet_ingest.UNBOUNDED,
    ) -> None:
        """``on_finished``: this replica's ``Waiters.finished`` (see ``notify_finished``);
        ``preview_bytes``: RESULT_PREVIEW_BYTES (None: results are kept as they are);
        ``cabinet_quotas``: CABINET_MAX_BYTES and CABINETS_MAX_TOTAL_BYTES."""
        self._pool = pool
        self._quotas = cabinet_quotas
        self._nc = nc
        self._preview_bytes = preview_bytes
        self._box = box
        self._transit = transit.derived_transit_box(box)
        self._metrics = metrics
        self._on_finished = on_finished
        # (execution id, attempt) -> the last sequence number of the latest event of that
        # attempt stored here; a result whose event before it is known here needs no lookup.
        self._stored: collections.OrderedDict[tuple[str, int], int] = collections.OrderedDict()

    def _remember(self, execution_id: str, attempt: int, last_seq: int) -> None:
        key = (execution_id, attempt)
        if self._stored.get(key, -1) < last_seq:
            self._stored[key] = last_seq
        self._stored.move_to_end(key)
        while len(self._stored) > REMEMBERED_RUNS:
            self._stored.popitem(last=False)

    async def apply(self, messages: list[Msg]) -> None:
        changed = False
        lines: list[tuple[Msg, LogEvent]] = []
        for msg in messages:
            try:
                event, payload = parse_event(msg.data)
            except (ValidationError, ValueError) as exc:
                log.error("ingest.bad_message", stream=EVENTS_STREAM, error=str(exc))
                await msg.term()
                continue
            if isinstance(event, LogEvent):
                lines.append((msg, event))
                continue
            changed |= await self._store_lines(lines)
            lines = []
            if isinstance(event, ResultEvent) and event.result_object is not None:
                whole = await self._whole(event, payload)
                if whole is None:
                    await msg.nak(delay=2)
                    continue
                event, payload = whole
            if isinstance(event, ResultEvent) and await self._ahead(msg, event):
                await msg.nak(delay=RESULT_WAIT_SECONDS)
                continue
            changed |= await settle([msg], EVENTS_STREAM, self._store(event, payload))
        changed |= await self._store_lines(lines)
        if changed:
            await changes.notify(self._nc)

    async def _whole(
        self, event: ResultEvent, payload: JsonObject
    ) -> tuple[ResultEvent, JsonObject] | None:
        """The whole event a stand-in refers to, from the results bucket; the stand-in
        itself when the object is gone (stored already by a delivery whose ack was lost,
        or lost with the NATS store); None to try again later (NATS unreachable)."""
        assert event.result_object is not None
        try:
            bucket = await results_store(self._nc.jetstream(), create=False)
            # Bounded: a read that stalls must not hold up every other run's events.
            stored = await asyncio.wait_for(
                bucket.get(event.result_object), RESULT_OBJECT_READ_SECONDS
            )
        except NotFoundError:
            log.warning("ingest.result_object_missing", object=event.result_object)
            return event, payload
        except Exception as exc:
            log.warning("ingest.result_object_unavailable", error=describe(exc))
            return None
        try:
            whole, whole_payload = parse_event(stored.data or b"")
        except (ValidationError, ValueError) as exc:
            log.error("ingest.bad_result_object", object=event.result_object, error=str(exc))
            return event, payload
        same = (event.execution_id, event.attempt, event.seq)
        if not isinstance(whole, ResultEvent) or (
            (whole.execution_id, whole.attempt, whole.seq) != same
        ):
            log.error("ingest.bad_result_object", object=event.result_object, error="mismatch")
            return event, payload
        whole_payload["result_object"] = event.result_object  # deleted once stored
        return whole.model_copy(update={"result_object": event.result_object}), whole_payload

    async def _ahead(self, msg: Msg, event: ResultEvent) -> bool:
        """Whether a result came before the event the runner published just ahead of it.

        With several replicas, that event (the run's last log lines in flight, or its
        started event) may be with another one: storing the result first would put
        ``finished`` before those lines in the change feed. It then waits once, briefly; a
        redelivered result is stored whatever is missing (a runner may have lost a line).
        """
        before = event.seq - len(event.lines) - 1
        if before < 0 or event.started is not None or msg.metadata.num_delivered > 1:
            return False
        # Stored here: the event ending at ``before`` is the one just ahead of the result
        # (a stored event cannot end later: the result's own lines come next).
        if self._stored.get((event.execution_id, event.attempt), -1) >= before:
            return False
        try:
            present = await events.has_event(self._pool, event.execution_id, event.attempt, before)
        except Exception:  # database down: storing the result fails and naks it as usual
            return False
        return not present

    async def _store_lines(self, lines: list[tuple[Msg, LogEvent]]) -> bool:
        if not lines:
            return False
        payloads = [payload for _, event in lines for payload in event.each()]
        return await settle([msg for msg, _ in lines], EVENTS_STREAM, self._store_logs(payloads))

    async def _store_logs(self, payloads: list[LogLine]) -> bool:
        new = await recording.record_logs(self._pool, payloads)
        for payload in payloads:  # stored now, whether new or stored before
            self._remember(payload["execution_id"], int(payload["attempt"]), int(payload["seq"]))
        return new > 0

    async def _store(self, event: RunEvent, payload: JsonObject) -> bool:
        """Store one started, result or capture event; whether it was new."""
        with structlog.contextvars.bound_contextvars(execution_id=event.execution_id):
            if isinstance(event, StartedEvent):
                return await self._started(event)
            if isinstance(event, ResultEvent):
                return await self._finished(event, payload)
            if isinstance(event, CaptureEvent):
                # Indexed, and sent on the live stream: not kept in the event history.
                new = await captures.record_captured(self._pool, event.execution_id, event.captures)
                return new > 0
            return False

    def _end_state(self, event: ResultEvent) -> StorageState | None:
        """The browser state the runner sent back (sealed under the transit key); one
        that does not open is dropped, keeping the task's saved state."""
        try:
            return transit.result_state(self._transit, event)
        except SecretError as exc:
            log.warning("execution.state_unreadable", error=exc.details)
            return None

    async def _started(self, event: StartedEvent) -> bool:
        new = await recording.record_started(self._pool, event)
        self._remember(event.execution_id, event.attempt, event.seq + len(event.lines))
        if not new:
            return False
        log.info("execution.started", attempt=event.attempt, runner=event.runner_id)
        return True

    async def _finished(self, event: ResultEvent, payload: JsonObject) -> bool:
        # Cookies may be session credentials: kept once, as the task's state, not in
        # every execution's event history.
        payload.pop("storage_state", None)
        payload.pop("sealed_storage_state", None)
        payload.pop("lines", None)  # stored as lines of their own, as a log event's are
        payload.pop("started", None)  # stored as the started event it stands for
        payload.pop("result_object", None)
        result_object = event.result_object  # what the payload said too
        files = await cabinet_ingest.settle_files(self._pool, event, payload, self._quotas)
        event, payload = files.event, files.payload
        event = await capture_index.with_referred(self._nc.jetstream(), event)
        recorded = await recording.record_result(
            self._pool,
            event,
            payload,
            storage_state=seal_browser_state(self._box, self._end_state(event)),
            preview_bytes=self._preview_bytes,
        )
        # Refused downloads' objects: gone once the result no longer needs them.
        await delete_objects_logged(self._nc.jetstream(), files.doomed)
        if result_object is not None:
            # Stored (or stored before): the bucket need not keep it until its TTL.
            await self._forget(result_object)
        if recorded is not None:
            if event.started is not None:
                log.info("execution.started", attempt=event.attempt, runner=event.started.runner_id)
            log.info(
                "execution.finished",
                outcome=event.result.outcome,
                duration_ms=event.duration_ms,
                attempt=event.attempt,
            )
            self._count_finished(event)
        self._stored.pop((event.execution_id, event.attempt), None)
        outcome = None if recorded is None else recorded.outcome
        await notify_finished(self._nc, event.execution_id, self._on_finished, outcome)
        return recorded is not None

    def _count_finished(self, event: ResultEvent) -> None:
        if self._metrics is not None:
            self._metrics.runs_finished.labels(outcome=event.result.outcome).inc()
            self._metrics.run_duration.observe(event.duration_ms / 1000)

    async def _forget(self, name: str) -> None:
        try:
            bucket = await results_store(self._nc.jetstream(), create=False)
            await bucket.delete(name)
        except Exception as exc:  # gone already, or NATS away: the bucket's TTL clears it
            log.info("ingest.result_object_kept", object=name, error=describe(exc))

    async def mark_crashed(self, js: JetStreamContext, raw: bytes) -> bool:
        """A run message used up its deliveries (``raw``: the dead-letter advisory): finish
        its execution as ``crashed``. Whether this marked it (False: it had finished, or the
        message is gone)."""
        advisory = json.loads(raw)
        seq = int(advisory["stream_seq"])
        deliveries = int(advisory.get("deliveries", 0))
        try:
            stored = await js.get_msg(RUNS_STREAM, seq)
        except Exception as exc:  # already deleted: nothing left to mark
            log.warning("dead_letter.message_gone", stream_seq=seq, error=str(exc))
            return False
        request = RunRequest.model_validate_json(stored.data or b"{}")
        result = RunResult(
            outcome="crashed",
            error=f"the run was started {deliveries} times and no runner finished it",
        )
        now = now_ms()
        crash = recording.gateway_result(
            request.execution_id, result, duration_ms=max(0, now - request.requested_at), at=now
        )
        marked = (
            await recording.record_result(self._pool, crash, {"type": "result", "crashed": True})
            is not None
        )
        if marked:
            log.error("execution.crashed", execution_id=request.execution_id, deliveries=deliveries)
            self._count_finished(crash)
            await changes.notify(self._nc)
        await notify_finished(self._nc, request.execution_id, self._on_finished)
        try:
            await js.delete_msg(RUNS_STREAM, seq)
        except Exception as exc:
            log.warning("dead_letter.delete_failed", stream_seq=seq, error=str(exc))
        return marked

    async def run(self, js: JetStreamContext) -> None:
        """Store run events, and mark runs whose messages died as crashed, until cancelled."""

        async def on_dead(messages: list[Msg]) -> None:
            for msg in messages:
                await settle([msg], DEAD_STREAM, self.mark_crashed(js, msg.data))

        async with asyncio.TaskGroup() as group:
            group.create_task(consume(self._nc, EVENTS_STREAM, INGESTER_CONSUMER, self.apply))
            group.create_task(consume(self._nc, DEAD_STREAM, DEAD_CONSUMER, on_dead, batch=16))


async def consume(
    nc: NATS,
    stream: str,
    durable: str,
    handle: Callable[[list[Msg]], Awaitable[None]],
    *,
    batch: int = 64,
) -> None:
    """Hand the consumer's messages to ``handle`` as they arrive, up to ``batch`` at a time."""
    async with PullStream(nc, stream, durable) as pulled:
        while True:
            try:
                messages = await pulled.take(batch, timeout=5, min_request=batch // 2)
            except NatsError as exc:
                # Disconnected or reconnecting: the client reconnects by itself; a NATS restart
                # must not take this service down with it.
                log.warning("nats.pull_failed", error=describe(exc))
                await asyncio.sleep(1)
                continue
            if messages:
                await handle(messages)


async def settle(messages: list[Msg], stream: str, work: Awaitable[bool]) -> bool:
    """Run ``work`` for ``messages`` and ack them; messages that cannot be parsed are logged
    and terminated, ones whose work failed otherwise (database down) are left for
    redelivery."""
    try:
        changed = await work
    except (ValidationError, ValueError, KeyError) as exc:
        log.error("ingest.bad_message", stream=stream, error=str(exc))
        for msg in messages:
            await msg.term()
        return False
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("ingest.retry_later", stream=stream, error=str(exc))
        for msg in messages:
            await msg.nak(delay=2)
        return False
    for msg in messages:
        await msg.ack()
    return changed
