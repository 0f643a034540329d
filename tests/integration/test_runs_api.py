"""Asynchronous and ad-hoc runs, and stopping runs."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integration.stack import Stack, wait_until
from tests.integration.test_bad_input import assert_error
from tests.integration.test_resilience import run_in_background


def _poll(api: httpx.Client, url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution: dict[str, Any] = api.get(url).json()["execution"]
        if execution["phase"] == "finished":
            return execution
        time.sleep(0.3)
    raise AssertionError(f"{url} did not finish")


def test_async_run_answers_202_and_can_be_polled(api: httpx.Client, site: str) -> None:
    api.post(
        "/api/tasks",
        json={"id": "later", "url": f"{site}/form", "extractionScript": "return document.title"},
    )
    for kwargs in ({"json": {"async": True}}, {"json": {}, "headers": {"Prefer": "respond-async"}}):
        response = api.post("/api/tasks/later/api", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"
        assert response.headers["Location"] == f"/api/executions/{body['executionId']}"
        execution = _poll(api, response.headers["Location"])
        assert execution["result"]["data"] == "Form"


def test_ad_hoc_agent_and_scrape_runs(api: httpx.Client, site: str) -> None:
    task = {
        "url": f"{site}/scripted",
        "extractionScript": "return document.querySelector('#s').textContent",
    }
    agent = api.post("/agent", json=task)
    assert agent.status_code == 200, agent.text
    assert agent.json()["data"] == "scripted"
    scrape = api.post("/scrape", json=task)
    assert scrape.status_code == 200, scrape.text
    assert scrape.json()["data"] == "static"
    detail = api.get(f"/api/executions/{scrape.json()['executionId']}").json()["execution"]
    assert detail["mode"] == "scrape" and detail["path"] == "/scrape"
    assert_error(api.post("/agent", json={"actions": [{"type": "warp"}]}), 400, "INVALID_BODY")
    assert_error(api.post("/headful", json=task), 503, "HEADFUL_UNAVAILABLE")


def test_stop_a_running_execution(api: httpx.Client, site: str) -> None:
    api.post(
        "/api/tasks",
        json={"id": "long", "url": f"{site}/form", "actions": [{"type": "wait", "value": 30}]},
    )
    thread, answer = run_in_background(api, "long")
    wait_until(
        lambda: any(
            e["taskId"] == "long" and e["phase"] == "running"
            for e in api.get("/api/executions").json()["executions"]
        ),
        30,
        "the run to start",
    )
    running = next(
        e for e in api.get("/api/executions").json()["executions"] if e["taskId"] == "long"
    )
    started = time.monotonic()
    stop = api.post("/api/executions/stop", json={"runId": running["id"]})
    assert stop.status_code == 200 and stop.json()["success"] is True
    thread.join(30)
    assert time.monotonic() - started < 15
    assert answer["status"] == 200
    assert answer["body"]["outcome"] == "stopped"
    detail = api.get(f"/api/executions/{running['id']}").json()["execution"]
    assert detail["outcome"] == "stopped" and detail["phase"] == "finished"


@pytest.mark.stack
def test_stop_a_queued_execution_before_any_runner_takes_it(isolated: Stack) -> None:
    _, client = isolated.start_gateway()
    client.post("/api/tasks", json={"id": "queued", "actions": [{"type": "wait", "value": 1}]})
    queued = client.post("/api/tasks/queued/api", json={"async": True}).json()["executionId"]
    stop = client.post("/api/executions/stop", json={"runId": queued})
    assert stop.json() == {"success": True, "runId": queued, "phase": "finished"}
    detail = client.get(f"/api/executions/{queued}").json()["execution"]
    assert detail["outcome"] == "stopped"
    runner = isolated.start_runner()
    runner.wait_for_log("run.skipped_stopped", timeout=30)
    assert "run.started" not in runner.log_text()


def test_stop_errors(api: httpx.Client) -> None:
    assert_error(api.post("/api/executions/stop", json={}), 400, "MISSING_RUN_ID")
    assert_error(
        api.post("/api/executions/stop", json={"runId": "exec_nope"}), 404, "EXECUTION_NOT_FOUND"
    )
