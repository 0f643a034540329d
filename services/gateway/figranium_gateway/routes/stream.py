"""Server-Sent Events of execution changes, resumable with ``Last-Event-ID``.

The stream reads the change log in PostgreSQL (see ``figranium_gateway.changes``), never
this replica's memory, so a client may reconnect to any replica and continue where it
left off.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable

import psycopg
import structlog
from aiohttp import web
from psycopg.rows import DictRow
from psycopg_pool import PoolTimeout

from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import ErrorBody
from figranium_gateway.routing import Router
from figranium_gateway.state import CHANGES, POOL
from figranium_gateway.store import change_log

log = structlog.get_logger(__name__)
api = Router("executions")

PATH = "/api/executions/stream"
HEARTBEAT_SECONDS = 15.0
BATCH = 500
# A stream only notices a vanished client when it writes or checks, so it checks this often.
CHECK_SECONDS = 1.0
# Sent first: after a gateway ends streams at shutdown, EventSource reconnects (to another
# replica) after this instead of its default of a few seconds.
RETRY_MS = 1000
_EVENT_ID = re.compile(r"^[0-9]{1,18}$")


def start_after(request: web.Request) -> int | None:
    # The header wins: EventSource reconnects with the URL it was opened with (so a stale
    # ?lastEventId=) and the id it last received in the header.
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    if not raw:
        return None
    if not _EVENT_ID.match(raw.strip()):
        raise ApiError(
            400, "INVALID_QUERY", f"Last-Event-ID must be an event id from this stream, not {raw!r}"
        )
    return int(raw.strip())


def _execution_of(row: DictRow) -> object:
    payload = row.get("payload")
    return payload.get("executionId") if isinstance(payload, dict) else None


def format_event(row: dict[str, object]) -> bytes:
    data = json.dumps(row["payload"], ensure_ascii=False, separators=(",", ":"))
    return f"id: {row['id']}\nevent: {row['kind']}\ndata: {data}\n\n".encode()


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


@api.get(
    PATH,
    "Server-Sent Events of execution changes (queued, started, log, capture, finished,"
    " deleted);"
    " each event's id resumes the stream through Last-Event-ID",
    query={
        "lastEventId": "resume after this event id (the Last-Event-ID header wins);"
        " without either, only changes from now on",
        "key": "the API key, for EventSource clients that cannot send headers",
        "runId": "only this execution's changes",
    },
    content_types={200: "text/event-stream"},
    responses={200: None, 400: ErrorBody},
)
async def stream_changes(request: web.Request) -> web.StreamResponse:
    last = start_after(request)
    # Figranium's clients follow one run with ?runId=; without it, every execution.
    run_id = request.query.get("runId") or None

    async def encode(rows: list[DictRow]) -> bytes:
        wanted = [r for r in rows if run_id is None or _execution_of(r) == run_id]
        return b"".join(format_event(row) for row in wanted)

    return await serve_changes(request, last, encode)


# Turns a batch of the log's rows into what the stream sends for them (b"" for nothing).
Encode = Callable[[list[DictRow]], Awaitable[bytes]]


async def serve_changes(
    request: web.Request, last: int | None, encode: Encode, first: bytes = b""
) -> web.StreamResponse:
    """Send the change log after ``last`` (from now on when None) as ``encode`` says, with
    heartbeats, until the client leaves or the gateway stops."""
    feed = request.app[CHANGES]
    pool = request.app[POOL]
    if last is None:
        last = await change_log.latest_change_id(pool)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            # nginx would otherwise buffer the stream until its buffer fills.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    feed.stream_opened()
    log.info("stream.opened", path=request.path, after=last, open_streams=feed.open_streams)
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode() + first)
        next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        while not feed.closed and not _gone(request):
            # Read before querying: every id up to it was committed before the query began,
            # so if the query finds none of them they are gone (pruned) and can be skipped.
            seen = feed.latest
            try:
                rows = await change_log.changes_since(pool, last, BATCH)
                sent = await encode(rows) if rows else b""
            except (psycopg.OperationalError, PoolTimeout) as exc:
                # Headers are sent: no error answer is possible, so wait for the database.
                log.warning("stream.storage_unavailable", error=str(exc))
                await feed.wait(last, CHECK_SECONDS)
                continue
            if rows:
                if sent:
                    await response.write(sent)
                last = int(rows[-1]["id"])
                next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
                if len(rows) == BATCH:
                    continue
            else:
                last = max(last, seen)
            now = time.monotonic()
            if now >= next_heartbeat:
                await response.write(b": keepalive\n\n")
                next_heartbeat = now + HEARTBEAT_SECONDS
            await feed.wait(last, min(CHECK_SECONDS, max(0.0, next_heartbeat - now)))
    except ConnectionResetError:
        pass  # the client left while we wrote
    finally:
        feed.stream_closed()
        log.info("stream.closed", path=request.path, after=last, open_streams=feed.open_streams)
    if not _gone(request):
        # At shutdown: end the chunked body cleanly, so the client reconnects elsewhere.
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
    return response
