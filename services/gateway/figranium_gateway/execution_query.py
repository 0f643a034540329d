"""What ``GET /api/executions`` is asked: its filters, page size and keyset cursor.

The listing is newest first with ties broken by id, so a page ends at a ``(created_at,
id)`` position and the next one starts strictly after it. The cursor carries that
position, opaque to clients: base64url of the creation time in epoch microseconds (the
database's precision, so no row is skipped or repeated) and the id. New executions sort
before every cursor, so they never shift the pages after it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import get_args

from figranium_common.models import Outcome
from figranium_gateway.errors import ApiError
from figranium_gateway.execution_page import DEFAULT_LIMIT, ExecutionQuery, Position

MAX_LIMIT = 1000
OUTCOMES: tuple[str, ...] = get_args(Outcome)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_EPOCH_MS = re.compile(r"-?\d{1,15}")
_MAX_CURSOR_CHARS = 1024
_CURSOR = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def encode_cursor(position: Position) -> str:
    micros = (position.created_at - _EPOCH) // _MICROSECOND
    raw = f"{micros}:{position.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position ``cursor`` names; 400 ``INVALID_CURSOR`` for anything not made by
    :func:`encode_cursor`."""
    invalid = ApiError(400, "INVALID_CURSOR", "cursor is not one this listing answered")
    if len(cursor) > _MAX_CURSOR_CHARS or not _CURSOR.fullmatch(cursor):
        raise invalid
    unpadded = cursor.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4)).decode()
        micros, execution_id = raw.split(":", 1)
        if not execution_id or not re.fullmatch(r"-?\d+", micros):
            raise invalid
        return Position(_EPOCH + int(micros) * _MICROSECOND, execution_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise invalid from None


def parse_time(name: str, raw: str) -> datetime:
    """``from``/``to``: epoch milliseconds or ISO 8601 (UTC unless it names a zone)."""
    try:
        if _EPOCH_MS.fullmatch(raw):
            return _EPOCH + timedelta(milliseconds=int(raw))
        parsed = datetime.fromisoformat(raw)
    except (ValueError, OverflowError):
        raise ApiError(
            400, "INVALID_FILTER", f"{name} must be epoch milliseconds or ISO 8601, not {raw!r}"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "INVALID_QUERY", f"limit must be a whole number, not {raw!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, "INVALID_QUERY", f"limit must be between 1 and {MAX_LIMIT}")
    return value


def _outcome(raw: str | None) -> str | None:
    if raw and raw not in OUTCOMES:
        raise ApiError(
            400, "INVALID_FILTER", f"outcome must be one of {', '.join(OUTCOMES)}, not {raw!r}"
        )
    return raw or None


def parse_query(query: Mapping[str, str]) -> ExecutionQuery:
    """The listing request in ``query``; empty values count as absent."""
    created_from = parse_time("from", query["from"]) if query.get("from") else None
    created_to = parse_time("to", query["to"]) if query.get("to") else None
    if created_from and created_to and created_from > created_to:
        raise ApiError(400, "INVALID_FILTER", "from must not be after to")
    cursor = query.get("cursor")
    return ExecutionQuery(
        limit=_limit(query.get("limit")),
        status=query.get("status") or None,
        task_id=query.get("taskId") or None,
        outcome=_outcome(query.get("outcome")),
        created_from=created_from,
        created_to=created_to,
        after=decode_cursor(cursor) if cursor is not None else None,
    )
