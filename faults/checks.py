"""The invariants after a fault, read from PostgreSQL and the webhook receiver.

- Every accepted run has exactly one execution, finished, with exactly one result event.
- No schedule fires twice: a task on ``* * * * *`` has at most one scheduled execution per
  minute (a late fire moves the next due time past now, so two in one minute can only be
  a double fire). Minutes wholly inside a window without one are counted as missed: a
  fire later than the misfire grace skips the slots it covered, by design.
- Each finished execution with a webhook reached the receiver under one delivery id;
  repeated deliveries of that id are counted, not failed (delivery is at least once).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from faults.receiver import Receiver


@dataclass
class Verdict:
    """What one check found: figures for the report and the broken invariants, if any."""

    accepted: int = 0
    finished: int = 0
    duplicates: int = 0
    scheduled: int = 0
    missed: int = 0
    problems: list[str] = field(default_factory=list)


def unfinished(database_url: str, ids: list[str]) -> int:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM unnest(%s::text[]) AS a (id)"
            " LEFT JOIN executions e ON e.id = a.id WHERE e.phase IS DISTINCT FROM 'finished'",
            (ids,),
        ).fetchone()
    return int(row[0]) if row else len(ids)


def wait_settled(database_url: str, ids: list[str], timeout: float) -> bool:
    """Until every one of ``ids`` is finished (True), or ``timeout`` (False). PostgreSQL may
    be restarting: a refused connection is waited out too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if unfinished(database_url, ids) == 0:
                return True
        except psycopg.OperationalError:
            pass
        time.sleep(0.5)
    return False


def check_runs(database_url: str, ids: list[str], verdict: Verdict) -> None:
    verdict.accepted = len(ids)
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT e.id, e.phase,"
            " (SELECT count(*) FROM execution_events r"
            "  WHERE r.execution_id = e.id AND r.type = 'result')"
            " FROM executions e WHERE e.id = ANY(%s)",
            (ids,),
        ).fetchall()
    found = {row[0]: (row[1], row[2]) for row in rows}
    verdict.finished = sum(1 for phase, _ in found.values() if phase == "finished")
    if len(set(ids)) != len(ids):
        verdict.problems.append("an execution id was answered twice")
    missing = [i for i in ids if i not in found]
    if missing:
        verdict.problems.append(f"{len(missing)} accepted runs have no execution: {missing[:3]}")
    open_ = [i for i, (phase, _) in found.items() if phase != "finished"]
    if open_:
        verdict.problems.append(f"{len(open_)} accepted runs never finished: {open_[:3]}")
    results = {i: n for i, (_, n) in found.items() if n != 1}
    if results:
        verdict.problems.append(f"runs without exactly one result event: {results}")


def check_webhooks(receiver: Receiver, ids: list[str], verdict: Verdict) -> None:
    deliveries = receiver.deliveries()
    verdict.duplicates = receiver.duplicates(set(ids))
    never = [i for i in ids if i not in deliveries]
    if never:
        verdict.problems.append(f"{len(never)} webhooks never delivered: {never[:3]}")
    several = {i: sorted(deliveries[i]) for i in ids if len(deliveries.get(i, {})) > 1}
    if several:
        verdict.problems.append(f"executions delivered under several delivery ids: {several}")


def wait_delivered(receiver: Receiver, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not set(ids) <= receiver.deliveries().keys():
        time.sleep(0.5)


def scheduled_per_minute(
    database_url: str, task_ids: list[str], start: datetime, end: datetime
) -> dict[tuple[str, datetime], int]:
    """Scheduled executions of ``task_ids`` created in [start, end), per task and minute."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT task_id, date_trunc('minute', created_at), count(*) FROM executions"
            " WHERE source = 'scheduler' AND task_id = ANY(%s)"
            " AND created_at >= %s AND created_at < %s GROUP BY 1, 2",
            (task_ids, start, end),
        ).fetchall()
    return {(row[0], row[1]): int(row[2]) for row in rows}


def check_schedules(
    database_url: str, task_ids: list[str], start: datetime, end: datetime, verdict: Verdict
) -> None:
    counts = scheduled_per_minute(database_url, task_ids, start, end)
    verdict.scheduled = sum(counts.values())
    twice = {f"{task} {minute:%H:%M}": n for (task, minute), n in counts.items() if n > 1}
    if twice:
        verdict.problems.append(f"schedules fired more than once: {twice}")
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    # A due minute counts when its fire had time to be stored before ``end``.
    while minute + timedelta(seconds=10) <= end:
        for task in task_ids:
            if (task, minute) not in counts:
                verdict.missed += 1
        minute += timedelta(minutes=1)


def utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)
