"""Run variables as Figranium's clients send them: plain values, typed declarations, and
``taskVariables``, on saved-task runs and on ad-hoc /agent and /scrape runs."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

ECHO = "return ['{$q}', '{$n}', '{$o}'].join('|')"


@pytest.fixture
def echo_task(api: httpx.Client, site: str) -> str:
    task_id = f"vars_{uuid.uuid4().hex[:8]}"
    task = {
        "id": task_id,
        "url": f"{site}/form",
        "mode": "scrape",
        "variables": {"q": {"type": "string", "value": "default"}},
        "extractionScript": ECHO,
    }
    assert api.post("/api/tasks", json=task).status_code == 200
    return task_id


def _data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.parametrize("path", ["/api/tasks/{id}/api", "/tasks/{id}/api"])
def test_saved_runs_take_plain_and_typed_variables(
    api: httpx.Client, echo_task: str, path: str
) -> None:
    url = path.format(id=echo_task)
    assert _data(api.post(url, json={})) == "default||"
    plain = {"variables": {"q": "plain", "n": 3, "o": {"type": "car", "wheels": 4}}}
    assert _data(api.post(url, json=plain)) == 'plain|3|{"type": "car", "wheels": 4}'
    typed = {"variables": {"q": {"type": "string", "value": "typed"}, "n": 7}}
    assert _data(api.post(url, json=typed)) == "typed|7|"
    alias = {"taskVariables": {"q": "alias"}}
    assert _data(api.post(url, json=alias)) == "alias||"
    both = {"variables": {"q": "x", "n": 1}, "taskVariables": {"q": "wins"}}
    assert _data(api.post(url, json=both)) == "wins|1|"


def test_a_run_declared_secret_is_masked_like_a_task_declared_one(
    api: httpx.Client, echo_task: str
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    body = {"variables": {"n": {"type": "secret", "value": secret}}}
    run = api.post(f"/api/tasks/{echo_task}/api", json=body)
    assert run.status_code == 200, run.text
    detail = api.get(f"/api/executions/{run.json()['executionId']}")
    assert detail.status_code == 200 and secret not in detail.text
    execution = detail.json()["execution"]
    assert execution["taskSnapshot"]["variables"]["n"]["type"] == "secret"


@pytest.mark.parametrize("mode", ["agent", "scrape"])
def test_ad_hoc_runs_take_plain_and_typed_variables(
    api: httpx.Client, site: str, mode: str
) -> None:
    task = {"url": f"{site}/form", "extractionScript": ECHO}
    plain = {**task, "variables": {"q": "plain", "n": 2}}
    assert _data(api.post(f"/{mode}", json=plain)) == "plain|2|"
    typed = {**task, "variables": {"q": {"type": "string", "value": "typed"}}}
    assert _data(api.post(f"/{mode}", json=typed)) == "typed||"
    alias = {**task, "variables": {"q": "x"}, "taskVariables": {"q": "alias", "o": [1]}}
    assert _data(api.post(f"/{mode}", json=alias)) == "alias||[1]"


def test_variables_that_are_not_an_object_are_refused(api: httpx.Client, site: str) -> None:
    task = {"url": f"{site}/form", "taskVariables": ["q"]}
    answer = api.post("/scrape", json=task)
    assert answer.status_code == 400 and answer.json()["error"] == "INVALID_BODY"
    assert answer.json()["details"].startswith("taskVariables")
