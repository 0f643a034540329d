"""Headful runners: their status, and viewer tickets for watching a session through noVNC.

Nothing here is stored: the status comes from the runners' presence announcements (the
gateway's :class:`HeadfulRoster`), and a ticket is minted by the runner itself, which
alone checks it when the viewer connects. A ticket is for one execution, the one the
runner is running: none is minted for a runner without a session.
"""

from __future__ import annotations

from urllib.parse import quote

import structlog
from aiohttp import web
from nats.errors import Error as NatsError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from figranium_common.errors import describe
from figranium_common.headful import (
    HeadfulPresence,
    HeadfulTicketRefusal,
    HeadfulTicketReply,
    HeadfulTicketRequest,
)
from figranium_common.nats import headful_ticket_subject
from figranium_gateway.errors import ApiError
from figranium_gateway.headful_runners import no_headful_runner
from figranium_gateway.request_input import read_model
from figranium_gateway.routing import Router
from figranium_gateway.state import HEADFUL, NC

log = structlog.get_logger(__name__)
api = Router("headful")

TICKET_REPLY_SECONDS = 2.0


class HeadfulRunnerOut(BaseModel):
    runnerId: str
    novncPort: int
    viewerUrl: str
    isRunning: bool
    executionId: str | None
    startedAt: int | None


class HeadfulStatus(BaseModel):
    useNovnc: bool
    novncPort: int | None
    isRunning: bool
    executionId: str | None
    runners: list[HeadfulRunnerOut]


def _active(runners: list[HeadfulPresence]) -> HeadfulPresence | None:
    return next((runner for runner in runners if runner.is_running), None)


@api.get(
    "/api/headful/status",
    "Headful runners and their sessions (useNovnc: at least one headful runner is live)",
    responses={200: HeadfulStatus},
)
async def headful_status(request: web.Request) -> web.Response:
    return web.json_response(status_of(request.app[HEADFUL].runners()).model_dump())


def status_of(runners: list[HeadfulPresence]) -> HeadfulStatus:
    """The headful runners' status, as ``GET /api/headful/status`` answers it."""
    active = _active(runners)
    shown = active or (runners[0] if runners else None)
    return HeadfulStatus(
        useNovnc=bool(runners),
        novncPort=shown.novnc_port if shown else None,
        isRunning=active is not None,
        executionId=active.execution_id if active else None,
        runners=[
            HeadfulRunnerOut(
                runnerId=runner.runner_id,
                novncPort=runner.novnc_port,
                viewerUrl=runner.viewer_url,
                isRunning=runner.is_running,
                executionId=runner.execution_id,
                startedAt=runner.started_at,
            )
            for runner in runners
        ],
    )


class TicketBody(BaseModel):
    """Which session to watch; with neither executionId nor runnerId, the active one. The
    ticket is for that execution only."""

    model_config = ConfigDict(extra="allow")  # apiKey / key may authenticate in the body

    executionId: str | None = None
    runnerId: str | None = None
    control: bool = Field(
        default=False,
        description="send keyboard and mouse input too; by default the viewer only watches",
    )


class TicketOut(BaseModel):
    ticket: str
    expiresAt: int
    runnerId: str
    url: str  # the noVNC page, connecting with the ticket


def _no_session(details: str) -> ApiError:
    return ApiError(404, "HEADFUL_SESSION_NOT_FOUND", details)


def _choose(runners: list[HeadfulPresence], body: TicketBody) -> tuple[HeadfulPresence, str]:
    """The runner to ask, and the execution the ticket is for."""
    runner = _choose_runner(runners, body)
    if runner.execution_id is None:
        raise _no_session(
            f"the headful runner {runner.runner_id!r} runs no session; a ticket is for one"
            " execution, so start a headful run first"
        )
    return runner, runner.execution_id


def _choose_runner(runners: list[HeadfulPresence], body: TicketBody) -> HeadfulPresence:
    if not runners:
        raise no_headful_runner()
    if body.executionId is None and body.runnerId is None:
        return _active(runners) or runners[0]
    for runner in runners:
        if body.runnerId not in (None, runner.runner_id):
            continue
        if body.executionId not in (None, runner.execution_id):
            continue
        return runner
    wanted = f"execution {body.executionId!r}" if body.executionId else f"runner {body.runnerId!r}"
    raise _no_session(f"no live headful runner has {wanted}")


def _reply(data: bytes) -> HeadfulTicketReply:
    """The runner's ticket; its refusal (the session ended meanwhile) as a 404."""
    try:
        return HeadfulTicketReply.model_validate_json(data)
    except ValidationError:
        refusal = HeadfulTicketRefusal.model_validate_json(data)  # else: no valid answer
    raise _no_session(refusal.details)


def viewer_link(viewer_url: str, ticket: str) -> str:
    path = quote(f"websockify?ticket={ticket}", safe="")
    return f"{viewer_url}/vnc.html?autoconnect=true&resize=scale&path={path}"


@api.post(
    "/api/headful/ticket",
    "A short-lived, single-use ticket to watch (or with control, drive) one headful session"
    " through noVNC",
    body=TicketBody,
    responses={200: TicketOut, 400: None, 404: None, 503: None},
)
async def headful_ticket(request: web.Request) -> web.Response:
    ticket = await mint_ticket(request.app, await read_model(request, TicketBody))
    return web.json_response(ticket.model_dump())


async def mint_ticket(app: web.Application, body: TicketBody) -> TicketOut:
    """A viewer ticket from the runner of the session ``body`` names (ApiError 404 without
    such a session, 503 when no headful runner is live or it does not answer)."""
    runner, execution_id = _choose(app[HEADFUL].runners(), body)
    ask = HeadfulTicketRequest(execution_id=execution_id, control=body.control)
    try:
        answer = await app[NC].request(
            headful_ticket_subject(runner.runner_id),
            ask.model_dump_json().encode(),
            timeout=TICKET_REPLY_SECONDS,
        )
        reply = _reply(answer.data)
    except (NatsError, TimeoutError, ValidationError) as exc:
        log.warning("headful.ticket_failed", runner=runner.runner_id, error=describe(exc))
        raise ApiError(
            503,
            "HEADFUL_UNAVAILABLE",
            f"the headful runner {runner.runner_id!r} did not answer; try again",
        ) from None
    log.info(
        "headful.ticket_issued",
        runner=reply.runner_id,
        execution_id=ask.execution_id,
        control=ask.control,
    )
    return TicketOut(
        ticket=reply.ticket,
        expiresAt=reply.expires_at,
        runnerId=reply.runner_id,
        url=viewer_link(reply.viewer_url, reply.ticket),
    )
