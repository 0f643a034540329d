"""Schedule bodies, their resolution to cron or intervals, and next-run computation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from figranium_common.schedules import (
    ScheduleBody,
    Timing,
    decide,
    describe,
    iso,
    next_interval_runs,
    next_runs,
    resolve,
    upcoming,
)

BERLIN = ZoneInfo("Europe/Berlin")


def _resolve(**body: object) -> tuple[Timing, dict[str, object]]:
    return resolve(ScheduleBody.model_validate(body))


@pytest.mark.parametrize(
    ("body", "cron"),
    [
        ({}, "0 9 * * *"),
        ({"enabled": True}, "0 9 * * *"),
        ({"frequency": "daily", "hour": 9, "minute": 30}, "30 9 * * *"),
        ({"frequency": "hourly", "minute": 5}, "5 * * * *"),
        ({"frequency": "weekly", "hour": 8, "daysOfWeek": [5, 1, 3, 1]}, "0 8 * * 1,3,5"),
        ({"frequency": "weekly"}, "0 9 * * 1"),
        ({"frequency": "monthly", "dayOfMonth": 31, "hour": 0}, "0 0 31 * *"),
        ({"frequency": "interval", "intervalMinutes": 15}, "*/15 * * * *"),
        ({"frequency": "interval", "intervalMinutes": 1}, "* * * * *"),
        ({"frequency": "interval", "intervalMinutes": 60}, "0 * * * *"),
        ({"frequency": "interval"}, "*/15 * * * *"),
        ({"cron": "0 9 * * 1-5", "frequency": "hourly"}, "0 9 * * 1-5"),
        ({"cron": "@hourly"}, "0 * * * *"),
        ({"cron": "@DAILY"}, "0 0 * * *"),
        ({"cron": "@weekly"}, "0 0 * * 0"),
        ({"cron": "  15   3 * *  * "}, "15 3 * * *"),
    ],
)
def test_resolution(body: dict[str, object], cron: str) -> None:
    timing, stored = _resolve(**body)
    assert timing.cron == cron
    assert stored["cron"] == cron
    assert timing.interval_minutes is None


def test_interval_not_dividing_60_is_a_fixed_interval() -> None:
    timing, stored = _resolve(frequency="interval", intervalMinutes=7)
    assert timing == Timing(None, 7, "UTC")
    assert stored["cron"] is None
    assert describe(timing) == "Every 7 minutes"
    anchor = datetime(2026, 1, 1, 10, 56, tzinfo=UTC)
    runs = upcoming(timing, anchor, 3, anchor=anchor)
    # Past the top of the hour without an uneven gap (cron */7 would go :56 → :00).
    assert [r.strftime("%H:%M") for r in runs] == ["11:03", "11:10", "11:17"]


def test_interval_keeps_its_phase_after_an_outage() -> None:
    anchor = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    after = anchor + timedelta(hours=5, minutes=3)
    assert next_interval_runs(7, anchor, after, 1) == [anchor + timedelta(minutes=7 * 44)]
    assert next_interval_runs(7, anchor, anchor - timedelta(minutes=1), 1) == [anchor]


def test_stored_schedule_keeps_options() -> None:
    _, stored = _resolve(
        enabled=False, hour=7, timezone="Europe/Berlin", misfirePolicy="skip", allowOverlap=True
    )
    assert stored == {
        "enabled": False,
        "frequency": "daily",
        "hour": 7,
        "minute": 0,
        "cron": "0 7 * * *",
        "timezone": "Europe/Berlin",
        "misfirePolicy": "skip",
        "allowOverlap": True,
    }


def test_echoed_fields_are_ignored() -> None:
    _, stored = _resolve(cron="0 1 * * *", nextRun=1, lastRun=2, lastRunStatus="success")
    assert "nextRun" not in stored and "lastRun" not in stored


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "not a cron"}, "cron"),
        ({"cron": "0 0 9 * * *"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * 32 * *"}, "cron"),
        ({"cron": "@sometimes"}, "cron"),
        ({"hour": 24}, "hour"),
        ({"minute": -1}, "minute"),
        ({"intervalMinutes": 0}, "intervalMinutes"),
        ({"intervalMinutes": 61}, "intervalMinutes"),
        ({"daysOfWeek": [7]}, "daysOfWeek"),
        ({"dayOfMonth": 32}, "dayOfMonth"),
        ({"frequency": "yearly"}, "frequency"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../etc/passwd"}, "timezone"),
        ({"misfirePolicy": "later"}, "misfirePolicy"),
    ],
)
def test_invalid_bodies_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ScheduleBody.model_validate(body)
    assert refused.value.errors()[0]["loc"][0] == field


def test_weekdays() -> None:
    friday = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    runs = next_runs("0 9 * * 1-5", "UTC", friday, 3)
    assert [r.strftime("%a %d %H:%M") for r in runs] == [
        "Mon 05 09:00",
        "Tue 06 09:00",
        "Wed 07 09:00",
    ]


def test_day_of_month_31_skips_short_months() -> None:
    runs = next_runs("0 0 31 * *", "UTC", datetime(2026, 1, 31, 1, tzinfo=UTC), 3)
    assert [r.date().isoformat() for r in runs] == ["2026-03-31", "2026-05-31", "2026-07-31"]


def test_standard_cron_day_or_weekday() -> None:
    # Day-of-month and day-of-week both restricted: either matching is enough.
    runs = next_runs("0 0 13 * 5", "UTC", datetime(2026, 2, 1, tzinfo=UTC), 3)
    assert [r.date().isoformat() for r in runs] == ["2026-02-06", "2026-02-13", "2026-02-20"]


def test_strictly_after() -> None:
    at = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    assert next_runs("0 9 * * *", "UTC", at, 1)[0] == at + timedelta(days=1)


def test_time_zone_is_applied() -> None:
    runs = next_runs("0 9 * * *", "Europe/Berlin", datetime(2026, 1, 10, tzinfo=UTC), 1)
    assert runs[0] == datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
    summer = next_runs("0 9 * * *", "Europe/Berlin", datetime(2026, 7, 10, tzinfo=UTC), 1)
    assert summer[0] == datetime(2026, 7, 10, 7, 0, tzinfo=UTC)


def test_dst_spring_forward_runs_after_the_gap() -> None:
    # 2026-03-29 in Berlin: 02:00 → 03:00, so 02:30 does not exist that day.
    runs = next_runs("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3)
    local = [r.astimezone(BERLIN).strftime("%d %H:%M %Z") for r in runs]
    assert local == ["29 03:00 CEST", "30 02:30 CEST", "31 02:30 CEST"]


def test_dst_fall_back_fixed_time_runs_once() -> None:
    # 2026-10-25 in Berlin: 03:00 → 02:00, so 02:30 happens twice.
    runs = next_runs("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3)
    local = [r.astimezone(BERLIN).strftime("%d %H:%M %Z") for r in runs]
    assert local == ["25 02:30 CEST", "26 02:30 CET", "27 02:30 CET"]


def test_dst_fall_back_wildcard_hour_keeps_real_time_spacing() -> None:
    start = datetime(2026, 10, 25, 1, 50, tzinfo=BERLIN)
    runs = next_runs("*/30 * * * *", "Europe/Berlin", start, 5)
    utc = [r.astimezone(UTC) for r in runs]
    gaps = {b - a for a, b in itertools.pairwise(utc)}
    assert gaps == {timedelta(minutes=30)}
    assert runs[0].astimezone(UTC) == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)


def test_interval_7_minutes_not_affected_by_dst() -> None:
    anchor = datetime(2026, 3, 29, 1, 55, tzinfo=BERLIN)
    runs = next_interval_runs(7, anchor, anchor, 2)
    assert runs[1] - runs[0] == timedelta(minutes=7)
    assert runs[0].astimezone(BERLIN).strftime("%H:%M %Z") == "03:02 CEST"


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_runs("* * * * *", "UTC", datetime(2026, 1, 1), 1)


def test_descriptions() -> None:
    assert describe(Timing("*/15 * * * *", None, "UTC")) == "Every 15 minutes"
    assert "Monday through Friday" in describe(Timing("0 9 * * 1-5", None, "UTC"))
    assert describe(Timing("0 9 * * *", None, "Europe/Berlin")).endswith("(Europe/Berlin)")


def test_decide_on_time_fires_and_advances() -> None:
    timing = Timing("0 * * * *", None, "UTC")
    due = datetime(2026, 1, 1, 10, tzinfo=UTC)
    now = due + timedelta(seconds=0.3)
    decision = decide(timing, due, now, "skip", timedelta(seconds=60))
    assert decision.fire and not decision.missed
    assert decision.next_run == datetime(2026, 1, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize(("policy", "fires"), [("run_once", True), ("skip", False)])
def test_decide_missed_slots(policy: str, fires: bool) -> None:
    timing = Timing("*/5 * * * *", None, "UTC")
    due = datetime(2026, 1, 1, 10, tzinfo=UTC)
    now = due + timedelta(hours=3, minutes=2)
    decision = decide(timing, due, now, policy, timedelta(seconds=60))  # type: ignore[arg-type]
    assert decision.missed and decision.fire is fires
    # One catch-up at most, then the next future slot: no burst of missed runs.
    assert decision.next_run == datetime(2026, 1, 1, 13, 5, tzinfo=UTC)


def test_iso() -> None:
    assert iso(datetime(2026, 1, 1, 10, tzinfo=BERLIN)) == "2026-01-01T09:00:00.000Z"
