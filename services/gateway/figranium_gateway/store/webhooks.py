"""SQL for the webhook delivery queue: ``webhook_deliveries`` (one job per execution that
asked for a webhook) and ``webhook_attempts`` (one row per send)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from figranium_common.db import Connection, Pool
from figranium_common.jsontypes import JsonObject
from figranium_common.models import epoch_ms
from figranium_gateway.store.results import WHOLE_RESULT

_CLAIM = (
    "UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => %s)"
    " FROM (SELECT id FROM webhook_deliveries"
    "       WHERE state = 'pending' AND next_attempt_at <= now()"
    "       ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) due"
    " WHERE d.id = due.id"
    " RETURNING d.id, d.execution_id, d.url, d.payload, d.attempts"
)

_RECORD = (
    "UPDATE webhook_deliveries SET attempts = %(number)s, state = %(state)s,"
    " last_status = %(status)s, last_error = %(error)s,"
    " next_attempt_at = CASE WHEN %(state)s = 'pending'"
    "   THEN now() + make_interval(secs => %(delay)s) ELSE next_attempt_at END,"
    " delivered_at = CASE WHEN %(state)s = 'delivered' THEN now() END"
    " WHERE id = %(id)s AND state = 'pending' AND attempts = %(claimed)s"
)

_ATTEMPT = (
    "INSERT INTO webhook_attempts (delivery_id, attempt, status, error, duration_ms)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)

# A clean stop hands back what it claimed and never sent, for another replica to take now.
_RELEASE = (
    "UPDATE webhook_deliveries SET next_attempt_at = now()"
    " WHERE id = %s AND state = 'pending' AND attempts = %s"
)


def new_delivery_id() -> str:
    return f"whd_{secrets.token_hex(12)}"


async def queue_delivery(conn: Connection, execution_id: str) -> None:
    """Queue the finished execution's webhook, if it asked for one.

    With the result, in its transaction: a stored result always has its delivery job, and
    the unique execution_id keeps a later or redelivered result from queuing a second.
    The payload is read from the row as stored, so it says what GET /api/executions says.
    """
    await conn.execute(
        "INSERT INTO webhook_deliveries (id, execution_id, url, payload)"
        " SELECT %s, id, webhook_url, jsonb_build_object("
        "'executionId', id, 'taskId', task_id, 'status', outcome, 'outcome', outcome,"
        " 'httpStatus', status,"
        f" 'durationMs', duration_ms, 'result', {WHOLE_RESULT})"
        " FROM executions"
        " WHERE id = %s AND phase = 'finished' AND webhook_url IS NOT NULL"
        " ON CONFLICT (execution_id) DO NOTHING",
        (new_delivery_id(), execution_id),
    )


async def delivery_state(conn: Connection, execution_id: str) -> JsonObject:
    """The delivery of an execution that asked for a webhook, as ``GET /api/executions/:id``
    shows it; before the run finishes there is no job yet: pending, no time."""
    cur = await conn.execute(
        "SELECT state, attempts, next_attempt_at, last_status, last_error, delivered_at"
        " FROM webhook_deliveries WHERE execution_id = %s",
        (execution_id,),
    )
    row = await cur.fetchone() or {}
    state = row.get("state") or "pending"
    return {
        "state": state,
        "attempts": row.get("attempts") or 0,
        "lastStatus": row.get("last_status"),
        "lastError": row.get("last_error"),
        "deliveredAt": epoch_ms(row.get("delivered_at")),
        "nextAttemptAt": epoch_ms(row.get("next_attempt_at")) if state == "pending" else None,
    }


@dataclass(frozen=True)
class Due:
    """A delivery claimed for sending."""

    id: str
    execution_id: str
    url: str
    payload: JsonObject
    attempts: int  # before this one


async def claim(conn: Connection, lease_seconds: float, limit: int) -> list[Due]:
    """Claim up to ``limit`` due deliveries for ``lease_seconds``: committed before anything
    is sent, so no other replica sends them meanwhile, and one that dies mid-send leaves
    them to the others once the lease ends."""
    cur = await conn.execute(_CLAIM, (lease_seconds, limit))
    return [
        Due(r["id"], r["execution_id"], r["url"], r["payload"], r["attempts"])
        for r in await cur.fetchall()
    ]


@dataclass(frozen=True)
class Sent:
    """One send of a delivery and what follows from it."""

    number: int  # the attempt's number, from 1
    status: int | None
    error: str | None
    state: str  # the delivery's state after it
    delay: float  # seconds until the next attempt, while pending
    duration_ms: int


async def record_attempt(pool: Pool, due: Due, sent: Sent) -> bool:
    """Record a send, unless the delivery moved on since the claim (recorded meanwhile by a
    replica that took it over after the lease): then False."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            _RECORD,
            {
                "id": due.id,
                "claimed": due.attempts,
                "number": sent.number,
                "state": sent.state,
                "status": sent.status,
                "error": sent.error,
                "delay": sent.delay,
            },
        )
        if cur.rowcount != 1:
            return False
        await conn.execute(
            _ATTEMPT, (due.id, sent.number, sent.status, sent.error, sent.duration_ms)
        )
        return True


async def release(pool: Pool, claimed: dict[str, int]) -> None:
    """Hand back claimed deliveries (id → attempts when claimed) that were never sent."""
    async with pool.connection() as conn:
        for delivery_id, attempts in claimed.items():
            await conn.execute(_RELEASE, (delivery_id, attempts))
