"""Admission of run calls: refuse new work while too many runs are unfinished.

The count comes from PostgreSQL (executions not yet finished), not from the ``runners``
consumer's pending messages that the ``figranium_queue_pending`` gauge shows:

- it is current at each call, where the gauge is refreshed every few seconds, so a burst
  of calls (the case a limit exists for) would all be let in before the gauge moved;
- every gateway replica sees the same number, and runs saved as queued whose publish
  failed (the sweeper publishes them later) are counted too;
- it needs no NATS round trip, and the partial index ``executions_unfinished`` serves it.
  The count stops at the limit, so its cost is bounded however deep the backlog is.

The count is a condition of the execution's insert (``store.executions.create_execution``),
so it costs no statement of its own. Calls arriving together are not serialised: they may
all see room and overshoot the limit by at most the number of calls in flight. A soft bound is
enough for back-pressure, and serialising every run call on a lock would cost more than it
saves.
"""

from __future__ import annotations

from aiohttp import web

from figranium_gateway.errors import retry_later

# How long a refused client should wait: about the time runners need to free some room.
RETRY_AFTER_SECONDS = 5


def queue_full(limit: int) -> web.Response:
    """The 429 answer to a run call refused because ``limit`` runs are unfinished."""
    return retry_later(
        "QUEUE_FULL",
        f"{limit} runs are queued or running already (RUN_QUEUE_LIMIT); try again later",
        RETRY_AFTER_SECONDS,
    )
