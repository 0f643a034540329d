"""A headful runner's side of the headful protocol (figranium_common.headful).

It serves the viewer, announces this runner's :class:`HeadfulPresence` (every heartbeat,
when pinged, when a session starts or ends, and a goodbye at the end), and mints viewer
tickets on its own ticket subject. It is the worker's run observer: a run here is the
visible session.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from figranium_common.config import Config
from figranium_common.errors import describe
from figranium_common.headful import (
    HEARTBEAT_SECONDS,
    HeadfulPresence,
    HeadfulTicketRefusal,
    HeadfulTicketReply,
    HeadfulTicketRequest,
)
from figranium_common.models import now_ms
from figranium_common.nats import (
    HEADFUL_PING_SUBJECT,
    HEADFUL_PRESENCE_SUBJECT,
    headful_ticket_subject,
    unsubscribe,
)
from figranium_runner.headful.display import VirtualDisplay, watch
from figranium_runner.headful.tickets import Grant, TicketBook
from figranium_runner.headful.viewer import Connections, ViewerServer, viewer_app
from figranium_runner.metrics import RunnerMetrics

log = structlog.get_logger(__name__)


class HeadfulService:
    def __init__(
        self,
        config: Config,
        nc: NATS,
        display: VirtualDisplay,
        metrics: RunnerMetrics,
        *,
        runner_id: str,
    ) -> None:
        self.runner_id = runner_id
        self._config = config
        self._nc = nc
        self._metrics = metrics
        self._tickets = TicketBook(config.headful_ticket_ttl_seconds)
        self._viewers = Connections()
        app = viewer_app(
            Path(config.novnc_web_dir),
            self._tickets,
            display.port,
            metrics,
            lambda: self._execution_id,
            self._viewers,
        )
        self._viewer = ViewerServer(app, host=config.host, port=config.novnc_port)
        self._subs: list[Subscription] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._execution_id: str | None = None
        self._started_at: int | None = None

    @property
    def viewer_url(self) -> str:
        public = self._config.novnc_public_url
        return public.rstrip("/") if public else f"http://localhost:{self._viewer.port}"

    async def start(self) -> None:
        await self._viewer.start()
        self._subs = [
            await self._nc.subscribe(HEADFUL_PING_SUBJECT, cb=self._on_ping),
            await self._nc.subscribe(headful_ticket_subject(self.runner_id), cb=self._on_ticket),
        ]
        self._heartbeat = watch(asyncio.create_task(self._beat(), name="headful-presence"))
        log.info("headful.viewer_serving", port=self._viewer.port, viewer_url=self.viewer_url)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for sub in self._subs:
            await unsubscribe(sub)
        self._subs = []
        await self._announce(leaving=True)
        await self._viewer.close()

    def presence(self, *, leaving: bool = False) -> HeadfulPresence:
        return HeadfulPresence(
            runner_id=self.runner_id,
            novnc_port=self._viewer.port,
            viewer_url=self.viewer_url,
            is_running=self._execution_id is not None,
            execution_id=self._execution_id,
            started_at=self._started_at,
            leaving=leaving,
        )

    async def _announce(self, *, leaving: bool = False) -> None:
        try:
            await self._nc.publish(
                HEADFUL_PRESENCE_SUBJECT, self.presence(leaving=leaving).model_dump_json().encode()
            )
        except Exception as exc:  # disconnected: the next heartbeat tells again
            log.warning("headful.presence_failed", error=describe(exc))

    async def _beat(self) -> None:
        while True:
            await self._announce()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _on_ping(self, msg: Msg) -> None:
        await self._announce()

    async def _on_ticket(self, msg: Msg) -> None:
        try:
            request = HeadfulTicketRequest.model_validate_json(msg.data or b"{}")
        except ValidationError:
            log.warning("headful.bad_ticket_request")
            return
        answer: HeadfulTicketReply | HeadfulTicketRefusal
        if request.execution_id != self._execution_id:
            # The gateway's view of the sessions may be a heartbeat old: this is the check.
            answer = HeadfulTicketRefusal(
                error="HEADFUL_SESSION_NOT_FOUND",
                details=f"runner {self.runner_id!r} is not running {request.execution_id!r}",
            )
            log.info("headful.ticket_refused", execution_id=request.execution_id)
        else:
            grant = Grant(request.execution_id, control=request.control)
            ticket, expires_at = self._tickets.mint(grant)
            answer = HeadfulTicketReply(
                ticket=ticket,
                expires_at=expires_at,
                runner_id=self.runner_id,
                viewer_url=self.viewer_url,
            )
            log.info(
                "headful.ticket_minted",
                execution_id=request.execution_id,
                control=request.control,
                expires_at=expires_at,
            )
        with contextlib.suppress(Exception):
            await msg.respond(answer.model_dump_json().encode())

    # The worker's RunObserver: with one slot, a run is the session.

    async def run_started(self, execution_id: str) -> None:
        if self._execution_id is not None:  # a session that never said it ended
            self._viewers.end(self._execution_id)
        self._execution_id, self._started_at = execution_id, now_ms()
        self._metrics.headful_session.set(1)
        log.info("headful.session_started", execution_id=execution_id)
        await self._announce()

    async def run_ended(self, execution_id: str) -> None:
        if self._execution_id != execution_id:
            return
        duration_ms = now_ms() - (self._started_at or now_ms())
        self._execution_id, self._started_at = None, None
        self._viewers.end(execution_id)
        self._metrics.headful_session.set(0)
        log.info("headful.session_ended", execution_id=execution_id, duration_ms=duration_ms)
        await self._announce()
