"""Synchronous run callers wait here for their execution to finish.

Any gateway replica may ingest the result; it then sends a core-NATS notice that every
replica hears. The notice is only a wake-up call: the outcome is always read back from
PostgreSQL, and a slow poll covers a notice that was missed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from figranium_common.models import ExecutionNotice
from figranium_common.nats import NOTIFY_SUBJECT_PREFIX, unsubscribe

log = structlog.get_logger(__name__)


class Waiters:
    def __init__(self) -> None:
        self._events: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._sub: Subscription | None = None

    async def start(self, nc: NATS) -> None:
        self._sub = await nc.subscribe(f"{NOTIFY_SUBJECT_PREFIX}.*", cb=self._on_notice)

    async def stop(self) -> None:
        if self._sub is not None:
            await unsubscribe(self._sub)
            self._sub = None

    async def _on_notice(self, msg: Msg) -> None:
        try:
            notice = ExecutionNotice.model_validate_json(msg.data)
        except ValueError:
            log.warning("waiters.bad_notice", subject=msg.subject)
            return
        if notice.phase == "finished":
            self.finished(notice.execution_id)

    def finished(self, execution_id: str) -> None:
        """Wake the callers waiting for ``execution_id``: called for the notices, and by
        this replica's ingester at once, without the round trip through NATS."""
        for event in self._events.get(execution_id, []):
            event.set()

    def register(self, execution_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events[execution_id].append(event)
        return event

    def unregister(self, execution_id: str, event: asyncio.Event) -> None:
        events = self._events.get(execution_id)
        if events is None:
            return
        if event in events:
            events.remove(event)
        if not events:
            del self._events[execution_id]
