"""``GET /api/executions``: filters, the keyset cursor and bad values, on the shared stack.

The rows are written straight into the shared database, five to six hours in the past
(before the stack started, so no run of another test is among them, and well inside
retention), under task ids of their own, and deleted at the end.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.stack import Stack
from tests.integration.test_bad_input import assert_error

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
OUTCOMES = ["success", "error", "stopped", "crashed", "anti_bot"]
HTTP_STATUS = {"success": 200, "stopped": 200, "error": 422, "anti_bot": 422, "crashed": 500}


class Rows:
    """The test's executions: ``ids`` newest first, as the listing orders them."""

    def __init__(self, database_url: str, tag: str) -> None:
        self.database_url = database_url
        self.tag = tag
        self.task_a = f"list_a_{tag}"
        self.task_b = f"list_b_{tag}"
        self.made: list[tuple[datetime, str]] = []

    def add(self, n: int, *, at: datetime, task_id: str, outcome: str | None) -> list[str]:
        ids = [f"exec_list_{self.tag}_{len(self.made) + i:03d}" for i in range(n)]
        with psycopg.connect(self.database_url) as conn:
            conn.cursor().executemany(
                "INSERT INTO executions (id, task_id, task_name, source, phase, status,"
                " outcome, created_at, task_snapshot)"
                " VALUES (%s, %s, 'listing', 'api', %s, %s, %s, %s, '{}'::jsonb)",
                [
                    (
                        execution_id,
                        task_id,
                        "finished" if outcome else "running",
                        HTTP_STATUS[outcome] if outcome else None,
                        outcome,
                        at,
                    )
                    for execution_id in ids
                ],
            )
        self.made += [(at, execution_id) for execution_id in ids]
        return ids

    @property
    def ids(self) -> list[str]:
        return [execution_id for _, execution_id in sorted(self.made, reverse=True)]

    def delete(self) -> None:
        with psycopg.connect(self.database_url) as conn:
            conn.execute("DELETE FROM executions WHERE id LIKE %s", (f"exec_list_{self.tag}_%",))


@pytest.fixture(scope="module")
def rows(stack: tuple[Stack, httpx.Client]) -> Iterator[Rows]:
    """Twenty executions a minute apart, alternating tasks and cycling outcomes; then
    three running ones sharing one creation time (ties broken by id). Newest first,
    ``rows.ids[k]`` is the one made ``22 - k`` minutes after BASE, for k from 3."""
    made = Rows(stack[0].env["DATABASE_URL"], uuid.uuid4().hex[:8])
    try:
        for i in range(20):
            made.add(
                1,
                at=BASE + timedelta(minutes=i),
                task_id=made.task_a if i % 2 == 0 else made.task_b,
                outcome=OUTCOMES[i % len(OUTCOMES)],
            )
        made.add(3, at=BASE + timedelta(minutes=30), task_id=made.task_a, outcome=None)
        yield made
    finally:
        made.delete()


def _ms(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def _window() -> dict[str, str]:
    return {"from": _ms(BASE), "to": _ms(BASE + timedelta(hours=1))}


def _ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [e["id"] for e in answer.json()["executions"]]


def _walk(api: httpx.Client, path: str, params: dict[str, Any]) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        answer = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        pages.append(_ids(answer))
        cursor = answer.json().get("nextCursor")
        if cursor is None:
            return pages


def test_filters_narrow_the_listing(api: httpx.Client, rows: Rows) -> None:
    listed = api.get("/api/executions", params={**_window(), "taskId": rows.task_a, "limit": 1000})
    assert set(listed.json()) == {"executions"}  # no nextCursor when nothing follows
    assert _ids(listed) == rows.ids[:3] + rows.ids[4::2]
    assert {e["taskId"] for e in listed.json()["executions"]} == {rows.task_a}

    errors = _ids(api.get("/api/executions", params={**_window(), "outcome": "error"}))
    assert errors == [rows.ids[k] for k in (6, 11, 16, 21)]
    both = _ids(api.get("/api/executions", params={"taskId": rows.task_b, "outcome": "error"}))
    assert both == [rows.ids[k] for k in (11, 21)]
    # ``status`` keeps its meaning: a phase, an outcome or an HTTP status.
    assert (
        _ids(api.get("/api/executions", params={**_window(), "status": "running"}))
        == (rows.ids[:3])
    )
    crashed = [rows.ids[k] for k in (4, 9, 14, 19)]
    assert _ids(api.get("/api/executions", params={**_window(), "status": "crashed"})) == crashed
    assert _ids(api.get("/api/executions", params={**_window(), "status": "500"})) == crashed
    assert len(_ids(api.get("/api/executions", params={**_window(), "status": "422"}))) == 8

    # ``from`` inclusive, ``to`` exclusive, in epoch ms or ISO 8601.
    minute = {
        "from": (BASE + timedelta(minutes=5)).isoformat(),
        "to": _ms(BASE + timedelta(minutes=8)),
    }
    assert _ids(api.get("/api/executions/list", params=minute)) == rows.ids[15:18]
    naive = (BASE + timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    as_utc = api.get("/api/executions", params={"from": naive, "to": minute["to"]})
    assert _ids(as_utc) == rows.ids[15:18]


def test_cursor_pages_through_in_order(api: httpx.Client, rows: Rows) -> None:
    pages = _walk(api, "/api/executions", {**_window(), "limit": 2})
    assert [len(p) for p in pages] == [2] * 11 + [1]
    assert [i for page in pages for i in page] == rows.ids
    # The running three share one creation time: the first page ends between them.
    assert pages[0] == rows.ids[:2] and pages[1][0] == rows.ids[2]
    filtered = _walk(api, "/api/executions/list", {"taskId": rows.task_b, "limit": 4})
    assert [i for page in filtered for i in page] == rows.ids[3::2]


def test_new_executions_never_shift_a_page(api: httpx.Client, rows: Rows) -> None:
    first = api.get("/api/executions", params={"taskId": rows.task_a, "limit": 5}).json()
    second = api.get(
        "/api/executions",
        params={"taskId": rows.task_a, "limit": 5, "cursor": first["nextCursor"]},
    )
    # Outside the window the other tests look at.
    newer = rows.add(2, at=BASE + timedelta(hours=2), task_id=rows.task_a, outcome="success")
    again = api.get(
        "/api/executions",
        params={"taskId": rows.task_a, "limit": 5, "cursor": first["nextCursor"]},
    )
    assert _ids(again) == _ids(second)
    fresh = api.get("/api/executions", params={"taskId": rows.task_a, "limit": 2})
    assert _ids(fresh) == sorted(newer, reverse=True)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"outcome": "failed"}, "INVALID_FILTER"),
        ({"from": "yesterday"}, "INVALID_FILTER"),
        ({"to": "2024-13-01"}, "INVALID_FILTER"),
        ({"from": "99999999999999999"}, "INVALID_FILTER"),
        ({"to": "999999999999999"}, "INVALID_FILTER"),
        ({"from": "2024-02-01", "to": "2024-01-01"}, "INVALID_FILTER"),
        ({"cursor": "not a cursor"}, "INVALID_CURSOR"),
        ({"cursor": ""}, "INVALID_CURSOR"),
        ({"cursor": base64.urlsafe_b64encode(b"soon:exec_x").decode()}, "INVALID_CURSOR"),
        ({"cursor": base64.urlsafe_b64encode(b"1700000000:").decode()}, "INVALID_CURSOR"),
        ({"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "INVALID_CURSOR"),
        ({"cursor": "A" * 2000}, "INVALID_CURSOR"),
        ({"limit": "0"}, "INVALID_QUERY"),
    ],
)
def test_bad_values_are_refused(api: httpx.Client, params: dict[str, str], code: str) -> None:
    for path in ("/api/executions", "/api/executions/list"):
        assert_error(api.get(path, params=params), 400, code)
