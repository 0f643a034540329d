"""A whole session in the console, in Chromium, as a person works: sign in, create a task
and write it in the editor, run it and watch its data and screenshot arrive, find the run
among the executions, give the task a schedule, change a setting, sign out. Every page on
the way is checked with axe, and no page reports a Content-Security-Policy violation."""

from __future__ import annotations

import re

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.console_browser import SIGN_IN, SharedChromium, accessible, console_page
from tests.integration.stack import API_KEY

# What the run returns: the items of the local /form page, one row each.
SCRIPT = "return [...document.querySelectorAll('#items li')].map(li => ({item: li.textContent}));"
FINDER = "/api/settings/selector-finder"


def test_a_whole_session_in_the_console(
    api: httpx.Client, site: str, chromium: SharedChromium
) -> None:
    base = str(api.base_url)
    name = "Walk-through: the items of the form page"
    finder_before = api.get(FINDER).json()["selectorFinder"]
    axe = Axe()
    try:
        with console_page(chromium, viewport={"width": 1024, "height": 900}) as (page, violations):
            # Sign in.
            page.goto(base + "/")
            expect(page).to_have_url(re.compile(re.escape(base + SIGN_IN)))
            accessible(page, axe)
            page.get_by_label("API key").fill(API_KEY)
            page.keyboard.press("Enter")
            expect(page.get_by_role("heading", name="Tasks")).to_be_visible()

            # Create a task, then write it in the editor: an action and the script.
            page.get_by_label("Name", exact=True).fill(name)
            page.get_by_label("Start URL").fill(f"{site}/form")
            page.get_by_role("button", name="Create").click()
            page.get_by_role("link", name=name, exact=True).click()
            expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
            task_id = page.url.rsplit("/", 1)[1]
            page.get_by_label("Add action").select_option("wait")
            page.get_by_role("button", name="Add", exact=True).click()
            expect(page.locator("fieldset.action")).to_have_count(1)
            page.get_by_label("Extraction script").fill(SCRIPT)
            accessible(page, axe)
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
            stored = api.get(f"/api/tasks/{task_id}").json()
            assert stored["extractionScript"] == SCRIPT
            assert [action["type"] for action in stored["actions"]] == ["wait"]

            # Run it: the execution page follows the run to its end, with data and image.
            page.get_by_role("link", name="Run", exact=True).click()
            accessible(page, axe)
            page.get_by_role("button", name="Run", exact=True).click()
            expect(page).to_have_url(re.compile(re.escape(base + "/console/executions/")))
            execution_id = page.url.rsplit("/", 1)[1]
            expect(page.locator("#live-status")).to_have_text("Finished: success.", timeout=120_000)
            table = page.locator("table.result-table")
            expect(table.get_by_role("cell", name="banana")).to_be_visible()
            screenshot = page.get_by_role("img", name=re.compile("^Screenshot")).first
            expect(screenshot).to_be_visible()
            assert screenshot.evaluate("image => image.naturalWidth") > 0
            accessible(page, axe)

            # Find it among the executions, by its task.
            page.get_by_role("link", name="Executions", exact=True).first.click()
            page.get_by_label("Task id").fill(task_id)
            page.get_by_label("Task id").press("Enter")
            expect(page.get_by_role("link", name=execution_id)).to_be_visible()
            accessible(page, axe)

            # Give the task a schedule.
            page.goto(f"{base}/console/schedules/{task_id}")
            page.get_by_label("Cron expression").fill("30 6 * * 1")
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page).to_have_url(base + "/console/schedules")
            page.goto(f"{base}/console/schedules/{task_id}")
            expect(page.get_by_text(re.compile("Monday")).first).to_be_visible()
            status = api.get(f"/api/schedules/{task_id}/status").json()
            assert status["cron"] == "30 6 * * 1" and status["schedule"]["enabled"] is True
            accessible(page, axe)
            assert api.delete(f"/api/schedules/{task_id}").status_code == 200

            # Change a setting.
            page.get_by_role("link", name="Settings", exact=True).click()
            page.get_by_label("How the editor finds selectors").select_option("highlight")
            page.get_by_role("button", name="Save the selector finder").click()
            expect(page.get_by_role("status").first).to_be_visible()
            assert api.get(FINDER).json()["selectorFinder"] == "highlight"
            accessible(page, axe)

            # Sign out: the console asks for the key again.
            page.get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(re.compile(re.escape(base + SIGN_IN)))
            page.goto(base + "/")
            expect(page).to_have_url(re.compile(re.escape(base + SIGN_IN)))
            assert not violations
    finally:
        api.post(FINDER, json={"selectorFinder": finder_before})
