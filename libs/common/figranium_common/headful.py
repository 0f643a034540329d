"""Headful runners seen from elsewhere: their presence, viewer tickets, and the live roster.

A headful runner (``RUNNER_HEADFUL=true``) runs a visible Chromium on a virtual display
that browsers watch through noVNC. It announces a :class:`HeadfulPresence` on
``HEADFUL_PRESENCE_SUBJECT`` every ``HEARTBEAT_SECONDS``, at once when a session starts or
ends, when pinged on ``HEADFUL_PING_SUBJECT``, and a last time with ``leaving`` set when
it stops. Nothing about it is stored: gateways and schedulers each keep a
:class:`HeadfulRoster` of the runners they heard from lately.

A viewer connection needs a ticket, minted by the runner itself on
``headful_ticket_subject(runner_id)`` (the gateway relays an authenticated API call).
A ticket is bound to one execution: the runner mints it only while that execution is its
session, and the viewer opens only while it still is. It watches unless it was asked
for ``control``: keyboard and mouse reach the display only through a control ticket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from nats.aio.client import Client as NATS
from pydantic import BaseModel, Field

from figranium_common.models import now_ms
from figranium_common.nats import (
    HEADFUL_PING_SUBJECT,
    HEADFUL_PRESENCE_SUBJECT,
    Listener,
    notice_handler,
)

HEARTBEAT_SECONDS = 2.0
# A runner not heard from for three heartbeats is gone (killed without a goodbye).
EXPIRY_SECONDS = 3 * HEARTBEAT_SECONDS
# Right after start, runners have not answered the ping yet: "none available" is only
# believed after waiting a moment for them, within this long after start.
SETTLE_SECONDS = 3.0
SETTLE_WAIT_SECONDS = 1.0


class HeadfulPresence(BaseModel):
    """A headful runner's state, as it announces it."""

    runner_id: str
    novnc_port: int = Field(ge=0, le=65535)
    viewer_url: str  # where browsers reach its viewer; no trailing slash
    is_running: bool = False  # a session (a headful run) is active
    execution_id: str | None = None
    started_at: int | None = None  # epoch ms the session started
    sent_at: int = Field(default_factory=now_ms)
    leaving: bool = False  # the runner is stopping: forget it now


class HeadfulTicketRequest(BaseModel):
    """Request/reply to one headful runner: a viewer ticket for its display, while it runs
    ``execution_id``."""

    execution_id: str
    control: bool = False  # keyboard and mouse too; else the viewer only watches


class HeadfulTicketRefusal(BaseModel):
    """The runner's answer when it is not running the execution the ticket was asked for."""

    error: str
    details: str


class HeadfulTicketReply(BaseModel):
    ticket: str
    expires_at: int  # epoch ms
    runner_id: str
    viewer_url: str


class HeadfulRoster:
    """The headful runners heard from lately, from their presence announcements.

    ``clock`` (monotonic seconds) measures silence; the runners' own timestamps are not
    compared with it, so clock skew between machines does not matter.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        expiry_seconds: float = EXPIRY_SECONDS,
    ) -> None:
        self._clock = clock
        self._expiry_seconds = expiry_seconds
        self._heard: dict[str, tuple[float, HeadfulPresence]] = {}
        self._arrived = asyncio.Event()
        self._listener = Listener()
        self._started_at: float | None = None

    async def start(self, nc: NATS) -> None:
        """Listen, then ping, so that live runners answer at once instead of in 2 s."""
        self._started_at = self._clock()
        on_presence = notice_handler(
            HeadfulPresence, self.observe, bad_event="headful.bad_presence"
        )
        await self._listener.listen(nc, HEADFUL_PRESENCE_SUBJECT, on_presence)
        await nc.publish(HEADFUL_PING_SUBJECT, b"")

    async def stop(self) -> None:
        await self._listener.stop()

    def observe(self, presence: HeadfulPresence) -> None:
        if presence.leaving:
            self._heard.pop(presence.runner_id, None)
            return
        self._heard[presence.runner_id] = (self._clock(), presence)
        self._arrived.set()

    def runners(self) -> list[HeadfulPresence]:
        """The live headful runners, by runner id."""
        oldest = self._clock() - self._expiry_seconds
        for runner_id, (heard_at, _) in list(self._heard.items()):
            if heard_at < oldest:
                del self._heard[runner_id]
        return [presence for _, (_, presence) in sorted(self._heard.items())]

    def available(self) -> bool:
        return bool(self.runners())

    async def wait_available(self, timeout: float) -> bool:
        """Whether a headful runner is live, waiting up to ``timeout`` s for one to appear."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.available():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return True

    async def check_available(self) -> bool:
        """:meth:`available`, but shortly after :meth:`start` (before runners could answer
        the ping) wait a moment for one rather than answer "none"."""
        if self.available():
            return True
        if self._started_at is None:
            return False
        settling = self._started_at + SETTLE_SECONDS - self._clock()
        if settling <= 0:
            return False
        return await self.wait_available(min(SETTLE_WAIT_SECONDS, settling))
