"""Storing run events, new and redelivered, against a real PostgreSQL (and, for the
ingester, a real NATS): each event and each change is stored once, whether its transaction
went through at once or step by step."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import Any

import psycopg
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from figranium_common import changelog, db, queue
from figranium_common.models import LogEvent, LogLine, ResultEvent, RunResult, StartedEvent
from figranium_common.secretbox import SecretBox
from figranium_gateway import changes, ingest
from figranium_gateway.store import events as event_store
from figranium_gateway.store import executions, recording
from tests.integration.run_events import result_event

BEGAN = 1_700_000_000_000


async def _queued(pool: db.Pool, execution_id: str, queue_limit: int = 0) -> bool:
    async with pool.connection() as conn:
        new = queue.NewExecution(
            execution_id, {"id": "t", "name": "t"}, "api", method="POST", path="/api/tasks/t/api"
        )
        return await executions.create_execution(conn, new, queue_limit=queue_limit)


def _lines(execution_id: str, first: int, *lines: str) -> list[LogLine]:
    return LogEvent(
        execution_id=execution_id, attempt=1, seq=first, at=BEGAN, lines=list(lines)
    ).each()


async def _changes_of(pool: db.Pool, execution_id: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, kind, payload FROM execution_changes WHERE execution_id = %s ORDER BY id",
            (execution_id,),
        )
        return list(await cur.fetchall())


async def _history(pool: db.Pool, execution_id: str) -> tuple[list[Any], list[Any]]:
    async with pool.connection() as conn:
        events = await conn.execute(
            "SELECT seq, type FROM execution_events WHERE execution_id = %s ORDER BY seq",
            (execution_id,),
        )
        stored = [(r["seq"], r["type"]) for r in await events.fetchall()]
    feed = [
        (c["kind"], c["payload"].get("line"), c["payload"].get("phase"))
        for c in await _changes_of(pool, execution_id)
    ]
    return stored, feed


async def test_a_taken_id_is_refused_and_logs_nothing(pool: db.Pool) -> None:
    assert await _queued(pool, "exec_taken")
    assert not await _queued(pool, "exec_taken")
    _, feed = await _history(pool, "exec_taken")
    assert feed == [("queued", None, "queued")]


async def test_redelivered_starts_lines_and_results_are_stored_and_logged_once(
    pool: db.Pool,
) -> None:
    execution_id = "exec_redelivered"
    assert await _queued(pool, execution_id)
    start = StartedEvent(
        execution_id=execution_id, attempt=1, seq=0, at=BEGAN, runner_id="r1", lines=["a", "b"]
    )
    assert await recording.record_started(pool, start)
    assert not await recording.record_started(pool, start)  # redelivered
    assert await recording.record_logs(pool, _lines(execution_id, 3, "c")) == 1
    assert await recording.record_logs(pool, _lines(execution_id, 3, "c")) == 0
    # One line stored before, one new: only the new one is stored and logged.
    assert await recording.record_logs(pool, _lines(execution_id, 3, "c", "d")) == 1

    def finish(seq: int, lines: list[str]) -> Any:
        result = result_event(
            execution_id,
            seq,
            at=BEGAN + 500,
            result=RunResult(outcome="success", data=[1, 2]),
            duration_ms=500,
            lines=lines,
            started=start,  # a start that rides in the result, stored already
        )
        return recording.record_result(pool, result, {"type": "result"})

    recorded = await finish(6, ["e"])
    assert recorded is not None and recorded.outcome is not None
    assert recorded.outcome["phase"] == "finished"
    assert recorded.outcome["status"] == 200
    assert recorded.outcome["result"]["data"] == [1, 2]
    assert "source" not in recorded.outcome
    assert await finish(6, ["e"]) is None  # the same result again
    assert await finish(7, []) is None  # a second result

    events, feed = await _history(pool, execution_id)
    assert events == [
        (0, "started"),
        (1, "log"),
        (2, "log"),
        (3, "log"),
        (4, "log"),
        (5, "log"),
        (6, "result"),
    ]
    assert feed == [
        ("queued", None, "queued"),
        ("started", None, "running"),
        ("log", "a", "running"),
        ("log", "b", "running"),
        ("log", "c", "running"),
        ("log", "d", "running"),
        ("log", "e", "running"),
        ("finished", None, "finished"),
    ]


async def test_a_result_for_a_deleted_execution_stores_nothing(pool: db.Pool) -> None:
    result = result_event("exec_gone", 3, at=BEGAN, lines=["x", "y"])
    recorded = await recording.record_result(pool, result, {"type": "result"})
    assert recorded is None
    events, feed = await _history(pool, "exec_gone")
    assert events == [] and feed == []


async def _drawn_while_locked(pool: db.Pool, holder: str, write: Awaitable[Any]) -> int:
    """Hold the change-log lock (a change of ``holder``) while ``write`` runs, check that it
    waits, draw a change id meanwhile and return it once ``write`` has committed."""
    async with pool.connection() as first:
        await first.execute("BEGIN")
        await changes.record_change(first, holder, "log", {"line": "first"})
        waiting = asyncio.ensure_future(write)
        await asyncio.sleep(0.5)
        assert not waiting.done(), "the writer waits for the first one's commit"
        async with await psycopg.AsyncConnection.connect(pool.conninfo, autocommit=True) as other:
            cur = await other.execute("SELECT nextval('execution_changes_id_seq')")
            drawn_meanwhile = int((await cur.fetchone())[0])
        await first.execute("COMMIT")
        await asyncio.wait_for(waiting, 10)
    return drawn_meanwhile


async def test_a_change_draws_its_id_only_once_it_holds_the_lock(pool: db.Pool) -> None:
    # Were the id drawn before the wait for the lock, a writer waiting behind another
    # would commit an id smaller than ones drawn meanwhile by others: a reader that had
    # gone past those would never see it.
    assert await _queued(pool, "exec_lock_order")

    async def write_second() -> None:
        async with pool.connection() as second, second.transaction():
            await changes.record_change(second, "exec_lock_order", "log", {"line": "second"})

    drawn_meanwhile = await _drawn_while_locked(pool, "exec_lock_order", write_second())
    second = [
        c
        for c in await _changes_of(pool, "exec_lock_order")
        if c["payload"].get("line") == "second"
    ]
    assert len(second) == 1 and second[0]["id"] > drawn_meanwhile


async def test_a_queued_execution_draws_its_change_id_only_once_it_holds_the_lock(
    pool: db.Pool,
) -> None:
    # The run call inserts the execution and its change in one statement: the change's
    # id must still come after the lock, as a separate record_change's does.
    assert await _queued(pool, "exec_lock_holder")
    drawn_meanwhile = await _drawn_while_locked(
        pool, "exec_lock_holder", _queued(pool, "exec_queued_behind")
    )
    rows = await _changes_of(pool, "exec_queued_behind")
    assert [(row["kind"], row["payload"]) for row in rows] == [
        ("queued", {"executionId": "exec_queued_behind", "taskId": "t", "phase": "queued"})
    ]
    assert rows[0]["id"] > drawn_meanwhile


async def test_the_queue_limit_refuses_new_executions_not_taken_ids(pool: db.Pool) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM executions WHERE phase <> 'finished'")
        row = await cur.fetchone()
        assert row is not None
        unfinished = int(row["n"])
    limit = unfinished + 2
    assert await _queued(pool, "exec_limit_1", limit)
    assert await _queued(pool, "exec_limit_2", limit)
    with pytest.raises(executions.QueueFull):
        await _queued(pool, "exec_limit_3", limit)
    assert not await _queued(pool, "exec_limit_1", limit)  # a taken id is told as such
    assert await _queued(pool, "exec_limit_3")  # no limit
    _, feed = await _history(pool, "exec_limit_3")
    assert feed == [("queued", None, "queued")]  # the refused attempt logged nothing


# --- the ingester: a result after the event before it, through real NATS ----------------
# No lookup when this replica stored that event, a lookup when another may have, and a
# short wait when nobody has yet.


class Events:
    """Events published to a stream of the test's own, pulled back as JetStream messages."""

    def __init__(self, nats_client: NATS, name: str) -> None:
        self._js = nats_client.jetstream()
        self._name = name
        self._sub: Any = None

    async def open(self) -> None:
        await self._js.add_stream(StreamConfig(name=self._name, subjects=[f"{self._name}.>"]))
        self._sub = await self._js.pull_subscribe(f"{self._name}.>", durable="ingester")

    async def send(self, *events: StartedEvent | LogEvent | ResultEvent) -> None:
        for event in events:
            await self._js.publish(f"{self._name}.e", event.model_dump_json().encode())

    async def pull(self, n: int, timeout: float = 5) -> list[Msg]:
        return list(await self._sub.fetch(n, timeout=timeout))


def _started(execution_id: str, *lines: str) -> StartedEvent:
    return StartedEvent(
        execution_id=execution_id, attempt=1, seq=0, at=BEGAN, runner_id="r", lines=list(lines)
    )


def _result(execution_id: str, seq: int) -> ResultEvent:
    return result_event(execution_id, seq, at=BEGAN + 1000, duration_ms=1000, lines=["last line"])


async def _phase(pool: db.Pool, execution_id: str) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT phase FROM executions WHERE id = %s", (execution_id,))
        row = await cur.fetchone()
        assert row is not None
        return str(row["phase"])


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The ``has_event`` lookups the ingester makes, still made."""
    made: list[tuple[str, int]] = []
    real = event_store.has_event

    async def counted(pool: db.Pool, execution_id: str, attempt: int, seq: int) -> bool:
        made.append((execution_id, seq))
        return await real(pool, execution_id, attempt, seq)

    monkeypatch.setattr(event_store, "has_event", counted)
    return made


async def _ingesting(
    pool: db.Pool, nats_client: NATS, stream: str, execution_id: str
) -> tuple[Events, ingest.EventIngester]:
    """A queued execution, a stream of the test's own and an ingester for what it pulls."""
    events = Events(nats_client, stream)
    await events.open()
    assert await _queued(pool, execution_id)
    return events, ingest.EventIngester(pool, nats_client, SecretBox(secrets.token_bytes(32)))


async def test_a_result_after_an_event_stored_here_is_stored_without_a_lookup(
    pool: db.Pool, nats_client: NATS, lookups: list[tuple[str, int]]
) -> None:
    events, ingester = await _ingesting(pool, nats_client, "HERE", "exec_here")
    # started (seq 0) with lines 1-2, a log event with 3-4, then the result (5, line 5 ahead).
    await events.send(_started("exec_here", "one", "two"))
    await ingester.apply(await events.pull(1))
    await events.send(
        LogEvent(execution_id="exec_here", attempt=1, seq=3, at=BEGAN, lines=["3", "4"])
    )
    await ingester.apply(await events.pull(1))
    await events.send(_result("exec_here", 6))
    await ingester.apply(await events.pull(1))
    assert await _phase(pool, "exec_here") == "finished"
    assert lookups == []


async def test_a_result_after_an_event_stored_elsewhere_is_looked_up_then_stored(
    pool: db.Pool, nats_client: NATS, lookups: list[tuple[str, int]]
) -> None:
    events, ingester = await _ingesting(pool, nats_client, "ELSEWHERE", "exec_elsewhere")
    await recording.record_started(pool, _started("exec_elsewhere", "one"))  # another replica
    await events.send(_result("exec_elsewhere", 3))
    await ingester.apply(await events.pull(1))
    assert lookups == [("exec_elsewhere", 1)]
    assert await _phase(pool, "exec_elsewhere") == "finished"


async def test_a_result_ahead_of_its_event_waits_for_it_once(
    pool: db.Pool, nats_client: NATS, lookups: list[tuple[str, int]]
) -> None:
    events, ingester = await _ingesting(pool, nats_client, "AHEAD", "exec_ahead")
    await events.send(_result("exec_ahead", 3))
    await ingester.apply(await events.pull(1))
    assert lookups == [("exec_ahead", 1)]
    assert await _phase(pool, "exec_ahead") == "queued"  # handed back for a moment
    await events.send(_started("exec_ahead", "one"))
    # The started event, and the result again once RESULT_WAIT_SECONDS have passed.
    pulled: list[Msg] = []
    while len(pulled) < 2:
        pulled += await events.pull(2 - len(pulled), timeout=ingest.RESULT_WAIT_SECONDS + 5)
    assert sorted(m.metadata.num_delivered for m in pulled) == [1, 2]
    await ingester.apply(pulled)
    assert await _phase(pool, "exec_ahead") == "finished"
    assert lookups == [("exec_ahead", 1)]  # a redelivered result is stored as it is


# --- plans: an event looks its execution up by index, however the table is sized --------


def _generic(sql: str) -> str:
    """``sql`` with psycopg's ``%s`` as ``$1``, ``$2``...: what EXPLAIN (GENERIC_PLAN) takes."""
    parts = sql.split("%s")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


@pytest.mark.parametrize(
    "statement", [changelog.RECORD_EACH, event_store.INSERT_LINES], ids=["change_log", "log_lines"]
)
async def test_events_look_executions_up_by_index_not_by_scanning_them(
    pool: db.Pool, statement: str
) -> None:
    # A set-returning function is planned as 100 rows: joined to the executions by id
    # alone, a generic plan scanned the whole table at a few thousand rows.
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO executions (id, task_id, phase, source, mode, task_snapshot, variables)"
            " SELECT 'exec_plan_' || g, 't', 'finished', 'api', 'agent', '{}', '{}'"
            " FROM generate_series(1, 5000) g ON CONFLICT DO NOTHING"
        )
        await conn.execute("ANALYZE executions")
        cur = await conn.execute(f"EXPLAIN (GENERIC_PLAN) {_generic(statement)}")
        plan = "\n".join(row["QUERY PLAN"] for row in await cur.fetchall())
    assert "executions_pkey" in plan, plan
    assert "Seq Scan on executions" not in plan, plan
