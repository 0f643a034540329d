"""The scheduler service: exactly-once firing across replicas, punctuality, catch-up."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration.stack import Stack

pytestmark = pytest.mark.stack  # every test here starts services of its own

SCHEDULES = 50


def _next_minute(min_lead_seconds: float = 5.0) -> datetime:
    """The next whole minute at least ``min_lead_seconds`` away (cron cannot say seconds)."""
    now = datetime.now(UTC)
    due = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (due - now).total_seconds() < min_lead_seconds:
        due += timedelta(minutes=1)
    return due


def _daily_at(due: datetime) -> str:
    # Once a day, so the only runs a test can see are the ones it waits for.
    return f"{due.minute} {due.hour} * * *"


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


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
    due = _next_minute(min_lead_seconds=8)
    task_ids = [f"many_{i:02d}_{uuid.uuid4().hex[:6]}" for i in range(SCHEDULES)]
    for task_id in task_ids:
        _save_task(api, task_id)
        answer = api.post(f"/api/schedules/{task_id}", json={"cron": _daily_at(due)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["nextRun"] == int(due.timestamp() * 1000)
    assert api.get("/api/schedules/status/all").json()["running"] is True

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
    tomorrow = int((due + timedelta(days=1)).timestamp() * 1000)
    listed = api.get("/api/schedules").json()["schedules"]
    assert {entry["schedule"]["nextRun"] for entry in listed} == {tomorrow}


def test_stopped_scheduler_catches_up_once(isolated: Stack) -> None:
    _, api = isolated.start_gateway()
    isolated.start_runner()
    scheduler = isolated.start("scheduler")
    scheduler.wait_for_log("scheduler.ready", timeout=60)
    assert scheduler.stop() == 0
    assert api.get("/api/schedules/status/all").json()["running"] is False

    due = _next_minute()
    _save_task(api, "catch_up")
    _save_task(api, "skip_missed")
    cron = _daily_at(due)
    api.post("/api/schedules/catch_up", json={"cron": cron})
    api.post("/api/schedules/skip_missed", json={"cron": cron, "misfirePolicy": "skip"})
    _sleep_until(due + timedelta(seconds=3))
    assert _scheduled_runs(isolated) == {}

    restarted = isolated.start("scheduler", SCHEDULER_MISFIRE_GRACE_SECONDS="1")
    restarted.wait_for_log("schedule.fired", timeout=30)
    restarted.wait_for_log("schedule.skipped", timeout=10)
    time.sleep(1)
    runs = _scheduled_runs(isolated)
    assert list(runs) == ["catch_up"] and len(runs["catch_up"]) == 1
    tomorrow = int((due + timedelta(days=1)).timestamp() * 1000)
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
