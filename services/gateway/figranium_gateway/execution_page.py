"""A page of the executions listing as the store is asked for it (parsed from the
request by ``execution_query``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last row's creation time and id."""

    created_at: datetime
    id: str


@dataclass(frozen=True)
class ExecutionQuery:
    """A listing request: every filter is optional; ``created_to`` is exclusive."""

    limit: int = DEFAULT_LIMIT
    status: str | None = None
    task_id: str | None = None
    outcome: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    after: Position | None = None
