"""The shared plumbing: migrations, JetStream topology, idempotent ingestion, slots."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import nats
import psycopg
import pytest
from nats.js.api import RetentionPolicy

from figranium_common import db
from figranium_common import nats as topology
from figranium_common.models import LogEvent, RunResult, StartedEvent
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.postgres import LocalPostgres
from tests.integration.run_events import result_event
from tests.integration.stack import Stack, fetch_rows, fresh_database, wait_until
from tests.integration.test_resilience import SLOW_TASK, run_in_background

LIMITS = topology.RunConsumerLimits(ack_wait_seconds=4, max_deliver=3)


async def test_migrations_applied_once_by_concurrent_starters(postgres: LocalPostgres) -> None:
    url = fresh_database(postgres, "migrations_race")
    pools = [await db.open_pool(url, max_size=2) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(db.apply_migrations(pool) for pool in pools))
        names = [name for batch in applied for name in batch]
        assert sorted(names) == sorted(name for _, name, _ in db.migration_files())
        assert await db.apply_migrations(pools[0]) == []
        async with pools[0].connection() as conn:
            cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
            versions = [row["version"] for row in await cur.fetchall()]
            cur = await conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' ORDER BY table_name"
            )
            tables = {row["table_name"] for row in await cur.fetchall()}
    finally:
        for pool in pools:
            await pool.close()
    assert versions == [v for v, _, _ in db.migration_files()]
    assert {"tasks", "task_versions", "executions", "execution_events", "settings"} <= tables


async def test_topology_declaration_is_idempotent(nats_server: LocalNats) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await asyncio.gather(*(topology.declare_topology(js, LIMITS) for _ in range(3)))
        await topology.declare_topology(js, LIMITS)
        runs = await js.stream_info(topology.RUNS_STREAM)
        assert runs.config.retention == RetentionPolicy.WORK_QUEUE
        await js.stream_info(topology.EVENTS_STREAM)
        consumer = await js.consumer_info(topology.RUNS_STREAM, topology.RUNNERS_CONSUMER)
        assert consumer.config.max_deliver == 3
        await js.consumer_info(topology.EVENTS_STREAM, topology.INGESTER_CONSUMER)
        bucket = await topology.captures_store(js)
        await bucket.put("probe.txt", b"x")
        assert (await bucket.get("probe.txt")).data == b"x"
    finally:
        await nc.close()


def queued_executions(database_url: str, task_id: str, *execution_ids: str) -> None:
    """Executions saved as queued, as a run call leaves them, for events published by hand."""
    with psycopg.connect(database_url) as conn:
        for execution_id in execution_ids:
            conn.execute(
                "INSERT INTO executions (id, task_id, source, phase, task_snapshot)"
                " VALUES (%s, %s, 'api', 'queued', '{}'::jsonb)",
                (execution_id, task_id),
            )


def _result_payloads(database_url: str, execution_id: str) -> list[Any]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT payload FROM execution_events WHERE execution_id = %s AND type = 'result'",
            (execution_id,),
        ).fetchall()
    return [row[0] for row in rows]


async def test_redelivered_or_late_results_change_nothing(
    stack: tuple[Stack, httpx.Client], site: str, nats_server: LocalNats
) -> None:
    shared, api = stack
    api.post("/api/tasks", json={"id": "idem", "url": f"{site}/form"})
    run = api.post("/api/tasks/idem/api", json={})
    assert run.status_code == 200
    execution_id = run.json()["executionId"]
    before = api.get(f"/api/executions/{execution_id}").json()["execution"]

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        late = result_event(
            execution_id, 99, result=RunResult(outcome="error", error="late duplicate")
        )
        # Twice with the same id (JetStream drops one) and once with a fresh id.
        for msg_id in ("dup-1", "dup-1", "dup-2"):
            await js.publish(
                topology.event_subject(execution_id),
                late.model_dump_json().encode(),
                headers={"Nats-Msg-Id": msg_id},
            )
        info = await js.consumer_info(topology.EVENTS_STREAM, topology.INGESTER_CONSUMER)
        deadline = time.monotonic() + 10
        while info.num_pending or info.num_ack_pending:
            assert time.monotonic() < deadline, "ingester did not consume the events"
            await asyncio.sleep(0.2)
            info = await js.consumer_info(topology.EVENTS_STREAM, topology.INGESTER_CONSUMER)
    finally:
        await nc.close()

    after = api.get(f"/api/executions/{execution_id}").json()["execution"]
    assert after == before
    assert len(_result_payloads(shared.env["DATABASE_URL"], execution_id)) == 1


def _slow_task_on(stack: Stack, wait: float, **runner_env: str) -> httpx.Client:
    """A gateway and a runner on ``stack``, with the task "slow" saved to wait ``wait`` s."""
    _, client = stack.start_gateway()
    stack.start_runner(**runner_env)
    client.post("/api/tasks", json={**SLOW_TASK, "actions": [{"type": "wait", "value": wait}]})
    return client


@pytest.mark.stack
def test_long_run_keeps_its_message_with_heartbeats(isolated: Stack) -> None:
    isolated.env["RUN_ACK_WAIT_SECONDS"] = "2"
    client = _slow_task_on(isolated, 7)
    response = client.post("/api/tasks/slow/api", json={})
    assert response.status_code == 200, response.text
    detail = client.get(f"/api/executions/{response.json()['executionId']}").json()["execution"]
    assert detail["attempts"] == 1  # never redelivered although the run outlived the ack wait


@pytest.mark.stack
def test_runner_takes_no_more_runs_than_it_has_slots(isolated: Stack) -> None:
    client = _slow_task_on(isolated, 2, RUNNER_CONCURRENCY="1")
    calls = [run_in_background(client, "slow") for _ in range(2)]
    for thread, _ in calls:
        thread.join(60)
    assert all(answer["status"] == 200 for _, answer in calls)
    executions = client.get("/api/executions").json()["executions"]
    assert len(executions) == 2
    first, second = sorted(executions, key=lambda e: e["startedAt"])
    assert second["startedAt"] >= first["finishedAt"]


@pytest.mark.stack
def test_runner_runs_two_at_once_with_two_slots(isolated: Stack) -> None:
    client = _slow_task_on(isolated, 5, RUNNER_CONCURRENCY="2")
    calls = [run_in_background(client, "slow") for _ in range(2)]
    wait_until(
        lambda: (
            sum(e["phase"] == "running" for e in client.get("/api/executions").json()["executions"])
            == 2
        ),
        30,
        "both runs to be running at once",
    )
    for thread, _ in calls:
        thread.join(60)


async def test_a_burst_of_events_is_stored_once_in_order_and_bad_ones_are_dropped(
    stack: tuple[Stack, httpx.Client], nats_server: LocalNats
) -> None:
    shared, api = stack
    database_url = shared.env["DATABASE_URL"]
    execution_id = f"exec_burst_{time.monotonic_ns()}"
    queued_executions(database_url, "burst", execution_id)
    lines = [f"line {i}" for i in range(1, 31)]
    events: list[str | bytes] = [
        StartedEvent(execution_id=execution_id, attempt=1, seq=0, runner_id="r").model_dump_json()
    ]
    # Lines 1-10 one per event, as earlier runners send them; 11-20 in one event; 21-30
    # said last, riding in the result.
    events += [
        json.dumps(
            {
                "type": "log",
                "execution_id": execution_id,
                "attempt": 1,
                "seq": i,
                "line": lines[i - 1],
            }
        )
        for i in range(1, 11)
    ]
    events += [
        LogEvent(
            execution_id=execution_id, attempt=1, seq=i, lines=lines[i - 1 : i + 9]
        ).model_dump_json()
        for i in (11,)
    ]
    # Redelivered lines (same keys, other message ids) and a message that is no event.
    events.insert(8, events[5])
    events.append(events[-1])
    events.insert(12, b'{"type": "log", "execution_id": 7}')
    events.append(
        result_event(
            execution_id, len(lines) + 1, duration_ms=5, lines=lines[20:]
        ).model_dump_json()
    )
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        # Published at once, so the ingester gets them in batches of several.
        await asyncio.gather(
            *(
                js.publish(
                    topology.event_subject(execution_id),
                    data if isinstance(data, bytes) else data.encode(),
                    headers={"Nats-Msg-Id": f"burst-{execution_id}-{n}"},
                )
                for n, data in enumerate(events)
            )
        )
        deadline = time.monotonic() + 20
        while True:
            info = await js.consumer_info(topology.EVENTS_STREAM, topology.INGESTER_CONSUMER)
            if not info.num_pending and not info.num_ack_pending:
                break
            assert time.monotonic() < deadline, "ingester did not consume the burst"
            await asyncio.sleep(0.2)
    finally:
        await nc.close()

    execution = api.get(f"/api/executions/{execution_id}").json()["execution"]
    assert execution["phase"] == "finished" and execution["outcome"] == "success"
    assert execution["logs"] == lines
    with psycopg.connect(database_url) as conn:
        changes = conn.execute(
            "SELECT payload->>'line' FROM execution_changes"
            " WHERE execution_id = %s AND kind = 'log' ORDER BY id",
            (execution_id,),
        ).fetchall()
        finished_after = conn.execute(
            "SELECT count(*) FROM execution_changes WHERE execution_id = %s AND kind = 'log'"
            " AND id > (SELECT id FROM execution_changes"
            "  WHERE execution_id = %s AND kind = 'finished')",
            (execution_id, execution_id),
        ).fetchone()
        stored_result = conn.execute(
            "SELECT payload FROM execution_events WHERE execution_id = %s AND type = 'result'",
            (execution_id,),
        ).fetchone()
    assert [row[0] for row in changes] == lines
    assert finished_after == (0,)  # every line is logged before the run is finished
    assert stored_result is not None and "lines" not in stored_result[0]


async def test_pool_checks_only_connections_idle_a_while(
    postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection taken again at once is not checked; one idle past the window is, and a
    broken one is then replaced instead of being handed out."""
    checks: list[int] = []
    real_check = db.AsyncConnectionPool.check_connection

    async def counting_check(conn: db.Connection) -> None:
        checks.append(conn.info.backend_pid)
        await real_check(conn)

    monkeypatch.setattr(db.AsyncConnectionPool, "check_connection", staticmethod(counting_check))
    monkeypatch.setattr(db, "CHECK_AFTER_IDLE_SECONDS", 0.5)
    pool = await db.open_pool(fresh_database(postgres, "idle_check"), min_size=1, max_size=1)
    try:
        async with pool.connection() as conn:
            first = conn.info.backend_pid
        checks.clear()
        for _ in range(5):
            async with pool.connection() as conn:
                assert conn.info.backend_pid == first
        assert checks == []  # back in the pool a moment ago: no round trip for a check
        await asyncio.sleep(0.6)
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        assert checks == [first]
        # The server drops the connection while it is idle in the pool.
        async with await psycopg.AsyncConnection.connect(postgres.url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        await asyncio.sleep(0.6)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT 1 AS one")
            assert (await cur.fetchone()) == {"one": 1}
            assert conn.info.backend_pid != first
    finally:
        await pool.close()


async def test_a_result_that_overtakes_the_lines_before_it_waits_for_them(
    stack: tuple[Stack, httpx.Client], nats_server: LocalNats
) -> None:
    """With several replicas the event just ahead of a result may be with another one: the
    result waits once for it, so the change feed logs the lines before ``finished``; a line
    that never comes does not hold the result back for good."""
    shared, _ = stack
    database_url = shared.env["DATABASE_URL"]
    overtaken, lost = (f"exec_overtake_{n}_{time.monotonic_ns()}" for n in (1, 2))
    queued_executions(database_url, "overtake", overtaken, lost)

    def result(execution_id: str) -> bytes:
        return (
            result_event(execution_id, 3, duration_ms=5, lines=["last"]).model_dump_json().encode()
        )

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for execution_id in (overtaken, lost):
            subject = topology.event_subject(execution_id)
            started = StartedEvent(execution_id=execution_id, attempt=1, seq=0, runner_id="r")
            await js.publish(subject, started.model_dump_json().encode())
            await js.publish(subject, result(execution_id))
        await asyncio.sleep(0.05)
        line = LogEvent(execution_id=overtaken, attempt=1, seq=1, lines=["first"])
        await js.publish(topology.event_subject(overtaken), line.model_dump_json().encode())

    finally:
        await nc.close()

    def kinds(execution_id: str) -> list[tuple[str, str | None]]:
        rows = fetch_rows(
            database_url,
            "SELECT kind, payload->>'line' FROM execution_changes"
            " WHERE execution_id = %s AND kind IN ('log', 'finished') ORDER BY id",
            (execution_id,),
        )
        return [(row[0], row[1]) for row in rows]

    wait_until(
        lambda: len(kinds(overtaken)) == 3 and len(kinds(lost)) == 2, 10, "both results stored"
    )
    assert kinds(overtaken) == [("log", "first"), ("log", "last"), ("finished", None)]
    assert kinds(lost) == [("log", "last"), ("finished", None)]


async def test_a_start_is_stored_with_its_lines_or_from_the_result_it_rides_in(
    stack: tuple[Stack, httpx.Client], nats_server: LocalNats
) -> None:
    """A run announces its start with its first lines, or, ending sooner, in its result:
    either way the execution, its event history and the change feed read as if each had
    been an event of its own."""
    shared, api = stack
    database_url = shared.env["DATABASE_URL"]
    announced, riding = (f"exec_start_{n}_{time.monotonic_ns()}" for n in (1, 2))
    queued_executions(database_url, "starts", announced, riding)
    began = 1_700_000_000_000
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        first = StartedEvent(
            execution_id=announced, attempt=1, seq=0, at=began, runner_id="r1", lines=["a", "b"]
        )
        await js.publish(topology.event_subject(announced), first.model_dump_json().encode())
        wait_until(
            lambda: (
                api.get(f"/api/executions/{announced}").json()["execution"]["phase"] == "running"
            ),
            10,
            "the announced start stored",
        )
        for execution_id, seq, lines, start in (
            (announced, 4, ["c"], None),
            (
                riding,
                3,
                ["x", "y"],
                StartedEvent(execution_id=riding, attempt=1, seq=0, at=began, runner_id="r2"),
            ),
        ):
            result = result_event(
                execution_id, seq, at=began + 500, duration_ms=500, lines=lines, started=start
            )
            await js.publish(
                topology.event_subject(execution_id), result.model_dump_json().encode()
            )
    finally:
        await nc.close()

    def history(execution_id: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        with psycopg.connect(database_url) as conn:
            events = conn.execute(
                "SELECT seq, type, payload->>'line', payload->>'runner_id',"
                " payload ? 'lines', payload ? 'started'"
                " FROM execution_events WHERE execution_id = %s ORDER BY seq",
                (execution_id,),
            ).fetchall()
            feed = conn.execute(
                "SELECT kind, payload->>'line' FROM execution_changes"
                " WHERE execution_id = %s AND kind <> 'queued' ORDER BY id",
                (execution_id,),
            ).fetchall()
        return [tuple(row) for row in events], [tuple(row) for row in feed]

    wait_until(
        lambda: all(
            api.get(f"/api/executions/{e}").json()["execution"]["phase"] == "finished"
            for e in (announced, riding)
        ),
        10,
        "both results stored",
    )
    events, feed = history(announced)
    assert events == [
        (0, "started", None, "r1", False, False),
        (1, "log", "a", None, False, False),
        (2, "log", "b", None, False, False),
        (3, "log", "c", None, False, False),
        (4, "result", None, None, False, False),
    ]
    assert feed == [("started", None), ("log", "a"), ("log", "b"), ("log", "c"), ("finished", None)]
    events, feed = history(riding)
    assert events == [
        (0, "started", None, "r2", False, False),
        (1, "log", "x", None, False, False),
        (2, "log", "y", None, False, False),
        (3, "result", None, None, False, False),
    ]
    assert feed == [("started", None), ("log", "x"), ("log", "y"), ("finished", None)]
    execution = api.get(f"/api/executions/{riding}").json()["execution"]
    assert (execution["startedAt"], execution["finishedAt"]) == (began, began + 500)
