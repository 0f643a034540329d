"""Secret variables and password fields: masked wherever a task or a run is shown, while
runs still get the real values and saving a task back keeps them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from figranium_common.redact import SECRET_MASK
from tests.integration.stack import API_KEY, wait_until
from tests.integration.test_stream import Event, SseReader
from tests.integration.test_webhooks import Receiver


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


REVERSED_Q = "return document.querySelector('#q').value.split('').reverse().join('')"


def _secret_task(site: str, secret: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"secret-{uuid.uuid4().hex[:8]}",
        "name": "v1",
        "url": f"{site}/form",
        "variables": {
            "token": {"type": "secret", "value": secret},
            "who": {"type": "string", "value": "visible"},
        },
        "actions": [{"type": "type", "selector": "#q", "value": "{$token}"}],
        # Reversed, so what the page got shows without being the secret itself.
        "extractionScript": REVERSED_Q,
        **extra,
    }


def _masked(task: dict[str, Any]) -> None:
    assert task["variables"]["token"] == {"type": "secret", "value": SECRET_MASK}
    assert task["variables"]["who"] == {"type": "string", "value": "visible"}


def test_secrets_are_masked_in_tasks_and_versions_and_kept_on_save(
    api: httpx.Client, site: str
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    task = _secret_task(site, secret)
    task_id = task["id"]
    saved = api.post("/api/tasks", json=task)
    assert saved.status_code == 200, saved.text
    one = api.get(f"/api/tasks/{task_id}")
    listed = api.get("/api/tasks")
    for response in (saved, one, listed):
        assert response.status_code == 200 and secret not in response.text
    _masked(saved.json())
    _masked(one.json())
    _masked(next(t for t in listed.json() if t["id"] == task_id))

    # Read, change, write back: the mask sent back never replaces the secret.
    body = {**one.json(), "name": "v2"}
    resaved = api.post("/api/tasks", params={"version": "true"}, json=body)
    assert resaved.status_code == 200 and secret not in resaved.text
    patched = api.patch(
        f"/api/tasks/{task_id}", json={"name": "v3", "variables": one.json()["variables"]}
    )
    assert patched.status_code == 200 and secret not in patched.text
    _masked(patched.json()["task"])
    touched = api.post(f"/api/tasks/{task_id}/touch")
    assert touched.status_code == 200 and secret not in touched.text
    # The stored value is still the secret: a run types it.
    run = api.post(f"/api/tasks/{task_id}/api", json={})
    assert run.status_code == 200, run.text
    assert run.json()["data"] == secret[::-1]
    assert secret not in run.text

    versions = api.get(f"/api/tasks/{task_id}/versions").json()["versions"]
    assert len(versions) == 2
    for version in versions:
        detail = api.get(f"/api/tasks/{task_id}/versions/{version['id']}")
        assert detail.status_code == 200 and secret not in detail.text
        _masked(detail.json()["snapshot"])
    rolled = api.post(f"/api/tasks/{task_id}/rollback", json={"versionId": versions[-1]["id"]})
    assert rolled.status_code == 200 and secret not in rolled.text

    # A new value replaces it.
    changed = {**one.json(), "variables": {"token": {"type": "secret", "value": "other-1"}}}
    assert api.post("/api/tasks", json=changed).status_code == 200
    run = api.post(f"/api/tasks/{task_id}/api", json={})
    assert run.json()["data"] == "other-1"[::-1]


def test_a_runs_stream_logs_result_webhook_and_execution_never_show_secrets(
    api: httpx.Client, site: str, hook: Receiver
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    given = f"run-{uuid.uuid4().hex}"
    typed = f"pw-{uuid.uuid4().hex}"
    task = _secret_task(
        site,
        secret,
        actions=[
            {"type": "type", "selector": "#q", "value": "{$token}"},
            {"type": "javascript", "value": "document.querySelector('#q').type = 'password'"},
            {"type": "type", "selector": "#q", "value": typed},
        ],
        extractionScript="return [document.querySelector('#q').value, '{$token}']",
    )
    assert api.post("/api/tasks", json=task).status_code == 200
    reader = SseReader(str(api.base_url), headers={"x-api-key": API_KEY})
    assert reader.status == 200
    try:
        run = api.post(
            f"/api/tasks/{task['id']}/api",
            json={"variables": {"token": given}, "webhookUrl": hook.url},
        )
        assert run.status_code == 200, run.text
        execution_id = run.json()["executionId"]

        def finished(event: Event) -> bool:
            return event.kind == "finished" and event.data["executionId"] == execution_id

        events = reader.until(finished)
    finally:
        reader.close()
    lines = [
        str(e.data["line"])
        for e in events
        if e.kind == "log" and e.data["executionId"] == execution_id
    ]
    assert any(line.startswith(f"Typing into #q: {SECRET_MASK} (") for line in lines), lines
    assert run.json()["data"] == [SECRET_MASK, SECRET_MASK]
    execution = api.get(f"/api/executions/{execution_id}")
    assert execution.status_code == 200
    stored = execution.json()["execution"]
    _masked(stored["taskSnapshot"])
    assert stored["variables"] == {"token": SECRET_MASK}
    assert stored["logs"] == lines
    for value in (secret, given, typed):
        assert all(value not in line for line in lines)
        assert value not in run.text
        assert value not in str(stored["result"])
    wait_until(lambda: bool(hook.requests), 60, "the webhook")
    (_, webhook, _), *_ = hook.requests
    assert json.loads(webhook)["result"]["data"] == [SECRET_MASK, SECRET_MASK]
    for value in (secret, given, typed):
        assert value.encode() not in webhook
    # The task itself holds the typed text as written; its secret variables are masked.
    assert secret not in execution.text and given not in execution.text
