"""The ingester storing a result after the event before it, against real NATS and
PostgreSQL: no lookup when this replica stored that event, a lookup when another may have,
and a short wait when nobody has yet."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from figranium_common import db
from figranium_common.models import LogEvent, ResultEvent, RunResult, StartedEvent
from figranium_common.secretbox import SecretBox
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from figranium_gateway import ingest, store

BEGAN = 1_700_000_000_000
SUBJECT = "test.events"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNats]:
    with LocalNats(tmp_path_factory.mktemp("ingest") / "nats", free_port()) as started:
        yield started


@pytest.fixture
async def nc(server: LocalNats) -> AsyncIterator[NATS]:
    client = await nats.connect(server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def pool(postgres: LocalPostgres) -> AsyncIterator[db.Pool]:
    opened = await db.open_pool(postgres.url, max_size=2)
    try:
        await db.apply_migrations(opened)
        yield opened
    finally:
        await opened.close()


class Events:
    """Events published to a stream of the test's own, pulled back as JetStream messages."""

    def __init__(self, nc: NATS, name: str) -> None:
        self._js = nc.jetstream()
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


async def _queued(pool: db.Pool, execution_id: str) -> None:
    async with pool.connection() as conn:
        assert await store.create_execution(
            conn,
            execution_id=execution_id,
            task={"id": "t", "name": "t"},
            variables={},
            source="api",
            method="POST",
            path="/api/tasks/t/api",
        )


def _started(execution_id: str, *lines: str) -> StartedEvent:
    return StartedEvent(
        execution_id=execution_id, attempt=1, seq=0, at=BEGAN, runner_id="r", lines=list(lines)
    )


def _result(execution_id: str, seq: int) -> ResultEvent:
    return ResultEvent(
        execution_id=execution_id,
        attempt=1,
        seq=seq,
        at=BEGAN + 1000,
        result=RunResult(outcome="success"),
        duration_ms=1000,
        lines=["last line"],
    )


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
    real = store.has_event

    async def counted(pool: db.Pool, execution_id: str, attempt: int, seq: int) -> bool:
        made.append((execution_id, seq))
        return await real(pool, execution_id, attempt, seq)

    monkeypatch.setattr(store, "has_event", counted)
    return made


def _ingester(pool: db.Pool, nc: NATS) -> ingest.EventIngester:
    return ingest.EventIngester(pool, nc, SecretBox(secrets.token_bytes(32)))


async def test_a_result_after_an_event_stored_here_is_stored_without_a_lookup(
    pool: db.Pool, nc: NATS, lookups: list[tuple[str, int]]
) -> None:
    events = Events(nc, "HERE")
    await events.open()
    await _queued(pool, "exec_here")
    ingester = _ingester(pool, nc)
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
    pool: db.Pool, nc: NATS, lookups: list[tuple[str, int]]
) -> None:
    events = Events(nc, "ELSEWHERE")
    await events.open()
    await _queued(pool, "exec_elsewhere")
    await store.record_started(pool, _started("exec_elsewhere", "one"))  # another replica
    await events.send(_result("exec_elsewhere", 3))
    await _ingester(pool, nc).apply(await events.pull(1))
    assert lookups == [("exec_elsewhere", 1)]
    assert await _phase(pool, "exec_elsewhere") == "finished"


async def test_a_result_ahead_of_its_event_waits_for_it_once(
    pool: db.Pool, nc: NATS, lookups: list[tuple[str, int]]
) -> None:
    events = Events(nc, "AHEAD")
    await events.open()
    await _queued(pool, "exec_ahead")
    ingester = _ingester(pool, nc)
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
