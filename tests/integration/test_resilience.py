"""Failures of the infrastructure: database down, runners killed, no runner at all."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from tests.integration.stack import Stack, result_rows, wait_until

pytestmark = pytest.mark.stack  # every test here starts services of its own

SLOW_TASK: dict[str, Any] = {
    "id": "slow",
    "name": "slow",
    "actions": [{"type": "wait", "value": 6}],
    "extractionScript": "return 'survived'",
}


def test_health_follows_postgres(tmp_path: Path, nats_server: Any) -> None:
    database = LocalPostgres(tmp_path / "pg", free_port(), fast=True)
    with database:
        stack = Stack(tmp_path, nats_server, database.url)
        try:
            _, client = stack.start_gateway()
            assert client.get("/api/health").status_code == 200

            database.stop()
            stopped_at = time.monotonic()
            response = client.get("/api/health")
            assert time.monotonic() - stopped_at < 5
            assert response.status_code == 503
            body = response.json()
            # Figranium's words, never the driver's text (it names hosts, ports, users).
            assert set(body) == {"status", "uptime", "storage", "version", "storage_error"}
            assert body["status"] == "degraded"
            assert body["storage"] == "postgres"
            assert body["storage_error"] == "Database unreachable"
            unavailable = client.get("/api/tasks")
            assert unavailable.status_code == 503
            assert unavailable.json()["error"] == "STORAGE_UNAVAILABLE"

            database.start()
            database.wait_ready()
            wait_until(
                lambda: client.get("/api/health").status_code == 200, 20, "health to recover"
            )
            assert "storage_error" not in client.get("/api/health").json()
            assert client.get("/api/tasks").status_code == 200
        finally:
            stack.close()


def run_in_background(
    client: httpx.Client, task_id: str
) -> tuple[threading.Thread, dict[str, Any]]:
    answer: dict[str, Any] = {}

    def call() -> None:
        response = client.post(f"/api/tasks/{task_id}/api", json={})
        answer["status"] = response.status_code
        answer["body"] = response.json()

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, answer


def _execution(client: httpx.Client) -> dict[str, Any] | None:
    executions = client.get("/api/executions").json()["executions"]
    return executions[0] if executions else None


def _running_attempt(client: httpx.Client) -> int | None:
    execution = _execution(client)
    if execution is None or execution["phase"] != "running":
        return None
    return int(execution["attempts"])


def _finished_once(
    stack: Stack, client: httpx.Client, answer: dict[str, Any], outcome: str
) -> dict[str, Any]:
    """The answered execution is finished with ``outcome`` and has exactly one result row."""
    execution_id = answer["body"]["executionId"]
    detail: dict[str, Any] = client.get(f"/api/executions/{execution_id}").json()["execution"]
    assert detail["phase"] == "finished"
    assert detail["outcome"] == outcome
    assert result_rows(stack.env["DATABASE_URL"], execution_id) == 1
    return detail


def test_killed_runner_loses_nothing(isolated: Stack) -> None:
    _, client = isolated.start_gateway()
    first = isolated.start_runner()
    assert client.post("/api/tasks", json=SLOW_TASK).status_code == 200
    thread, answer = run_in_background(client, "slow")

    wait_until(
        lambda: (e := _execution(client)) is not None and e["phase"] == "running",
        30,
        "the run to start",
    )
    first.kill()
    isolated.start_runner()
    thread.join(90)

    assert answer["status"] == 200, answer
    assert answer["body"]["data"] == "survived"
    detail = _finished_once(isolated, client, answer, "success")
    assert detail["attempts"] == 2


def test_run_that_keeps_killing_runners_is_marked_crashed(isolated: Stack) -> None:
    isolated.env["RUN_MAX_DELIVER"] = "2"
    _, client = isolated.start_gateway()
    assert (
        client.post(
            "/api/tasks", json={**SLOW_TASK, "actions": [{"type": "wait", "value": 60}]}
        ).status_code
        == 200
    )
    thread, answer = run_in_background(client, "slow")
    for attempt in (1, 2):
        runner = isolated.start_runner()
        wait_until(lambda n=attempt: _running_attempt(client) == n, 30, f"attempt {attempt}")
        runner.kill()
    # JetStream notices the exhausted deliveries when a runner asks for work again.
    isolated.start_runner()
    thread.join(60)
    assert answer["status"] == 500, answer
    assert answer["body"]["error"] == "RUN_CRASHED"
    _finished_once(isolated, client, answer, "crashed")


def test_no_runner_answers_504_and_the_run_stays_visible(isolated: Stack) -> None:
    _, client = isolated.start_gateway(RUN_TIMEOUT_SECONDS="2")
    client.post("/api/tasks", json=SLOW_TASK)
    started = time.monotonic()
    response = client.post("/api/tasks/slow/api", json={})
    assert response.status_code == 504
    assert time.monotonic() - started < 15
    body = response.json()
    assert body["error"] == "RUN_TIMEOUT"
    listed = client.get("/api/executions").json()["executions"]
    assert [e["id"] for e in listed] == [body["executionId"]]
    assert listed[0]["phase"] == "queued"

    # A runner that turns up later still runs it.
    isolated.start_runner()
    wait_until(
        lambda: (
            client.get(f"/api/executions/{body['executionId']}").json()["execution"]["phase"]
            == "finished"
        ),
        60,
        "the queued run to finish",
    )


def test_runner_times_out_a_stuck_run(isolated: Stack) -> None:
    _, client = isolated.start_gateway(RUN_TIMEOUT_SECONDS="3")
    isolated.start_runner()
    client.post("/api/tasks", json=SLOW_TASK)
    response = client.post("/api/tasks/slow/api", json={})
    assert response.status_code == 422
    assert "within 3 s" in response.json()["details"]


def test_scheduler_starts_and_stops_cleanly(isolated: Stack) -> None:
    scheduler = isolated.start("scheduler")
    scheduler.wait_for_log("scheduler.ready", timeout=60)
    assert scheduler.stop(signal.SIGTERM, timeout=15) == 0
    assert "scheduler.stopped" in scheduler.log_text()


def test_runner_drains_on_sigterm(isolated: Stack) -> None:
    _, client = isolated.start_gateway()
    runner = isolated.start_runner()
    # Longer than the 2 s a runner waits before it announces the start.
    client.post("/api/tasks", json={**SLOW_TASK, "actions": [{"type": "wait", "value": 4}]})
    thread, answer = run_in_background(client, "slow")
    wait_until(
        lambda: (e := _execution(client)) is not None and e["phase"] == "running",
        30,
        "the run to start",
    )
    assert runner.stop(signal.SIGTERM, timeout=30) == 0
    thread.join(30)
    assert answer["status"] == 200
    assert answer["body"]["data"] == "survived"
