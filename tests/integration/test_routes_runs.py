"""Figranium's run routes this gateway adds: the block test (a runner tries one action),
the live execution list, GET /agent and /scrape, /screenshots/:name and headful stop."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.integration.pages import add_item

COUNT_ITEMS = "return document.querySelectorAll('#items li').length"


def form_task(site: str, *extra: dict[str, Any]) -> dict[str, Any]:
    typed, clicked = add_item("{$item}")
    return {
        "name": "Form",
        "url": f"{site}/form",
        "actions": [
            {**typed, "id": "a1"},
            {**clicked, "id": "a2"},
            {"type": "javascript", "value": COUNT_ITEMS, "id": "a3"},
            *extra,
        ],
    }


def ask_test(api: httpx.Client, task: dict[str, Any], target: str, **variables: Any) -> Any:
    body = {"taskSnapshot": task, "targetActionId": target, "variables": variables}
    response = api.post("/api/tasks/test-action", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_test_action_runs_the_steps_before_it_then_the_action(api: httpx.Client, site: str) -> None:
    answer = ask_test(api, form_task(site), "a3", item="cherry")
    assert answer["actionId"] == "a3" and answer["status"] == "success"
    assert answer["output"] == 3  # apple, banana and the cherry the steps before it added
    assert answer["variables"]["item"] == "cherry"
    assert answer["resolvedInputs"]["value"] == COUNT_ITEMS
    assert answer["screenshotUrl"] is None and answer["timestamp"] > 0
    assert any("#2 click" in line for line in answer["logs"])

    typed = ask_test(api, form_task(site), "a1", item="cherry")
    assert typed["status"] == "success" and typed["resolvedInputs"]["value"] == "cherry"
    # A typed declaration, as the run routes take it, gives its value.
    declared = ask_test(api, form_task(site), "a1", item={"type": "string", "value": "kiwi"})
    assert declared["status"] == "success" and declared["resolvedInputs"]["value"] == "kiwi"

    missing = {"type": "click", "selector": "#missing", "timeout": 300, "id": "a4"}
    failed = ask_test(api, form_task(site, missing), "a4", item="x")
    assert failed["status"] == "error" and "Timeout 300ms" in failed["errorMessage"]
    assert failed["variables"]["error"]["type"] == "click"

    after_failure = form_task(
        site, missing, {"type": "javascript", "value": "return 1", "id": "a5"}
    )
    not_reached = ask_test(api, after_failure, "a5", item="x")
    assert not_reached["status"] == "not_reached"
    assert "action 4 (click) failed" in not_reached["errorMessage"]


def test_test_action_applies_the_runs_url_policy(api: httpx.Client) -> None:
    task = {
        "url": "http://169.254.169.254/latest/meta-data/",
        "actions": [{"type": "javascript", "value": "return 1", "id": "only"}],
    }
    answer = ask_test(api, task, "only")
    assert answer["status"] == "not_reached" and "169.254.169.254" in answer["errorMessage"]


def test_test_action_refuses_what_it_cannot_test(api: httpx.Client, site: str) -> None:
    cases = [
        ({"targetActionId": "a1"}, "INVALID_TASK_SNAPSHOT"),
        ({"taskSnapshot": form_task(site), "targetActionId": "nope"}, "INVALID_TARGET_ACTION"),
        ({"taskSnapshot": form_task(site)}, "INVALID_TARGET_ACTION"),
    ]
    looped = form_task(site)
    looped["actions"] = [
        {"type": "repeat", "value": "2", "id": "r"},
        {"type": "end", "id": "e"},
    ]
    cases.append(({"taskSnapshot": looped, "targetActionId": "r"}, "INVALID_TARGET_ACTION"))
    for body, code in cases:
        response = api.post("/api/tasks/test-action", json=body)
        assert response.status_code == 400 and response.json()["error"] == code, response.text


def _events(lines: Any) -> Any:
    """The JSON data of each SSE message, as they come."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


def test_live_lists_execution_changes(api: httpx.Client, site: str) -> None:
    with api.stream("GET", "/api/executions/live") as stream:
        lines = stream.iter_lines()
        assert "event: ready" in [next(lines) for _ in range(3)]
        started = api.post("/agent", json={"url": f"{site}/form", "async": True})
        execution_id = started.json()["executionId"]
        phases = []
        for event in _events(lines):
            if event.get("type") == "upsert" and event["execution"]["id"] == execution_id:
                phases.append(event["execution"]["phase"])
                if event["execution"]["phase"] == "finished":
                    assert event["execution"]["outcome"] == "success"
                    break
        assert phases[0] == "queued" and phases[-1] == "finished"
        assert api.delete(f"/api/executions/{execution_id}").status_code == 200
        deleted = next(e for e in _events(lines) if e.get("type") == "delete")
        assert deleted == {"type": "delete", "id": execution_id}


def test_agent_and_scrape_by_get(api: httpx.Client, site: str) -> None:
    agent = api.get(
        "/agent",
        params={
            "url": f"{site}/form",
            "actions": json.dumps(add_item("{$item}")),
            "variables": json.dumps({"item": {"type": "string", "value": "kiwi"}}),
            "extractionScript": COUNT_ITEMS,
        },
    )
    assert agent.status_code == 200, agent.text
    assert agent.json()["data"] == 3
    scrape = api.get(
        "/scrape", params={"url": f"{site}/scripted", "extractionScript": "return document.title"}
    )
    assert scrape.status_code == 200, scrape.text
    assert scrape.json()["data"] == "Scripted"
    bad = api.get("/agent", params={"url": f"{site}/form", "actions": "[not json"})
    assert bad.status_code == 400 and bad.json()["error"] == "INVALID_QUERY"

    # The run's screenshot, under Figranium's other path too.
    name = agent.json()["screenshot_url"].removeprefix("/captures/")
    screenshot = api.get(f"/screenshots/{name}")
    assert screenshot.status_code == 200
    assert screenshot.content == api.get(f"/captures/{name}").content
    assert screenshot.content.startswith(b"\x89PNG")
    assert api.get("/screenshots/..%2Fsecret").status_code in (400, 404)


def test_headful_stop_without_a_session(api: httpx.Client) -> None:
    for path in ("/api/headful/stop", "/headful/stop"):
        answer = api.post(path)
        assert answer.status_code == 200
        assert answer.json() == {"message": "No active headful session.", "stopped": []}
