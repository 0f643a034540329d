"""The captures index in PostgreSQL: what runs report is listed as the bucket holds it,
a ``capture`` event reaches the live stream once, and objects stored before the index
existed are indexed at a gateway's start."""

from __future__ import annotations

import uuid

import httpx
import pytest

from figranium_common.models import ResultEvent, RunResult
from tests.integration.captures_helpers import (
    capture_event,
    capture_names,
    indexed,
    insert_finished_execution,
    publish_events,
    put_objects,
)
from tests.integration.stack import API_KEY, Stack, count_rows, fetch_rows, wait_until
from tests.integration.test_stream import SseReader


def _listed(client: httpx.Client, run_id: str) -> list[dict[str, object]]:
    response = client.get("/api/data/captures", params={"runId": run_id})
    assert response.status_code == 200, response.text
    captures: list[dict[str, object]] = response.json()["captures"]
    return captures


def _rows(database_url: str, run_id: str) -> list[tuple[object, ...]]:
    return fetch_rows(
        database_url,
        "SELECT name, execution_id, kind, size, created_at FROM captures"
        " WHERE execution_id = %s ORDER BY created_at DESC, name DESC",
        (run_id,),
    )


def test_a_runs_captures_are_listed_as_the_bucket_holds_them(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], site: str
) -> None:
    task_id = f"indexed-{uuid.uuid4().hex[:8]}"
    task = {"id": task_id, "url": f"{site}/form", "extractionScript": "return 1"}
    assert api.post("/api/tasks", json=task).status_code == 200
    run = api.post(f"/api/tasks/{task_id}/api", json={})
    assert run.status_code == 200, run.text
    run_id = run.json()["executionId"]
    screenshot = run.json()["screenshot_url"].removeprefix("/captures/")

    in_bucket = {
        name
        for name in capture_names(stack[0].env["NATS_URL"])
        if name.startswith(f"{run_id}_") and "_download_" not in name
    }
    listed = _listed(api, run_id)
    assert screenshot in in_bucket
    assert {c["name"] for c in listed} == in_bucket
    for entry in listed:
        assert entry["url"] == f"/captures/{entry['name']}"
        assert isinstance(entry["modified"], int) and entry["size"] == len(
            api.get(str(entry["url"])).content
        )
    rows = _rows(stack[0].env["DATABASE_URL"], run_id)
    assert [row[0] for row in rows] == [c["name"] for c in listed]
    assert {row[2] for row in rows} <= {"screenshot", "recording"}

    deleted = api.delete(f"/api/data/captures/{screenshot}")
    assert deleted.status_code == 200, deleted.text
    assert indexed(stack[0].env["DATABASE_URL"], [screenshot]) == 0
    assert screenshot not in {c["name"] for c in _listed(api, run_id)}


def test_a_capture_event_is_indexed_and_streamed_once(
    api: httpx.Client, stack: tuple[Stack, httpx.Client]
) -> None:
    database_url = stack[0].env["DATABASE_URL"]
    run_id = f"exec_live_{uuid.uuid4().hex[:8]}"
    insert_finished_execution(database_url, run_id)
    ((last,),) = fetch_rows(database_url, "SELECT COALESCE(max(id), 0) FROM execution_changes")
    first = capture_event(run_id, f"{run_id}_agent_1.png", 120)
    second = capture_event(run_id, f"{run_id}_agent_2.png", 340)
    # The first twice (a redelivery): one row and one change; the second tells when both
    # were handled (one ingester takes the run's events in order).
    publish_events(stack[0].env["NATS_URL"], [first, first, second])
    wait_until(lambda: indexed(database_url, [second.captures[0].name]), 30, "second indexed")

    assert [row[:4] for row in _rows(database_url, run_id)] == [
        (f"{run_id}_agent_2.png", run_id, "screenshot", 340),
        (f"{run_id}_agent_1.png", run_id, "screenshot", 120),
    ]
    changes = count_rows(
        database_url,
        "SELECT count(*) FROM execution_changes WHERE execution_id = %s AND kind = 'capture'",
        (run_id,),
    )
    assert changes == 2
    reader = SseReader(
        str(api.base_url),
        headers={"x-api-key": API_KEY},
        query={"runId": run_id, "lastEventId": str(last)},
    )
    try:
        events = reader.until(lambda e: e.data.get("name") == f"{run_id}_agent_2.png")
    finally:
        reader.close()
    assert [(e.kind, e.data["name"]) for e in events] == [
        ("capture", f"{run_id}_agent_1.png"),
        ("capture", f"{run_id}_agent_2.png"),
    ]
    assert {k: events[0].data[k] for k in ("executionId", "kind", "size", "url")} == {
        "executionId": run_id,
        "kind": "screenshot",
        "size": 120,
        "url": f"/captures/{run_id}_agent_1.png",
    }


@pytest.mark.stack
def test_captures_stored_before_the_index_are_indexed_at_start(isolated: Stack) -> None:
    names = ["run_old_1_agent_5.png", "run_old_1_agent_6.webm", "loose.png"]
    put_objects(isolated.env["NATS_URL"], names)
    gateway, client = isolated.start_gateway()
    database_url = isolated.env["DATABASE_URL"]
    wait_until(lambda: indexed(database_url, names) == 3, 30, "the bucket indexed")

    listed = _listed(client, "run_old_1")
    assert {c["name"]: c["type"] for c in listed} == {
        "run_old_1_agent_5.png": "screenshot",
        "run_old_1_agent_6.webm": "recording",
    }
    assert all(c["size"] == len(b"capture bytes") and c["modified"] for c in listed)
    owners = fetch_rows(database_url, "SELECT execution_id FROM captures ORDER BY execution_id")
    assert [row[0] for row in owners] == ["loose.png", "run_old_1", "run_old_1"]
    # Done once per database: a second replica finds it done.
    put_objects(isolated.env["NATS_URL"], ["run_late_agent_1.png"])
    second, _ = isolated.start_gateway()
    second.wait_for_log("captures.backfill_skipped", timeout=30)
    assert gateway.log_text().count('"captures.backfilled"') == 1
    assert '"captures.backfilled"' not in second.log_text()
    assert indexed(database_url, ["run_late_agent_1.png"]) == 0


def test_a_results_stored_captures_are_indexed_with_it(stack: tuple[Stack, httpx.Client]) -> None:
    database_url = stack[0].env["DATABASE_URL"]
    run_id = f"exec_result_{uuid.uuid4().hex[:8]}"
    insert_finished_execution(database_url, run_id)
    video = capture_event(run_id, f"{run_id}_agent_9.webm", 4096).captures
    result = ResultEvent(
        execution_id=run_id,
        attempt=1,
        seq=0,
        result=RunResult(outcome="success"),
        duration_ms=5,
        stored_captures=video,
    )
    publish_events(stack[0].env["NATS_URL"], [result])
    wait_until(lambda: indexed(database_url, [video[0].name]), 30, "the result's video indexed")
    assert [row[:4] for row in _rows(database_url, run_id)] == [
        (video[0].name, run_id, "recording", 4096)
    ]
