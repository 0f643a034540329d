"""The console's schedules: the list with each schedule's description and next five runs
(the describe endpoint's), the edit form saving through the API's merge and validation,
and a confirmed delete, driven in Chromium and checked with axe."""

from __future__ import annotations

from typing import Any

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.integration.console_browser import SIGN_IN, SharedChromium, accessible, console_page
from tests.integration.stack import API_KEY

LIST = "/console/schedules"


def _task(api: httpx.Client, task_id: str, name: str) -> None:
    answer = api.post("/api/tasks", json={"id": task_id, "name": name, "actions": []})
    assert answer.status_code == 200, answer.text


def _described(api: httpx.Client, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.post(f"/api/schedules/{task_id}/describe", json=body)
    assert answer.status_code == 200 and answer.json()["valid"], answer.text
    described: dict[str, Any] = answer.json()
    return described


def _stored(api: httpx.Client, task_id: str) -> dict[str, Any]:
    answer = api.get(f"/api/schedules/{task_id}/status")
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


def test_forms_need_the_token_and_a_task(api: httpx.Client, browser_like: httpx.Client) -> None:
    _task(api, "console-schedule-form", "Form probe")
    token = browser_like.cookies["figranium_csrf"]
    url = f"{LIST}/console-schedule-form"
    refused = browser_like.post(url, data={"cron": "@daily", "enabled": "on"})
    assert refused.status_code == 403 and refused.json()["error"] == "CSRF_TOKEN_MISSING"
    assert _stored(api, "console-schedule-form")["schedule"] is None

    # Frequency fields (no cron) are resolved as the API resolves them.
    saved = browser_like.post(
        url,
        data={
            "csrf_token": token,
            "enabled": "on",
            "frequency": "weekly",
            "hour": "7",
            "minute": "15",
            "daysOfWeek": ["3", "1"],
            "timezone": "Europe/Berlin",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == LIST
    status = _stored(api, "console-schedule-form")
    assert status["cron"] == "15 7 * * 1,3" and status["schedule"]["frequency"] == "weekly"
    assert status["schedule"]["timezone"] == "Europe/Berlin"
    # A form that leaves the cron empty shows the frequency, not the resolved cron.
    page = browser_like.get(url)
    assert 'id="cron" name="cron" value=""' in page.text
    assert '<option value="weekly" selected>' in page.text

    bad_hour = browser_like.post(
        url, data={"csrf_token": token, "frequency": "daily", "hour": "25", "enabled": "on"}
    )
    assert bad_hour.status_code == 400 and 'role="alert"' in bad_hour.text
    assert (
        "hour" in bad_hour.text and _stored(api, "console-schedule-form")["cron"] == status["cron"]
    )

    # The list's "Schedule a task" form leads to a task's page, schedule or not.
    opened = browser_like.get(LIST, params={"task": "a task/with ?odd id"})
    assert opened.status_code == 303
    assert opened.headers["location"] == f"{LIST}/a%20task%2Fwith%20%3Fodd%20id"

    for path in (f"{LIST}/no-such-task", f"{LIST}/no-such-task/delete"):
        assert browser_like.get(path).status_code == 404
        missing = browser_like.post(path, data={"csrf_token": token, "cron": "@daily"})
        assert missing.status_code == 404 and missing.json()["error"] == "TASK_NOT_FOUND"


def _row(page: Page, name: str) -> Any:
    return page.get_by_role("row").filter(has_text=name)


def test_a_person_edits_a_schedule_in_the_console(
    api: httpx.Client, chromium: SharedChromium
) -> None:
    """See a schedule with its description and next five runs, disable it and change its
    cron, be refused a bad cron (nothing changes), delete it: in Chromium, with axe."""
    base = str(api.base_url)
    task_id, name = "console-schedule-walk", "Schedule walk-through"
    _task(api, task_id, name)
    first = {"cron": "0 9 * * 1-5", "timezone": "America/New_York"}
    assert api.post(f"/api/schedules/{task_id}", json=first).status_code == 200
    expected = _described(api, task_id, first)
    axe = Axe()
    with console_page(chromium, viewport={"width": 1000, "height": 900}) as (page, violations):
        page.goto(base + LIST)
        expect(page).to_have_url(base + SIGN_IN)
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        page.get_by_role("link", name="Schedules", exact=True).click()
        expect(page.get_by_role("heading", name="Schedules")).to_be_visible()
        row = _row(page, name)
        expect(row).to_contain_text(expected["description"])
        expect(row).to_contain_text("Enabled")
        times = row.locator("ol.runs time")
        expect(times).to_have_count(5)
        assert [times.nth(i).get_attribute("datetime") for i in range(5)] == expected["nextRuns"]
        accessible(page, axe)

        page.get_by_role("link", name=f"Edit the schedule of {name}").click()
        expect(page.get_by_role("heading", name=f"Schedule of “{name}”")).to_be_visible()
        expect(page.get_by_label("Cron expression")).to_have_value("0 9 * * 1-5")
        accessible(page, axe)
        page.get_by_label("Enabled").uncheck()
        page.get_by_label("Cron expression").fill("30 6 * * *")
        page.get_by_role("button", name="Save").click()
        expect(page).to_have_url(base + LIST)
        status = _stored(api, task_id)
        assert status["cron"] == "30 6 * * *" and status["schedule"]["enabled"] is False
        assert status["schedule"]["timezone"] == "America/New_York"
        changed = _described(api, task_id, {**first, "cron": "30 6 * * *"})
        expect(_row(page, name)).to_contain_text(changed["description"])
        expect(_row(page, name)).to_contain_text("Paused")
        expect(_row(page, name).locator("ol.runs")).to_have_count(0)

        page.get_by_role("link", name=f"Edit the schedule of {name}").click()
        page.get_by_label("Cron expression").fill("61 * * *")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("alert")).to_contain_text("not a cron expression")
        expect(page.get_by_label("Cron expression")).to_have_value("61 * * *")
        accessible(page, axe)
        assert _stored(api, task_id) == status  # nothing changed

        page.get_by_role("link", name="Delete this schedule").click()
        expect(
            page.get_by_role("heading", name=f"Delete the schedule of “{name}”?")
        ).to_be_visible()
        accessible(page, axe)
        page.get_by_role("button", name="Delete").click()
        expect(page).to_have_url(base + LIST)
        expect(_row(page, name)).to_have_count(0)
        assert _stored(api, task_id)["schedule"] is None
        assert api.get(f"/api/tasks/{task_id}").status_code == 200  # the task stays
    assert not violations, violations
