"""Screenshots stored as a run takes them, not with its last captures: the console shows
each one at once (a CaptureEvent), and the run's end has that much less to store.

Each is stored in a task of its own, which the run does not wait for: a ``screenshot``
action takes no longer than before, and a run that takes none does nothing more.
"""

from __future__ import annotations

import asyncio

import structlog

from figranium_common.capture_models import StoredCapture
from figranium_common.errors import describe
from figranium_runner.capture_store import CaptureStore
from figranium_runner.events import EventPublisher
from figranium_runner.state import Capture

log = structlog.get_logger(__name__)


class LiveCaptures:
    """One run's screenshots (in memory) stored while it runs; ``stored`` lists those in
    the bucket, for the run's result."""

    def __init__(self, store: CaptureStore, events: EventPublisher) -> None:
        self._store = store
        self._events = events
        self.stored: list[StoredCapture] = []
        self._left: list[Capture] = []  # not stored (NATS away): tried again at the end
        self._storing: set[asyncio.Task[None]] = set()

    def keep(self, capture: Capture) -> None:
        """Store ``capture`` now, without holding up the run (``RunState.store_now``)."""
        storing = asyncio.create_task(self._put(capture), name="capture-store")
        self._storing.add(storing)
        storing.add_done_callback(self._storing.discard)

    async def _put(self, capture: Capture) -> None:
        try:
            # A full bucket drops the capture and says so in the run's log, as at the end.
            stored = await self._store.upload([capture], self._events.log)
        except Exception as exc:
            log.warning("run.capture_deferred", capture=capture.name, error=describe(exc))
            self._left.append(capture)
            return
        self.stored.extend(stored)
        self._events.captured(stored)

    async def settle(self) -> list[Capture]:
        """Wait until every capture on its way is stored; answers those that could not
        be, to store with the run's last captures."""
        while self._storing:
            await asyncio.gather(*self._storing)
        left, self._left = self._left, []
        return left

    def abandon(self) -> None:
        """The run goes back or fails: what is still being stored is not waited for."""
        for storing in self._storing:
            storing.cancel()
