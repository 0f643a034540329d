"""Merging a schedule body into the stored schedule (POST /api/schedules/:id)."""

from __future__ import annotations

from figranium_common.schedule_merge import merge_schedule
from figranium_common.schedules import ScheduleBody, resolve

STORED_DAILY = {
    "enabled": True,
    "frequency": "daily",
    "hour": 14,
    "minute": 30,
    "cron": "30 14 * * *",
    "timezone": "Europe/Berlin",
    "nextRun": 1,
    "lastRun": 2,
    "lastRunStatus": "success",
    "lastRunDurationMs": 3,
}


def _cron(body: dict[str, object]) -> str | None:
    return resolve(ScheduleBody.model_validate(body))[0].cron


def test_enabled_false_keeps_the_timing_and_drops_run_fields() -> None:
    merged = merge_schedule(STORED_DAILY, {"enabled": False})
    assert merged == {
        "enabled": False,
        "frequency": "daily",
        "hour": 14,
        "minute": 30,
        "cron": "30 14 * * *",
        "timezone": "Europe/Berlin",
    }
    assert _cron(merged) == "30 14 * * *"


def test_nothing_stored_is_the_body_itself() -> None:
    assert merge_schedule(None, {"cron": "@daily"}) == {"cron": "@daily"}


def test_cron_without_frequency_drops_the_frequency_fields() -> None:
    stored = {**STORED_DAILY, "frequency": "weekly", "daysOfWeek": [1], "dayOfMonth": 3}
    merged = merge_schedule(stored, {"cron": "*/5 * * * *"})
    assert merged["cron"] == "*/5 * * * *"
    assert not {"frequency", "hour", "minute", "daysOfWeek", "dayOfMonth"} & set(merged)
    assert merged["timezone"] == "Europe/Berlin"


def test_frequency_without_cron_drops_the_stored_cron() -> None:
    stored = {"enabled": True, "cron": "*/5 * * * *"}
    merged = merge_schedule(stored, {"frequency": "hourly", "minute": 7})
    assert "cron" not in merged
    assert _cron(merged) == "7 * * * *"


def test_a_frequency_field_alone_re_resolves_a_frequency_schedule() -> None:
    merged = merge_schedule(STORED_DAILY, {"hour": 6})
    assert "cron" not in merged and _cron(merged) == "30 6 * * *"
    # A cron the user set without a frequency stays: there is nothing to re-resolve.
    by_cron = merge_schedule({"cron": "0 3 * * *"}, {"timezone": "UTC", "hour": 6})
    assert by_cron["cron"] == "0 3 * * *"


def test_both_given_keeps_both_and_cron_wins() -> None:
    merged = merge_schedule(STORED_DAILY, {"cron": "0 1 * * *", "frequency": "weekly"})
    assert merged["frequency"] == "weekly" and merged["hour"] == 14
    assert _cron(merged) == "0 1 * * *"


def test_null_deletes_a_field() -> None:
    merged = merge_schedule(STORED_DAILY, {"hour": None, "timezone": None, "cron": None})
    assert not {"hour", "timezone", "cron"} & set(merged)
    assert _cron(merged) == "30 9 * * *"
