"""Parsing the executions listing's query: filters, times and the keyset cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from figranium_gateway.errors import ApiError
from figranium_gateway.execution_page import ExecutionQuery, Position
from figranium_gateway.execution_query import decode_cursor, encode_cursor, parse_query
from figranium_gateway.store.executions import listing_statement


@pytest.mark.parametrize(
    "position",
    [
        Position(datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), "exec_1"),
        Position(datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC), "run:with:colons_ü"),
        Position(datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), "x"),
    ],
)
def test_cursor_round_trips_to_the_microsecond(position: Position) -> None:
    cursor = encode_cursor(position)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor) == position
    assert parse_query({"cursor": cursor}).after == position


def test_times_are_epoch_ms_or_iso_8601_in_utc_by_default() -> None:
    query = parse_query(
        {"from": "1714564800000", "to": "2024-05-01T14:00:00.5", "taskId": "t", "outcome": ""}
    )
    assert query.created_from == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert query.created_to == datetime(2024, 5, 1, 14, 0, 0, 500000, tzinfo=UTC)
    assert (query.task_id, query.outcome, query.limit, query.after) == ("t", None, 50, None)
    offset = parse_query({"from": "2024-05-01T14:00:00+02:00"}).created_from
    assert offset == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"outcome": "SUCCESS"}, "INVALID_FILTER"),
        ({"from": "1714564800000.5"}, "INVALID_FILTER"),
        ({"to": "-999999999999999"}, "INVALID_FILTER"),
        ({"from": "2", "to": "1"}, "INVALID_FILTER"),
        ({"cursor": "YWJj*"}, "INVALID_CURSOR"),
        ({"cursor": "YWJjZA="}, "INVALID_CURSOR"),  # "abcd": no position in it
        ({"cursor": "A"}, "INVALID_CURSOR"),
        ({"limit": "1001"}, "INVALID_QUERY"),
    ],
)
def test_bad_values_are_named(query: dict[str, str], code: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_query(query)
    assert refused.value.status == 400 and refused.value.code == code


@pytest.mark.parametrize(
    ("status", "condition", "value"),
    [
        ("queued", "phase = %s", "queued"),
        ("anti_bot", "outcome = %s", "anti_bot"),
        ("422", "status = %s", 422),
        ("0422", "outcome = %s", "0422"),  # status::text is never "0422": nothing matches
    ],
)
def test_status_filters_on_the_one_column_it_can_match(
    status: str, condition: str, value: object
) -> None:
    sql, params = listing_statement(ExecutionQuery(status=status, limit=10))
    assert f"WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT %s" in sql
    assert params == [value, 11]
