"""Admission of run calls: refuse new work while too many runs are unfinished.

The count comes from PostgreSQL (executions not yet finished), not from the ``runners``
consumer's pending messages that the ``figranium_queue_pending`` gauge shows:

- it is current at each call, where the gauge is refreshed every few seconds, so a burst
  of calls (the case a limit exists for) would all be let in before the gauge moved;
- every gateway replica sees the same number, and runs saved as queued whose publish
  failed (the sweeper publishes them later) are counted too;
- it needs no NATS round trip, and the partial index ``executions_unfinished`` serves it.
  The count stops at the limit, so its cost is bounded however deep the backlog is.

Count and insert are not one transaction: calls arriving together may all see room and
overshoot the limit by at most the number of calls in flight. A soft bound is enough for
back-pressure, and serialising every run call on a lock would cost more than it saves.
"""

from __future__ import annotations

from aiohttp import web

from figranium_common.db import Connection
from figranium_gateway.errors import error_response

# How long a refused client should wait: about the time runners need to free some room.
RETRY_AFTER_SECONDS = 5


async def unfinished_runs(conn: Connection, limit: int) -> int:
    """How many executions are queued or running, counted up to ``limit``."""
    cur = await conn.execute(
        "SELECT count(*) AS n FROM"
        " (SELECT 1 FROM executions WHERE phase <> 'finished' LIMIT %s) AS unfinished",
        (limit,),
    )
    row = await cur.fetchone()
    return 0 if row is None else int(row["n"])


async def queue_full(conn: Connection, limit: int) -> web.Response | None:
    """The 429 answer when ``limit`` runs are unfinished already; None when there is room
    (or when ``limit`` is 0, no limit)."""
    if limit <= 0:
        return None
    if await unfinished_runs(conn, limit) < limit:
        return None
    response = error_response(
        429,
        "QUEUE_FULL",
        f"{limit} runs are queued or running already (RUN_QUEUE_LIMIT); try again later",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
