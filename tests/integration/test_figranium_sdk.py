"""The official Python client (``figranium-sdk``) against the shared stack.

The SDK sends its key as ``Authorization: Bearer`` by default and calls the routes in
``figranium/_resources.py``; every assertion here is what an SDK user's code relies on,
in the shapes Figranium itself answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from figranium import Figranium, FigraniumError, Schedule

from tests.integration.stack import API_KEY, Stack


@pytest.fixture(scope="module")
def client(stack: tuple[Stack, httpx.Client]) -> Iterator[Figranium]:
    with Figranium(base_url=str(stack[1].base_url), api_key=API_KEY, timeout=120) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def task_id(client: Figranium, site: str) -> str:
    task_id = f"sdk_{uuid.uuid4().hex[:10]}"
    saved = client.tasks.save(
        {
            "id": task_id,
            "name": "SDK form title",
            "url": f"{site}/form",
            "mode": "agent",
            "actions": [],
            "extractionScript": "return document.title",
        }
    )
    assert saved["id"] == task_id
    assert saved["extractionScript"] == "return document.title"
    return task_id


@pytest.fixture(scope="module")
def run(client: Figranium, task_id: str) -> dict[str, Any]:
    result: dict[str, Any] = client.run_task(task_id, {"variables": {}})
    return result


def test_health_and_auth(client: Figranium, stack: tuple[Stack, httpx.Client]) -> None:
    assert client.health.check()["status"] == "ok"
    with (
        Figranium(base_url=str(stack[1].base_url), api_key="wrong") as wrong,
        pytest.raises(FigraniumError) as refused,
    ):
        wrong.tasks.list()
    assert refused.value.status == 401
    assert refused.value.code == "UNAUTHORIZED"


def test_save_and_list_tasks(client: Figranium, task_id: str) -> None:
    tasks = client.tasks.list()
    assert isinstance(tasks, list)
    assert task_id in [task["id"] for task in tasks]


def test_list_summaries(client: Figranium, task_id: str) -> None:
    # The SDK's own quick start: `figranium.tasks.list_summaries()["tasks"]`.
    summaries = client.tasks.list_summaries()
    assert isinstance(summaries, dict), f"expected {{'tasks': [...]}}, got {type(summaries)}"
    assert {"id": task_id, "name": "SDK form title"} in summaries["tasks"]


def test_unknown_task_is_a_figranium_error(client: Figranium) -> None:
    with pytest.raises(FigraniumError) as missing:
        client.run_task("no-such-task")
    assert missing.value.status == 404
    assert missing.value.code == "TASK_NOT_FOUND"
    assert missing.value.details


def test_run_and_read_the_execution(client: Figranium, task_id: str, run: dict[str, Any]) -> None:
    assert run["data"] == "Form"
    assert run["outcome"] == "success"
    assert run["final_url"].endswith("/form")
    assert isinstance(run["logs"], list)
    execution_id = run["executionId"]

    execution = client.executions.get(execution_id)["execution"]
    assert execution["id"] == execution_id
    assert execution["taskId"] == task_id
    assert execution["taskName"] == "SDK form title"
    assert execution["outcome"] == "success"
    assert execution["result"]["data"] == "Form"
    assert execution["taskSnapshot"]["id"] == task_id

    listed = client.executions.list()["executions"]  # /api/executions/list
    assert execution_id in [entry["id"] for entry in listed]
    assert client.executions.list(api_key_route=False)["executions"]  # /api/executions


def test_captures_of_the_run(
    client: Figranium, run: dict[str, Any], stack: tuple[Stack, httpx.Client]
) -> None:
    captures = client.captures.list(run_id=run["executionId"])["captures"]
    screenshots = [c for c in captures if c["type"] == "screenshot"]
    assert screenshots, captures
    for capture in captures:
        assert set(capture) >= {"name", "url", "size", "modified", "type"}
        assert capture["name"].startswith(f"{run['executionId']}_")
        # Figranium answers `modified` as epoch milliseconds (fs mtimeMs); the SDK types it int.
        assert isinstance(capture["modified"], int | float), capture["modified"]
    shot = stack[1].get(screenshots[0]["url"])
    assert shot.status_code == 200
    assert shot.headers["content-type"] == "image/png"
    assert "screenshots" in client.captures.screenshots()


def test_versions_and_rollback(client: Figranium, task_id: str, site: str) -> None:
    task = client.tasks.list()
    current = next(t for t in task if t["id"] == task_id)
    client.tasks.save({**current, "name": "SDK renamed"}, create_version=True)

    versions = client.tasks.versions(task_id)["versions"]
    assert versions, "saving with version=true keeps the previous state"
    newest = versions[0]
    assert set(newest) >= {"id", "timestamp", "name", "mode"}
    assert newest["id"].startswith("ver_")
    assert newest["name"] == "SDK form title"

    one = client.tasks.version(task_id, newest["id"])
    assert one["snapshot"]["name"] == "SDK form title"
    assert one["metadata"]["id"] == newest["id"]

    restored = client.tasks.rollback(task_id, newest["id"])
    assert restored["id"] == task_id
    assert restored["name"] == "SDK form title"
    assert restored["url"] == f"{site}/form"

    client.tasks.clear_versions(task_id)
    assert client.tasks.versions(task_id)["versions"] == []


def test_schedules(client: Figranium, task_id: str) -> None:
    schedule: Schedule = {"enabled": False, "frequency": "daily", "hour": 9, "minute": 30}
    described = client.schedules.describe(task_id, schedule)
    assert described["valid"] is True
    assert described["cron"] == "30 9 * * *"

    saved = client.schedules.set(task_id, schedule)
    assert saved["schedule"]["cron"] == "30 9 * * *"
    listed = client.schedules.list()["schedules"]
    assert task_id in [entry["taskId"] for entry in listed]
    status = client.schedules.status(task_id)
    assert status["cron"] == "30 9 * * *"
    assert status["isValid"] is True

    removed = client.schedules.delete(task_id)
    assert removed["success"] is True
    assert task_id not in [entry["taskId"] for entry in client.schedules.list()["schedules"]]
