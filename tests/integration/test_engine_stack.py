"""The action engine through the gateway: saved-task checks, ``start``, Figranium's format."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.test_bad_input import assert_error


@pytest.mark.parametrize(
    ("actions", "index", "problem"),
    [
        ([{"type": "if", "value": "true"}], 0, "never closed"),
        ([{"type": "else"}], 0, "without an open 'if'"),
        ([{"type": "noop"}, {"type": "end"}], 1, "without an open block"),
        (
            [{"type": "if", "value": "1"}, {"type": "else"}, {"type": "else"}, {"type": "end"}],
            2,
            "second 'else'",
        ),
        ([{"type": "while", "value": "1"}, {"type": "else"}, {"type": "end"}], 1, "'else'"),
    ],
)
def test_unbalanced_blocks_are_refused_on_save(
    api: httpx.Client, actions: list[dict[str, object]], index: int, problem: str
) -> None:
    response = api.post("/api/tasks", json={"id": "unbalanced", "actions": actions})
    assert_error(response, 400, "INVALID_BODY")
    assert response.json()["actionIndex"] == index
    assert problem in response.json()["details"]
    assert f"action {index + 1} " in response.json()["details"]
    assert api.get("/api/tasks/unbalanced").status_code == 404


def test_start_runs_another_saved_task(api: httpx.Client, site: str) -> None:
    api.post(
        "/api/tasks",
        json={
            "id": "child-task",
            "url": f"{site}/form",
            "extractionScript": "return [...document.querySelectorAll('#items li')]"
            ".map(li => li.textContent + '{$mark}')",
        },
    )
    api.post(
        "/api/tasks",
        json={
            "id": "parent-task",
            "url": f"{site}/form",
            "variables": {"mark": {"type": "string", "value": "*"}},
            "actions": [
                {"type": "start", "value": "child-task"},
                {"type": "set", "varName": "child", "value": "{$block.output}"},
            ],
            "extractionScript": "return {$child}",
        },
    )
    run = api.post("/api/tasks/parent-task/api", json={"variables": {"mark": "!"}})
    assert run.status_code == 200, run.text
    assert run.json()["data"] == ["apple!", "banana!"]


# A task as Figranium's documentation and editor write it: every documented field present.
FIGRANIUM_TASK = {
    "id": "task_1767000000000",
    "name": "Search and collect",
    "description": "Adds an item, then collects the list",
    "url": "{SITE}/form",
    "mode": "agent",
    "wait": 0.2,
    "actions": [
        {"id": "act_1", "type": "wait_selector", "selector": "#q", "value": "5", "disabled": False},
        {
            "id": "act_2",
            "type": "type",
            "selector": "#q",
            "value": "{$item}",
            "typeMode": "replace",
        },
        {"id": "act_3", "type": "click", "selector": "#add", "clickType": "single"},
        {
            "id": "act_4",
            "type": "if",
            "conditionVarType": "number",
            "conditionVar": "{$count}",
            "conditionOp": "gt",
            "conditionValue": "1",
        },
        {"id": "act_5", "type": "click", "selector": "#add"},
        {"id": "act_6", "type": "end"},
        {"id": "act_7", "type": "screenshot", "value": "done"},
    ],
    "variables": {
        "item": {"type": "string", "value": "kiwi"},
        "count": {"type": "number", "value": 2},
    },
    "extractionScript": "const items = Array.from(document.querySelectorAll('#items li'))"
    ".map(li => li.textContent.trim());\nreturn { items, url: data.url() };",
    "extractionFormat": "json",
    "includeHtml": False,
    "includeShadowDom": True,
    "rotateUserAgents": False,
    "rotateProxies": False,
    "rotateViewport": False,
    "humanTyping": False,
    "stealth": {
        "allowTypos": False,
        "idleMovements": False,
        "overscroll": False,
        "deadClicks": False,
        "fatigue": False,
        "naturalTyping": False,
        "cursorGlide": False,
        "randomizeClicks": False,
    },
    "disableRecording": True,
    "statelessExecution": False,
    "last_opened": 1767000000000,
}


def test_a_figranium_task_runs_unchanged(api: httpx.Client, site: str) -> None:
    task = json.loads(json.dumps(FIGRANIUM_TASK).replace("{SITE}", site))
    saved = api.post("/api/tasks", json=task)
    assert saved.status_code == 200, saved.text
    assert saved.json()["stealth"] == FIGRANIUM_TASK["stealth"]
    run = api.post(f"/tasks/{task['id']}/api", json={"variables": {"item": "fig"}})
    assert run.status_code == 200, run.text
    assert run.json()["data"] == {
        "items": ["apple", "banana", "fig", "fig"],
        "url": f"{site}/form",
    }


def test_scrape_mode_shows_the_fetched_html_without_running_it(
    api: httpx.Client, site: str
) -> None:
    script = "return [document.title, document.querySelector('#s').textContent, data.url()]"
    for mode, expected in (("scrape", "static"), ("agent", "scripted")):
        api.post(
            "/api/tasks",
            json={
                "id": f"m-{mode}",
                "mode": mode,
                "url": f"{site}/scripted",
                "extractionScript": script,
            },
        )
        run = api.post(f"/api/tasks/m-{mode}/api", json={})
        assert run.status_code == 200, run.text
        assert run.json()["data"] == ["Scripted", expected, f"{site}/scripted"]


def test_captures_are_listed_by_run(api: httpx.Client, site: str) -> None:
    screenshot = [{"type": "screenshot", "label": "mid"}]
    api.post("/api/tasks", json={"id": "listed", "url": f"{site}/form", "actions": screenshot})
    execution_id = api.post("/api/tasks/listed/api", json={}).json()["executionId"]
    listed = api.get("/api/data/captures", params={"runId": execution_id}).json()["captures"]
    kinds = sorted(entry["type"] for entry in listed)
    assert kinds == ["recording", "screenshot", "screenshot"]
    for entry in listed:
        assert entry["name"].startswith(f"{execution_id}_agent_")
        assert entry["url"] == f"/captures/{entry['name']}"
        assert entry["size"] > 0 and entry["modified"]
        assert api.get(entry["url"]).status_code == 200
    shots = api.get("/api/data/screenshots", params={"runId": execution_id}).json()
    assert len(shots["screenshots"]) == 2
    assert_error(api.get("/api/data/captures", params={"runId": "../x"}), 400)


def test_include_html_and_shadow_dom_switch(api: httpx.Client, site: str) -> None:
    script = "return [typeof data.shadowQueryAll, document.title]"
    for include, expected in ((True, "function"), (False, "undefined")):
        api.post(
            "/api/tasks",
            json={
                "id": "html-task",
                "url": f"{site}/form",
                "includeHtml": True,
                "includeShadowDom": include,
                "extractionScript": script,
            },
        )
        body = api.post("/api/tasks/html-task/api", json={}).json()
        assert body["data"] == [expected, "Form"]
        assert '<button id="add"' in body["html"]
