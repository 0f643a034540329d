"""Synchronous run callers wait here for their execution to finish.

Any gateway replica may ingest the result; it then sends a core-NATS notice that every
replica hears. The notice is only a wake-up call: the outcome is read back from
PostgreSQL, and a slow poll covers a notice that was missed. The replica that stored the
result hands its callers the outcome it stored, without reading it back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator

from nats.aio.client import Client as NATS

from figranium_common.models import ExecutionNotice
from figranium_common.nats import NOTIFY_SUBJECT_PREFIX, Listener, notice_handler
from figranium_gateway.store.executions import RunOutcome


class Waiter:
    """One caller's wait for an execution: ``done`` is set when it finished, ``outcome``
    is what was stored when this replica stored it (else None: read it back)."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.outcome: RunOutcome | None = None


class Waiters:
    def __init__(self) -> None:
        self._waiting: dict[str, list[Waiter]] = defaultdict(list)
        self._listener = Listener()

    async def start(self, nc: NATS) -> None:
        on_notice = notice_handler(ExecutionNotice, self._on_notice, bad_event="waiters.bad_notice")
        await self._listener.listen(nc, f"{NOTIFY_SUBJECT_PREFIX}.*", on_notice)

    async def stop(self) -> None:
        await self._listener.stop()

    def _on_notice(self, notice: ExecutionNotice) -> None:
        if notice.phase == "finished":
            self.finished(notice.execution_id)

    def finished(self, execution_id: str, outcome: RunOutcome | None = None) -> None:
        """Wake the callers waiting for ``execution_id``: called for the notices, and by
        this replica's ingester at once, with the ``outcome`` it stored, without the round
        trip through NATS."""
        for waiter in self._waiting.get(execution_id, []):
            if outcome is not None:
                waiter.outcome = outcome
            waiter.done.set()

    @contextlib.contextmanager
    def waiting(self, execution_id: str) -> Iterator[Waiter]:
        """A wait for ``execution_id``: enter it before the run is published, so that not
        even a run that finishes at once is missed."""
        waiter = Waiter()
        self._waiting[execution_id].append(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiting.get(execution_id)
            if waiters is not None:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[execution_id]
