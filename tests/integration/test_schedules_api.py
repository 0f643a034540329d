"""The schedules API: validation, storage in the task and the table, previews, removal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.integration.test_bad_input import assert_error


@pytest.fixture
def task_id(api: httpx.Client, site: str) -> str:
    task_id = f"sched_{uuid.uuid4().hex[:10]}"
    body = {"id": task_id, "name": "Scheduled", "url": f"{site}/form", "mode": "scrape"}
    assert api.post("/api/tasks", json=body).status_code == 200
    return task_id


def test_set_stores_the_schedule_in_the_task(api: httpx.Client, task_id: str) -> None:
    body = {"frequency": "weekly", "daysOfWeek": [1, 2, 3, 4, 5], "hour": 9, "minute": 0}
    answer = api.post(f"/api/schedules/{task_id}", json=body)
    assert answer.status_code == 200, answer.text
    saved = answer.json()
    assert saved["schedule"]["cron"] == "0 9 * * 1,2,3,4,5"
    assert saved["schedule"]["enabled"] is True
    assert saved["schedule"]["timezone"] == "UTC"
    assert saved["schedule"]["misfirePolicy"] == "run_once"
    assert saved["schedule"]["allowOverlap"] is False
    assert "Monday" in saved["description"] and "09:00" in saved["description"]
    due = datetime.fromtimestamp(saved["nextRun"] / 1000, UTC)
    assert due > datetime.now(UTC) and due.weekday() < 5 and (due.hour, due.minute) == (9, 0)
    task = api.get(f"/api/tasks/{task_id}").json()
    assert task["schedule"]["cron"] == "0 9 * * 1,2,3,4,5"
    assert task["schedule"]["nextRun"] == saved["nextRun"]
    listed = {entry["taskId"]: entry for entry in api.get("/api/schedules").json()["schedules"]}
    assert listed[task_id]["taskName"] == "Scheduled" and listed[task_id]["mode"] == "scrape"
    overview = api.get("/api/schedules/status/all").json()
    mine = [entry for entry in overview["tasks"] if entry["taskId"] == task_id]
    assert mine[0]["cron"] == "0 9 * * 1,2,3,4,5"
    assert datetime.fromisoformat(mine[0]["nextRun"]) == due
    assert overview["scheduledCount"] >= 1 and isinstance(overview["running"], bool)


def test_enabling_with_nothing_set_means_daily_at_nine(api: httpx.Client, task_id: str) -> None:
    saved = api.post(f"/api/schedules/{task_id}", json={"enabled": True}).json()
    assert saved["schedule"]["cron"] == "0 9 * * *"
    status = api.get(f"/api/schedules/{task_id}/status").json()
    assert status["isValid"] is True and status["cron"] == "0 9 * * *"
    assert status["description"] == "At 09:00 AM"


def test_cron_wins_and_presets_expand(api: httpx.Client, task_id: str) -> None:
    body = {"frequency": "daily", "hour": 3, "cron": "@hourly", "timezone": "Europe/Berlin"}
    saved = api.post(f"/api/schedules/{task_id}", json=body).json()
    assert saved["schedule"]["cron"] == "0 * * * *"
    assert saved["description"] == "Every hour (Europe/Berlin)"


def test_interval_description(api: httpx.Client, task_id: str) -> None:
    body = {"frequency": "interval", "intervalMinutes": 15}
    saved = api.post(f"/api/schedules/{task_id}", json=body).json()
    assert saved["description"] == "Every 15 minutes"
    body["intervalMinutes"] = 7
    saved = api.post(f"/api/schedules/{task_id}", json=body).json()
    assert saved["description"] == "Every 7 minutes" and saved["schedule"]["cron"] is None
    overview = api.get("/api/schedules/status/all").json()
    assert {"taskId": task_id, "cron": "every 7 minutes"}.items() <= next(
        entry for entry in overview["tasks"] if entry["taskId"] == task_id
    ).items()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "every day"}, "cron"),
        ({"cron": "0 0 9 * * *"}, "cron"),
        ({"cron": "60 * * * *"}, "cron"),
        ({"hour": 25}, "hour"),
        ({"minute": 60}, "minute"),
        ({"intervalMinutes": 0, "frequency": "interval"}, "intervalMinutes"),
        ({"daysOfWeek": [0, 7]}, "daysOfWeek"),
        ({"dayOfMonth": 0}, "dayOfMonth"),
        ({"frequency": "fortnightly"}, "frequency"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"misfirePolicy": "all"}, "misfirePolicy"),
        ({"enabled": "sometimes"}, "enabled"),
    ],
)
def test_invalid_bodies_save_nothing(
    api: httpx.Client, task_id: str, body: dict[str, object], field: str
) -> None:
    answer = api.post(f"/api/schedules/{task_id}", json=body)
    assert_error(answer, 400, "INVALID_SCHEDULE")
    assert answer.json()["details"].startswith(field)
    assert "schedule" not in api.get(f"/api/tasks/{task_id}").json()
    assert task_id not in [e["taskId"] for e in api.get("/api/schedules").json()["schedules"]]


def _set(api: httpx.Client, task_id: str, body: dict[str, object]) -> dict[str, Any]:
    answer = api.post(f"/api/schedules/{task_id}", json=body)
    assert answer.status_code == 200, answer.text
    schedule: dict[str, Any] = answer.json()["schedule"]
    return schedule


def test_a_body_is_merged_into_the_stored_schedule(api: httpx.Client, task_id: str) -> None:
    weekly = {"frequency": "weekly", "daysOfWeek": [2], "hour": 14, "minute": 30}
    assert _set(api, task_id, {**weekly, "timezone": "Europe/Berlin"})["cron"] == "30 14 * * 2"
    # Pausing keeps the timing (it used to fall back to daily at 09:00).
    paused = _set(api, task_id, {"enabled": False})
    assert paused["enabled"] is False and paused["nextRun"] is None
    assert (paused["cron"], paused["hour"], paused["timezone"]) == (
        "30 14 * * 2",
        14,
        "Europe/Berlin",
    )
    resumed = api.post(f"/api/schedules/{task_id}", json={"enabled": True}).json()
    assert resumed["schedule"]["cron"] == "30 14 * * 2"
    assert resumed["description"] == "At 02:30 PM, only on Tuesday (Europe/Berlin)"
    assert resumed["nextRun"] is not None
    # A frequency field alone re-resolves the frequency: the derived cron does not stay.
    assert _set(api, task_id, {"hour": 16})["cron"] == "30 16 * * 2"
    # A cron without a frequency drops the frequency fields ...
    by_cron = _set(api, task_id, {"cron": "*/10 * * * *"})
    assert by_cron["cron"] == "*/10 * * * *"
    assert not {"frequency", "hour", "minute", "daysOfWeek"} & set(by_cron)
    # ... a frequency without a cron drops the stored cron, ...
    daily = _set(api, task_id, {"frequency": "daily", "hour": 7})
    assert daily["cron"] == "0 7 * * *" and daily["timezone"] == "Europe/Berlin"
    # ... and null deletes a field, whose default then applies.
    cleared = _set(api, task_id, {"hour": None, "timezone": None})
    assert (cleared["cron"], cleared["hour"], cleared["timezone"]) == ("0 9 * * *", 9, "UTC")
    assert api.get(f"/api/tasks/{task_id}").json()["schedule"]["cron"] == "0 9 * * *"


def test_a_merge_that_makes_the_schedule_invalid_changes_nothing(
    api: httpx.Client, task_id: str
) -> None:
    _set(api, task_id, {"frequency": "interval", "intervalMinutes": 15})
    before = api.get(f"/api/tasks/{task_id}").json()["schedule"]
    answer = api.post(f"/api/schedules/{task_id}", json={"intervalMinutes": 0})
    assert_error(answer, 400, "INVALID_SCHEDULE")
    assert answer.json()["details"].startswith("intervalMinutes")
    assert api.get(f"/api/tasks/{task_id}").json()["schedule"] == before


def test_unknown_task(api: httpx.Client) -> None:
    for answer in (
        api.post("/api/schedules/no_such_task", json={"enabled": True}),
        api.delete("/api/schedules/no_such_task"),
        api.get("/api/schedules/no_such_task/status"),
        api.post("/api/schedules/no_such_task/describe", json={}),
    ):
        assert_error(answer, 404, "TASK_NOT_FOUND")


def test_describe_previews_without_saving(api: httpx.Client, task_id: str) -> None:
    body = {"cron": "0 0 31 * *", "timezone": "Europe/Berlin"}
    answer = api.post(f"/api/schedules/{task_id}/describe", json=body)
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["valid"] is True and preview["cron"] == "0 0 31 * *"
    runs = [datetime.fromisoformat(run) for run in preview["nextRuns"]]
    assert len(runs) == 5 and runs == sorted(runs)
    assert preview["nextRun"] == int(runs[0].timestamp() * 1000)
    assert "schedule" not in api.get(f"/api/tasks/{task_id}").json()
    invalid = api.post(f"/api/schedules/{task_id}/describe", json={"cron": "0 25 * * *"}).json()
    assert invalid["valid"] is False and invalid["error"].startswith("cron")


def test_status_without_schedule(api: httpx.Client, task_id: str) -> None:
    status = api.get(f"/api/schedules/{task_id}/status").json()
    assert status == {"schedule": None, "cron": None, "description": None, "isValid": False}


def test_disabled_schedule_is_listed_without_next_run(api: httpx.Client, task_id: str) -> None:
    saved = api.post(f"/api/schedules/{task_id}", json={"enabled": False, "hour": 6}).json()
    assert saved["nextRun"] is None and saved["schedule"]["enabled"] is False
    assert task_id in [e["taskId"] for e in api.get("/api/schedules").json()["schedules"]]
    overview = api.get("/api/schedules/status/all").json()
    assert task_id not in [entry["taskId"] for entry in overview["tasks"]]


def test_delete_removes_it(api: httpx.Client, task_id: str) -> None:
    api.post(f"/api/schedules/{task_id}", json={"cron": "*/5 * * * *"})
    answer = api.delete(f"/api/schedules/{task_id}")
    assert answer.status_code == 200 and answer.json() == {"success": True, "schedule": None}
    assert api.get(f"/api/tasks/{task_id}").json()["schedule"] is None
    assert task_id not in [e["taskId"] for e in api.get("/api/schedules").json()["schedules"]]
    assert api.get(f"/api/schedules/{task_id}/status").json()["isValid"] is False


def test_routes_do_not_capture_status_all(api: httpx.Client) -> None:
    # A task named "status" must not turn /api/schedules/status/all into its own routes.
    answer = api.get("/api/schedules/status/all")
    assert answer.status_code == 200 and set(answer.json()) == {
        "running",
        "scheduledCount",
        "tasks",
    }


def test_saving_a_task_keeps_its_schedule(api: httpx.Client, site: str) -> None:
    api.post("/api/tasks", json={"id": "keeps-schedule", "url": f"{site}/form"})
    set_ = api.post("/api/schedules/keeps-schedule", json={"enabled": True, "cron": "0 9 * * 1-5"})
    assert set_.status_code == 200, set_.text
    # A client that saves the whole task without (or with another) schedule changes nothing.
    api.post("/api/tasks", json={"id": "keeps-schedule", "name": "renamed", "url": f"{site}/form"})
    api.patch("/api/tasks/keeps-schedule", json={"schedule": {"cron": "* * * * *"}})
    task = api.get("/api/tasks/keeps-schedule").json()
    assert task["name"] == "renamed"
    assert task["schedule"]["cron"] == "0 9 * * 1-5"
    status = api.get("/api/schedules/keeps-schedule/status").json()
    assert status["cron"] == "0 9 * * 1-5"
