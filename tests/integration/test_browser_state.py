"""A task's cookies and local storage carry over between its runs; its identity rotates."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from figranium_runner.identity import USER_AGENTS, VIEWPORTS
from tests.integration.stack import Stack

READ_VISITS = (
    "return {visits: Number(document.getElementById('visits').textContent),"
    " stored: Number(document.getElementById('stored').textContent)}"
)


def visits_task(site: str, task_id: str, **extra: object) -> dict[str, object]:
    return {
        "id": task_id,
        "name": "Count visits",
        "url": f"{site}/cookie",
        "extractionScript": READ_VISITS,
        "disableRecording": True,  # not what these tests are about; keeps them quick
        **extra,
    }


def run(api: httpx.Client, task_id: str, **body: object) -> Any:
    response = api.post(f"/api/tasks/{task_id}/api", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_state_carries_over_and_stateless_runs_leave_it_alone(
    api: httpx.Client, site: str, stack: tuple[Stack, httpx.Client]
) -> None:
    api.post("/api/tasks", json=visits_task(site, "visits"))
    assert run(api, "visits") == {"visits": 1, "stored": 1}
    assert run(api, "visits") == {"visits": 2, "stored": 2}
    # Stateless from the run call: starts clean and does not save what it ended with.
    assert run(api, "visits", statelessExecution=True) == {"visits": 1, "stored": 1}
    assert run(api, "visits") == {"visits": 3, "stored": 3}

    database_url = stack[0].env["DATABASE_URL"]
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT state FROM task_browser_state WHERE task_id = 'visits'"
        ).fetchone()
        assert row is not None
        # Sealed at rest: the saved cookies are not readable from the database.
        assert isinstance(row[0], str) and row[0].startswith("enc:v1:")
        assert "visits" not in row[0]
        # Cookies are kept once, as the task's state, not in every execution's events.
        leaked = conn.execute(
            "SELECT count(*) FROM execution_events WHERE payload ? 'storage_state'"
        ).fetchone()
        assert leaked == (0,)

        # Forgotten with the task.
        conn.execute("DELETE FROM tasks WHERE id = 'visits'")
        gone = conn.execute("SELECT count(*) FROM task_browser_state WHERE task_id = 'visits'")
        assert gone.fetchone() == (0,)


def test_stateless_task_neither_reads_nor_writes_state(api: httpx.Client, site: str) -> None:
    api.post("/api/tasks", json=visits_task(site, "sometimes-stateless"))
    assert run(api, "sometimes-stateless") == {"visits": 1, "stored": 1}
    api.post("/api/tasks", json=visits_task(site, "sometimes-stateless", statelessExecution=True))
    assert run(api, "sometimes-stateless") == {"visits": 1, "stored": 1}
    assert run(api, "sometimes-stateless") == {"visits": 1, "stored": 1}
    api.post("/api/tasks", json=visits_task(site, "sometimes-stateless"))
    assert run(api, "sometimes-stateless") == {"visits": 2, "stored": 2}


def test_tasks_do_not_share_state(api: httpx.Client, site: str) -> None:
    api.post("/api/tasks", json=visits_task(site, "first-counter"))
    api.post("/api/tasks", json=visits_task(site, "second-counter"))
    assert run(api, "first-counter") == {"visits": 1, "stored": 1}
    assert run(api, "first-counter") == {"visits": 2, "stored": 2}
    assert run(api, "second-counter") == {"visits": 1, "stored": 1}


def test_rotated_identity_reaches_the_page(api: httpx.Client, site: str) -> None:
    task = {
        "id": "rotating",
        "name": "Who am I",
        "url": f"{site}/form",
        "rotateUserAgents": True,
        "rotateViewport": True,
        "disableRecording": True,
        "extractionScript": "return {ua: navigator.userAgent,"
        " size: [window.innerWidth, window.innerHeight]}",
    }
    api.post("/api/tasks", json=task)
    data = run(api, "rotating")
    assert data["ua"] in {entry.user_agent for entry in USER_AGENTS}
    assert tuple(data["size"]) in VIEWPORTS


def test_a_saved_state_playwright_refuses_is_replaced(
    api: httpx.Client, site: str, stack: tuple[Stack, httpx.Client]
) -> None:
    api.post("/api/tasks", json=visits_task(site, "bad-state"))
    with psycopg.connect(stack[0].env["DATABASE_URL"]) as conn:
        conn.execute(
            "INSERT INTO task_browser_state (task_id, state) VALUES (%s, %s::jsonb)",
            ("bad-state", '{"cookies": "not a list"}'),
        )
    assert run(api, "bad-state") == {"visits": 1, "stored": 1}
    assert run(api, "bad-state") == {"visits": 2, "stored": 2}
