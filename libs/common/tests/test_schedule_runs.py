"""The kept next runs and descriptions: the same answers as computing them afresh, and
computed again only when they could have changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from figranium_common import schedule_runs
from figranium_common.schedules import Timing, describe, normalize_cron, upcoming

START = datetime(2030, 3, 30, 23, 0, tzinfo=UTC)  # the night before Berlin's spring gap
TIMINGS = [
    Timing("30 2 * * *", None, "Europe/Berlin"),
    Timing("*/20 * * * *", None, "UTC"),
    Timing("5 4 3 2 *", None, "America/New_York"),
    Timing(None, 7, "UTC"),
]


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[Timing]:
    """The timings ``NextRuns`` computes (rather than takes from what it kept)."""
    calls: list[Timing] = []

    def counting(timing: Timing, now: datetime, n: int) -> list[datetime]:
        calls.append(timing)
        return upcoming(timing, now, n)

    monkeypatch.setattr(schedule_runs, "upcoming", counting)
    return calls


@pytest.mark.parametrize("timing", TIMINGS, ids=lambda t: t.cron or "interval")
def test_same_runs_as_computed_afresh_at_every_moment(timing: Timing) -> None:
    runs = schedule_runs.NextRuns(8)
    for minutes in range(0, 3 * 24 * 60, 13):
        now = START + timedelta(minutes=minutes)
        assert runs(timing, now, 5) == upcoming(timing, now, 5), now


def test_kept_until_the_first_run_passes(computed: list[Timing]) -> None:
    runs = schedule_runs.NextRuns(8)
    timing = TIMINGS[0]
    first = runs(timing, START, 5)
    assert runs(timing, START + timedelta(minutes=30), 5) == first
    assert runs(timing, first[0] - timedelta(microseconds=1), 5) == first
    assert computed == [timing]
    later = runs(timing, first[0], 5)
    assert later == [*first[1:], upcoming(timing, first[-1], 1)[0]]
    assert computed == [timing, timing]
    # A clock set back before the kept instant is not answered from it.
    assert runs(timing, START - timedelta(days=1), 5)[0] < first[0]
    assert len(computed) == 3


def test_bounded_least_recently_used(computed: list[Timing]) -> None:
    runs = schedule_runs.NextRuns(2)
    a, b, c = TIMINGS[:3]
    for timing in (a, b, a, c):  # c pushes out b, the least recently used
        runs(timing, START, 5)
    assert len(runs) == 2
    runs(a, START, 5)
    runs(b, START, 5)
    assert computed == [a, b, c, b]


def test_descriptions_are_kept_and_unchanged() -> None:
    timings = [
        Timing("0 9 * * 1-5", None, "UTC"),
        Timing("30 2 * * *", None, "Europe/Berlin"),
        Timing(None, 7, "UTC"),
    ]
    fresh = [describe.__wrapped__(timing) for timing in timings]
    assert fresh[0] == "At 09:00 AM, Monday through Friday"
    assert fresh[1].endswith("(Europe/Berlin)") and fresh[2] == "Every 7 minutes"
    describe.cache_clear()
    assert [describe(t) for t in timings] == fresh
    assert [describe(t) for t in timings] == fresh
    info = describe.cache_info()
    assert (info.hits, info.misses) == (3, 3)


def test_cron_check_is_kept_but_errors_are_not() -> None:
    normalize_cron.cache_clear()
    assert normalize_cron("@daily") == normalize_cron("@daily") == "0 0 * * *"
    for _ in range(2):
        with pytest.raises(ValueError, match="not a valid cron"):
            normalize_cron("61 * * * *")
    info = normalize_cron.cache_info()
    assert (info.hits, info.currsize) == (1, 1)
