"""The scheduler service: exactly-once firing across replicas, punctuality, catch-up."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import psycopg
import pytest
from psycopg.rows import dict_row

from figranium_common.nats import SCHEDULES_NOTIFY_SUBJECT
from tests.integration.stack import Stack

pytestmark = pytest.mark.stack  # every test here starts services of its own

SCHEDULES = 50


def _past_slot() -> datetime:
    """A whole minute two minutes ago: a daily cron at that time next fires a day later."""
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)


def _daily_at(slot: datetime) -> str:
    # Once a day, so the only runs a test can see are the ones it brings forward.
    return f"{slot.minute} {slot.hour} * * *"


def _whole_second(after_seconds: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=after_seconds)


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def _bring_forward(stack: Stack, task_ids: list[str], due: datetime) -> None:
    """Make the tasks' schedules due at ``due`` (cron cannot say seconds, and waiting for
    the next whole minute costs a test half a minute on average), then wake the schedulers
    as the gateway does after a schedule changes."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        conn.execute("UPDATE schedules SET next_run = %s WHERE task_id = ANY(%s)", (due, task_ids))

    async def ping() -> None:
        nc = await nats.connect(stack.env["NATS_URL"])
        await nc.publish(SCHEDULES_NOTIFY_SUBJECT, b"")
        await nc.flush()
        await nc.close()

    asyncio.run(ping())


def _query(stack: Stack, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(stack.env["DATABASE_URL"], row_factory=dict_row) as conn:
        return list(conn.execute(query.encode(), params).fetchall())


def _scheduled_runs(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for row in _query(
        stack, "SELECT id, task_id, created_at FROM executions WHERE source = 'scheduler'"
    ):
        runs.setdefault(row["task_id"], []).append(row)
    return runs


def _save_task(api: httpx.Client, task_id: str) -> None:
    body = {"id": task_id, "name": task_id, "actions": [{"type": "noop"}]}
    assert api.post("/api/tasks", json=body).status_code == 200


def test_two_schedulers_fire_every_schedule_exactly_once_and_on_time(isolated: Stack) -> None:
    _, api = isolated.start_gateway()
    schedulers = [isolated.start("scheduler"), isolated.start("scheduler")]
    for scheduler in schedulers:
        scheduler.wait_for_log("scheduler.ready", timeout=60)
    slot = _past_slot()
    tomorrow = int((slot + timedelta(days=1)).timestamp() * 1000)
    task_ids = [f"many_{i:02d}_{uuid.uuid4().hex[:6]}" for i in range(SCHEDULES)]
    for task_id in task_ids:
        _save_task(api, task_id)
        answer = api.post(f"/api/schedules/{task_id}", json={"cron": _daily_at(slot)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["nextRun"] == tomorrow
    assert api.get("/api/schedules/status/all").json()["running"] is True

    due = _whole_second(after_seconds=3)
    _bring_forward(isolated, task_ids, due)
    _sleep_until(due + timedelta(seconds=4))
    runs = _scheduled_runs(isolated)
    assert sorted(runs) == sorted(task_ids)
    assert all(len(rows) == 1 for rows in runs.values()), {
        task_id: len(rows) for task_id, rows in runs.items() if len(rows) != 1
    }
    lateness = [(rows[0]["created_at"] - due).total_seconds() for rows in runs.values()]
    assert min(lateness) >= 0 and max(lateness) < 1.0, lateness
    # Both replicas took part or one took all; either way each slot was claimed once.
    fired = sum(s.log_text().count('"schedule.fired"') for s in schedulers)
    assert fired == SCHEDULES
    listed = api.get("/api/schedules").json()["schedules"]
    assert {entry["schedule"]["nextRun"] for entry in listed} == {tomorrow}


def test_stopped_scheduler_catches_up_once(isolated: Stack) -> None:
    _, api = isolated.start_gateway()
    isolated.start_runner()
    scheduler = isolated.start("scheduler")
    scheduler.wait_for_log("scheduler.ready", timeout=60)
    assert scheduler.stop() == 0
    assert api.get("/api/schedules/status/all").json()["running"] is False

    slot = _past_slot()
    _save_task(api, "catch_up")
    _save_task(api, "skip_missed")
    cron = _daily_at(slot)
    api.post("/api/schedules/catch_up", json={"cron": cron})
    api.post("/api/schedules/skip_missed", json={"cron": cron, "misfirePolicy": "skip"})
    # A slot missed while no scheduler ran: due three seconds ago, past the grace below.
    due = _whole_second(after_seconds=-3)
    _bring_forward(isolated, ["catch_up", "skip_missed"], due)
    assert _scheduled_runs(isolated) == {}

    restarted = isolated.start("scheduler", SCHEDULER_MISFIRE_GRACE_SECONDS="1")
    restarted.wait_for_log("schedule.fired", timeout=30)
    restarted.wait_for_log("schedule.skipped", timeout=10)
    time.sleep(1)
    runs = _scheduled_runs(isolated)
    assert list(runs) == ["catch_up"] and len(runs["catch_up"]) == 1
    tomorrow = int((slot + timedelta(days=1)).timestamp() * 1000)
    for task_id in ("catch_up", "skip_missed"):
        status = api.get(f"/api/schedules/{task_id}/status").json()
        assert status["schedule"]["nextRun"] == tomorrow
    assert api.get("/api/schedules/status/all").json()["running"] is True

    # The run's result is copied into the schedule, in the table and in the task.
    deadline = time.monotonic() + 60
    while True:
        schedule = api.get("/api/tasks/catch_up").json()["schedule"]
        if schedule.get("lastRunStatus") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert schedule["lastRunStatus"] == "success", schedule
    assert schedule["lastRunDurationMs"] >= 0 and schedule["lastRun"] >= due.timestamp() * 1000
    listed = {e["taskId"]: e["schedule"] for e in api.get("/api/schedules").json()["schedules"]}
    assert listed["catch_up"]["lastRunStatus"] == "success"
    assert listed["skip_missed"]["lastRun"] is None
