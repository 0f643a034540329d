"""A task's JSON view, versions and run form in the console: saved through the API's own
paths (a masked secret keeps its stored value), refusals shown on the page with what was
typed, and one walk through all three in Chromium, checked with axe."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.console_browser import SIGN_IN, SharedChromium, accessible, console_page
from tests.integration.pages import add_item
from tests.integration.stack import API_KEY, Stack, fetch_rows, wait_until

SECRET = "s3cret-value-never-shown"


def _task(api: httpx.Client, task_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "id": task_id,
        "name": f"Extras {task_id}",
        "url": "https://example.com/",
        "actions": [{"type": "wait", "value": "1"}],
        "variables": {"password": {"type": "secret", "value": SECRET}},
        **fields,
    }
    answer = api.post("/api/tasks", json=body)
    assert answer.status_code == 200, answer.text
    saved: dict[str, Any] = answer.json()
    return saved


def _row(stack: tuple[Stack, httpx.Client], task_id: str) -> dict[str, Any]:
    rows = fetch_rows(
        stack[0].env["DATABASE_URL"], "SELECT body FROM tasks WHERE id = %s", (task_id,)
    )
    body: dict[str, Any] = rows[0][0]
    return body


def _textarea(page: str) -> str:
    found = re.search(r'<textarea id="task-json"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    assert found is not None, page
    return html.unescape(found.group(1))


def test_json_view_round_trips_and_refuses_bad_json(
    stack: tuple[Stack, httpx.Client], api: httpx.Client, browser_like: httpx.Client
) -> None:
    task_id = "console-extras-json"
    _task(api, task_id)
    url = f"/console/tasks/{task_id}/json"
    before = _row(stack, task_id)
    page = browser_like.get(url)
    assert page.status_code == 200 and SECRET not in page.text
    text = _textarea(page.text)
    assert json.loads(text) == api.get(f"/api/tasks/{task_id}").json()

    refused = browser_like.post(url, data={"json": text})
    assert refused.status_code == 403 and refused.json()["error"] == "CSRF_TOKEN_MISSING"

    token = browser_like.cookies["figranium_csrf"]
    saved = browser_like.post(url, data={"csrf_token": token, "json": text})
    assert saved.status_code == 303 and saved.headers["location"] == url
    assert _row(stack, task_id) == before  # the secret included

    bad = '{"name": "half'
    broken = browser_like.post(url, data={"csrf_token": token, "json": bad})
    assert broken.status_code == 400 and 'role="alert"' in broken.text
    assert "not valid JSON" in broken.text and _textarea(broken.text) == bad
    invalid = json.dumps({**json.loads(text), "actions": [{"type": "wait"}, {"type": "end"}]})
    refused_task = browser_like.post(url, data={"csrf_token": token, "json": invalid})
    assert refused_task.status_code == 400 and "Action 1:" in refused_task.text
    empty = browser_like.post(url, data={"csrf_token": token, "json": " "})
    assert empty.status_code == 400
    assert _row(stack, task_id) == before

    changed = json.dumps({**json.loads(text), "name": "Renamed in JSON", "id": "elsewhere"})
    assert browser_like.post(url, data={"csrf_token": token, "json": changed}).status_code == 303
    after = _row(stack, task_id)
    assert after["name"] == "Renamed in JSON"
    assert after["variables"]["password"]["value"] == SECRET
    assert api.get("/api/tasks/elsewhere").status_code == 404
    assert browser_like.get("/console/tasks/no-such-task/json").status_code == 404


def test_versions_preview_and_restore(
    stack: tuple[Stack, httpx.Client], api: httpx.Client, browser_like: httpx.Client
) -> None:
    task_id = "console-extras-versions"
    _task(api, task_id)
    first = _row(stack, task_id)
    patched = api.patch(f"/api/tasks/{task_id}", json={"url": "https://example.org/new"})
    assert patched.status_code == 200
    versions = api.get(f"/api/tasks/{task_id}/versions").json()["versions"]
    version_id = versions[0]["id"]
    base = f"/console/tasks/{task_id}/versions"

    listing = browser_like.get(base)
    assert listing.status_code == 200 and f"{base}/{version_id}" in listing.text
    preview = browser_like.get(f"{base}/{version_id}")
    assert preview.status_code == 200 and SECRET not in preview.text
    assert "https://example.com/" in preview.text and "url: differs" in preview.text
    assert "********" in preview.text

    rollback = f"{base}/{version_id}/rollback"
    assert browser_like.post(rollback).status_code == 403
    token = browser_like.cookies["figranium_csrf"]
    restored = browser_like.post(rollback, data={"csrf_token": token})
    assert restored.status_code == 303
    assert restored.headers["location"] == f"/console/tasks/{task_id}"
    now = _row(stack, task_id)
    assert now["url"] == "https://example.com/" and now["variables"] == first["variables"]

    assert browser_like.get(f"{base}/ver_0").status_code == 404
    missing = browser_like.post(f"{base}/ver_0/rollback", data={"csrf_token": token})
    assert missing.status_code == 404 and missing.json()["error"] == "VERSION_NOT_FOUND"


def test_run_form_refuses_bad_variables(api: httpx.Client, browser_like: httpx.Client) -> None:
    task_id = "console-extras-run-refusals"
    _task(
        api,
        task_id,
        variables={
            "count": {"type": "number", "value": 2},
            "flag": {"type": "boolean", "value": True},
            "password": {"type": "secret", "value": SECRET},
        },
    )
    url = f"/console/tasks/{task_id}/run"
    form = browser_like.get(url)
    assert form.status_code == 200 and SECRET not in form.text
    assert 'type="number"' in form.text and 'type="password"' in form.text
    assert 'type="checkbox" checked' in form.text
    assert browser_like.post(url, data={"var:count": "3"}).status_code == 403

    token = browser_like.cookies["figranium_csrf"]
    bad_number = browser_like.post(url, data={"csrf_token": token, "var:count": "three"})
    assert bad_number.status_code == 400 and "not a number" in bad_number.text
    bad_line = browser_like.post(
        url, data={"csrf_token": token, "var:count": "3", "extra": "q=ok\nno equals sign"}
    )
    assert bad_line.status_code == 400 and "extra line 2" in bad_line.text
    assert "no equals sign" in bad_line.text  # what was typed is kept
    assert browser_like.get("/console/tasks/no-such-task/run").status_code == 404


def test_a_person_edits_json_restores_a_version_and_runs_a_task(
    stack: tuple[Stack, httpx.Client], api: httpx.Client, site: str, chromium: SharedChromium
) -> None:
    """In Chromium: rename a task in its JSON view (its secret kept), preview the version
    that made and restore it, then run the task with variables from the form and land
    on the execution's page."""
    task_id = "console-extras-walk"
    _task(
        api,
        task_id,
        url=f"{site}/form",
        actions=[*add_item("{$fruit}")],
        variables={
            "fruit": {"type": "string", "value": "apple"},
            "pause": {"type": "number", "value": 1},
            "password": {"type": "secret", "value": SECRET},
        },
    )
    original = _row(stack, task_id)
    base = str(api.base_url)
    axe = Axe()
    with console_page(chromium, viewport={"width": 390, "height": 844}) as (page, violations):
        page.goto(base + SIGN_IN)
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()

        page.goto(f"{base}/console/tasks/{task_id}/json")
        box = page.get_by_label("Task as JSON")
        shown = json.loads(box.input_value())
        assert shown["variables"]["password"]["value"] == "********"
        accessible(page, axe)
        box.fill(json.dumps({**shown, "name": "Walk renamed"}, indent=2))
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", name="“Walk renamed” as JSON")).to_be_visible()
        assert _row(stack, task_id)["variables"] == original["variables"]

        page.get_by_role("link", name="Versions", exact=True).click()
        table = page.get_by_role("table", name=re.compile("Earlier states"))
        accessible(page, axe)
        table.get_by_role("link", name=re.compile("Preview")).first.click()
        expect(page.get_by_text("name: differs")).to_be_visible()
        accessible(page, axe)
        page.get_by_role("button", name="Restore this version").click()
        expect(page).to_have_url(f"{base}/console/tasks/{task_id}")
        assert _row(stack, task_id)["name"] == original["name"]

        page.goto(f"{base}/console/tasks/{task_id}/run")
        expect(page.get_by_label("password (secret)")).to_have_value("")
        accessible(page, axe)
        page.get_by_label("fruit").fill("mango")
        page.get_by_label("pause (number)").fill("2")
        page.get_by_label("More variables").fill("note=from the console")
        page.get_by_role("button", name="Run").click()
        expect(page).to_have_url(re.compile(re.escape(base) + r"/console/executions/[^/]+$"))
        execution_id = page.url.rsplit("/", 1)[1]
        assert not violations

    def finished() -> dict[str, Any] | None:
        execution = api.get(f"/api/executions/{execution_id}").json()["execution"]
        return execution if execution.get("outcome") else None

    execution = wait_until(finished, 60, "the console's run to finish")
    assert execution["outcome"] == "success", execution
    rows = fetch_rows(
        stack[0].env["DATABASE_URL"],
        "SELECT variables FROM executions WHERE id = %s",
        (execution_id,),
    )
    assert rows[0][0] == {"fruit": "mango", "pause": 2, "note": "from the console"}
