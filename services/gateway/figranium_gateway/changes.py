"""The execution change log behind ``GET /api/executions/stream``.

Every state change of an execution (queued, started, a log line, a capture stored while
it runs, finished, deleted) adds one ``execution_changes`` row in the transaction that
made the change, so the log holds exactly what was committed. Its id is the SSE event
id: a client resuming with ``Last-Event-ID`` reads ``id > last`` from any replica and
misses nothing.

That only holds if ids become visible in id order. A bigserial alone does not promise it
(two transactions may take ids 10 and 11 and commit 11 first; a reader that sent 11 would
never send 10), so writers take one transaction-scoped advisory lock just before they
insert their change, as the last statement before the commit: ids are then handed out in
commit order. The price is that change-producing commits are serialised across replicas,
each holding the lock only for that insert and the commit itself.

Writers wake every replica with a bodiless core-NATS ping after such a commit
(``figranium_common.changelog.notify``, re-exported here as ``notify``); each
replica's :class:`ChangeFeed` also polls the newest id every second, so a missed ping (or
a writer that does not send one) delays a stream by at most that second.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from psycopg_pool import PoolTimeout

from figranium_common.changelog import (
    CHANGES_LOCK_ID,
    notify,
    record_change,
    record_deleted,
    record_each,
)
from figranium_common.db import Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.models import LogLine
from figranium_common.nats import CHANGES_NOTIFY_SUBJECT, Listener
from figranium_gateway.store import change_log

log = structlog.get_logger(__name__)

__all__ = [
    "CHANGES_LOCK_ID",
    "ChangeFeed",
    "log_extra",
    "notify",
    "record_change",
    "record_deleted",
    "record_each",
]

POLL_SECONDS = 1.0
# A log line is in the stream for live display; the whole line stays in the execution.
MAX_LINE_CHARS = 2000


def log_extra(payload: LogLine, attempt: int, seq: int) -> JsonObject:
    line = payload["line"]
    if len(line) > MAX_LINE_CHARS:
        line = line[:MAX_LINE_CHARS] + "…"
    return {"line": line, "attempt": attempt, "seq": seq}


# --- this replica's view --------------------------------------------------------------


class ChangeFeed:
    """The newest committed change id as this replica last saw it, and a way to wait for more.

    One poll per replica instead of one per open stream: streams query the log only when
    the feed says there is something past their position.
    """

    def __init__(self) -> None:
        self.latest = 0
        self.open_streams = 0
        self._ping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._listener = Listener()

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self, nc: NATS) -> None:
        await self._listener.listen(nc, CHANGES_NOTIFY_SUBJECT, self._on_ping)

    async def stop(self) -> None:
        await self._listener.stop()

    async def _on_ping(self, msg: Msg) -> None:
        self._ping.set()

    def close(self) -> None:
        """End every stream: aiohttp's shutdown waits for open handlers before cleanup."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        # A fresh event per generation: waiters that were woken never see it cleared.
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    async def run(self, pool: Pool) -> None:
        """Track the newest id: after each ping, and every second in case one was missed."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ping.wait(), POLL_SECONDS)
            self._ping.clear()
            if self.open_streams == 0:
                # Nobody to tell: no query per change (a run makes a dozen of them). A stream
                # that opens reads the log itself first and pokes the feed.
                continue
            try:
                latest = await change_log.latest_change_id(pool)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.warning("changes.poll_failed", error=str(exc))
                await asyncio.sleep(POLL_SECONDS)
                continue
            if latest != self.latest:
                self.latest = latest
                self._wake()

    def stream_opened(self) -> None:
        self.open_streams += 1
        self._ping.set()  # the feed is not kept current while no stream is open

    def stream_closed(self) -> None:
        self.open_streams -= 1

    async def wait(self, after: int, timeout: float) -> None:
        """Return once a change past ``after`` may exist, at shutdown, or after ``timeout``."""
        wakeup = self._wakeup
        if self._closed or self.latest > after:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout)
