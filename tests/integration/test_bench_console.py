"""The console figure's summary: pages not built yet are shown as missing, not timed, and
never count towards the worst p99."""

from __future__ import annotations

from typing import Any

from benchmarks.console import table_rows, worst_p99

MEASURED: dict[str, dict[str, Any]] = {
    "tasks": {"n": 5, "p50": 12.0, "p99": 20.5, "max": 21.0, "wall_p50": 14.0},
    "schedules": {"n": 5, "p50": 40.0, "p99": 61.2, "max": 62.0, "wall_p50": 43.0},
    "captures": {"missing": True, "status": 404},
    "cabinets": {"status": 500},
}


def test_the_worst_p99_is_of_the_measured_pages() -> None:
    assert worst_p99(MEASURED) == 61.2
    assert worst_p99({"captures": {"missing": True, "status": 404}}) is None


def test_missing_and_failing_pages_are_named_in_the_table() -> None:
    rows = {row[0]: row for row in table_rows(MEASURED)}
    assert rows["console schedules (server ms)"][1:4] == ("p50 40.0", "p99 61.2", "max 62.0")
    assert rows["console captures"][1] == "missing (404)"
    assert rows["console cabinets"][1] == "answered 500"
