"""Through the whole stack: gateway → NATS JetStream → runner (Chromium) → PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import nats
import psycopg

from figranium_common.nats import RUNS_DEFAULT_SUBJECT
from tests.integration.pages import add_item
from tests.integration.stack import API_KEY, Stack, wait_until

EXTRACT_ITEMS = (
    "return Array.from(document.querySelectorAll('#items li')).map(li => li.textContent)"
)


def form_task(site: str, **extra: object) -> dict[str, object]:
    return {
        "id": "form-task",
        "name": "Add an item",
        "url": f"{site}/form",
        "actions": [*add_item("{$item}"), {"type": "screenshot", "label": "after add"}],
        "variables": {"item": {"type": "string", "value": "cherry"}},
        "extractionScript": EXTRACT_ITEMS,
        "customField": {"kept": True},
        **extra,
    }


def test_saved_task_runs_in_chromium_and_returns_extracted_data(
    api: httpx.Client, site: str
) -> None:
    saved = api.post("/api/tasks", json=form_task(site))
    assert saved.status_code == 200, saved.text
    assert saved.json()["customField"] == {"kept": True}

    run = api.post("/api/tasks/form-task/api", json={"variables": {"item": "damson"}})
    assert run.status_code == 200, run.text
    result = run.json()
    assert result["data"] == ["apple", "banana", "damson"]
    assert result["outcome"] == "success"
    assert result["final_url"] == f"{site}/form"
    assert any("Typing into #q: damson" in line for line in result["logs"])
    assert result["screenshot_url"].startswith("/captures/")

    shot = api.get(result["screenshot_url"])
    assert shot.status_code == 200
    assert shot.headers["content-type"] == "image/png"
    assert shot.content.startswith(b"\x89PNG")
    assert httpx.get(str(api.base_url) + result["screenshot_url"]).status_code == 401

    listed = api.get("/api/executions").json()["executions"]
    entry = next(e for e in listed if e["id"] == result["executionId"])
    assert entry["status"] == 200
    assert entry["taskId"] == "form-task"
    assert entry["source"] == "api"
    assert entry["phase"] == "finished"
    assert "result" not in entry

    detail = api.get(f"/api/executions/{result['executionId']}").json()["execution"]
    assert detail["result"]["data"] == ["apple", "banana", "damson"]
    assert detail["taskSnapshot"]["id"] == "form-task"
    assert detail["logs"] == result["logs"]


def test_python_client_route_and_task_defaults(api: httpx.Client, site: str) -> None:
    api.post("/api/tasks", json=form_task(site, id="defaults-task"))
    run = api.post("/tasks/defaults-task/api", json={})
    assert run.status_code == 200, run.text
    assert run.json()["data"] == ["apple", "banana", "cherry"]


def test_failed_run_answers_422_with_execution_id(api: httpx.Client, site: str) -> None:
    task = form_task(site, id="broken-task", extractionScript="throw new Error('no luck')")
    api.post("/api/tasks", json=task)
    run = api.post("/api/tasks/broken-task/api", json={})
    assert run.status_code == 422
    body = run.json()
    assert body["error"] == "RUN_FAILED"
    assert "no luck" in body["details"]
    assert body["executionId"].startswith("exec_")
    detail = api.get(f"/api/executions/{body['executionId']}").json()["execution"]
    assert detail["outcome"] == "error"
    assert detail["status"] == 422


def test_missing_selector_is_logged_and_the_run_goes_on(api: httpx.Client, site: str) -> None:
    task = form_task(
        site,
        id="missing-selector",
        actions=[{"type": "click", "selector": "#nope", "timeout": 500}],
    )
    api.post("/api/tasks", json=task)
    run = api.post("/api/tasks/missing-selector/api", json={})
    assert run.status_code == 200
    assert run.json()["data"] == ["apple", "banana"]
    assert any("FAILED action click" in line for line in run.json()["logs"])


def test_tasks_list_and_versions(
    api: httpx.Client, site: str, stack: tuple[Stack, httpx.Client]
) -> None:
    api.post("/api/tasks", json=form_task(site, id="versioned", name="v1", description="d"))
    api.post("/api/tasks?version=true", json=form_task(site, id="versioned", name="v2"))
    tasks = {t["id"]: t for t in api.get("/api/tasks").json()}
    assert tasks["versioned"]["name"] == "v2"
    assert "versions" not in tasks["versioned"]
    summaries = {t["id"]: t for t in api.get("/api/tasks/list").json()["tasks"]}
    assert summaries["versioned"] == {"id": "versioned", "name": "v2"}
    generated = api.post("/api/tasks", json={"name": "no id", "url": f"{site}/form"}).json()
    assert generated["id"].startswith("task_")
    with psycopg.connect(stack[0].env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT id, snapshot FROM task_versions WHERE task_id = 'versioned'"
        ).fetchall()
    assert len(rows) == 1
    version_id, snapshot = rows[0]
    assert version_id.startswith("ver_")
    assert snapshot["name"] == "v1" and snapshot["description"] == "d"


def test_body_key_works_with_curls_default_content_type(api: httpx.Client) -> None:
    response = httpx.post(
        str(api.base_url) + "/api/tasks",
        content=json.dumps({"apiKey": API_KEY, "id": "curl-style", "name": "c"}),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "c"


def test_delete_and_clear_executions(api: httpx.Client, site: str) -> None:
    api.post("/api/tasks", json=form_task(site, id="to-delete"))
    first = api.post("/api/tasks/to-delete/api", json={}).json()["executionId"]
    assert api.delete(f"/api/executions/{first}").status_code == 200
    assert api.get(f"/api/executions/{first}").status_code == 404
    api.post("/api/tasks/to-delete/api", json={})
    cleared = api.post("/api/executions/clear")
    assert cleared.status_code == 200
    assert api.get("/api/executions").json()["executions"] == []


def test_status_filter_and_limit(api: httpx.Client, site: str) -> None:
    api.post("/api/tasks", json=form_task(site, id="filtered"))
    for _ in range(3):
        api.post("/api/tasks/filtered/api", json={})
    limited = api.get("/api/executions", params={"limit": 2}).json()["executions"]
    assert len(limited) == 2
    successes = api.get("/api/executions", params={"status": "success"}).json()["executions"]
    assert successes and all(e["outcome"] == "success" for e in successes)


def test_api_key_is_never_needed_for_health(api: httpx.Client) -> None:
    response = httpx.get(str(api.base_url) + "/api/health")
    assert response.status_code == 200
    body = response.json()
    # Figranium's shape, and nothing more for a caller without the key.
    assert set(body) == {"status", "uptime", "storage", "version"}
    assert body["status"] == "ok"
    assert body["storage"] == "postgres"
    assert type(body["uptime"]) is int and body["uptime"] >= 0  # whole seconds
    assert API_KEY not in response.text


def test_a_stored_task_the_runner_cannot_read_fails_clearly(
    api: httpx.Client, stack: tuple[Stack, httpx.Client]
) -> None:
    # Data written by some older release, bypassing today's validation.
    with psycopg.connect(stack[0].env["DATABASE_URL"]) as conn:
        conn.execute(
            "INSERT INTO tasks (id, body) VALUES ('legacy', %s)"
            " ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            (json.dumps({"name": "legacy", "actions": [{"type": "warp"}]}),),
        )
    run = api.post("/api/tasks/legacy/api", json={})
    assert run.status_code == 422
    assert "not valid" in run.json()["details"]


async def _publish_run(nats_url: str, request: dict[str, object]) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(RUNS_DEFAULT_SUBJECT, json.dumps(request).encode())
    finally:
        await nc.close()


def test_a_queued_run_whose_task_no_longer_validates_is_finished_as_failed(
    api: httpx.Client, stack: tuple[Stack, httpx.Client]
) -> None:
    # Queued by an older release, under rules that let its task through: the runner
    # finishes it with an error rather than leave it queued.
    execution_id = "exec_queued_before_a_rule"
    with psycopg.connect(stack[0].env["DATABASE_URL"]) as conn:
        conn.execute(
            "INSERT INTO executions (id, task_id, mode, source, phase, task_snapshot, variables)"
            " VALUES (%s, 'legacy', 'agent', 'api', 'queued', '{}', '{}')",
            (execution_id,),
        )
    request = {"execution_id": execution_id, "task": {"actions": [{"type": "warp"}]}}
    asyncio.run(_publish_run(stack[0].env["NATS_URL"], request))

    def finished() -> dict[str, Any] | None:
        execution: dict[str, Any] = api.get(f"/api/executions/{execution_id}").json()["execution"]
        return execution if execution["phase"] == "finished" else None

    execution = wait_until(finished, 30, "the queued run to finish")
    assert execution["outcome"] == "error"
    assert execution["result"]["error"].startswith("the task is not valid: ")


def test_metrics_stay_off_the_api_port(api: httpx.Client) -> None:
    """Prometheus metrics are on GATEWAY_METRICS_PORT only, never beside the API."""
    response = api.get("/metrics")
    assert response.status_code == 404
    assert "figranium_" not in response.text
