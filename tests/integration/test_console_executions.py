"""The console's executions pages: the filtered list with the API's cursor, and one
execution's logs, screenshot, result and webhook delivery, driven in Chromium."""

from __future__ import annotations

import re
from typing import Any

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.console_browser import SIGN_IN, SharedChromium, accessible, console_page
from tests.integration.pages import add_item
from tests.integration.stack import API_KEY, wait_until
from tests.integration.test_webhooks import Receiver

LIST = "/console/executions"


def _run(api: httpx.Client, task_id: str, **body: Any) -> dict[str, Any]:
    answer = api.post(f"/api/tasks/{task_id}/api", json=body)
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()
    return run


def test_bad_filters_and_unknown_ids_get_pages_not_errors(browser_like: httpx.Client) -> None:
    missing = browser_like.get(f"{LIST}/exec_no_such_run")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "No such execution" in missing.text and "exec_no_such_run" in missing.text

    for query, said in (
        ({"outcome": "sideways"}, "outcome must be one of"),
        ({"from": "yesterday"}, "from must be epoch milliseconds or ISO 8601"),
        ({"cursor": "not!a!cursor"}, "cursor is not one this listing answered"),
        ({"limit": "0"}, "limit must be between 1 and"),
    ):
        page = browser_like.get(LIST, params=query)
        assert page.status_code == 400, query
        assert said in page.text and 'role="alert"' in page.text
    # Markup in a filter is shown as text, never as markup.
    echoed = browser_like.get(LIST, params={"taskId": '"><script>x</script>'})
    assert echoed.status_code == 200 and "<script>x</script>" not in echoed.text


def test_the_list_pages_with_the_apis_cursor(api: httpx.Client, browser_like: httpx.Client) -> None:
    task_id = "console-listing-task"
    api.post("/api/tasks", json={"id": task_id, "name": "Listing", "actions": []})
    runs = [_run(api, task_id)["executionId"] for _ in range(3)]
    first = browser_like.get(LIST, params={"taskId": task_id, "limit": "2"})
    assert first.status_code == 200, first.text
    following = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert following is not None
    next_url = following.group(1).replace("&amp;", "&")
    # The next page keeps the filters, and its cursor is the API's own.
    assert next_url.startswith(f"{LIST}?taskId={task_id}&limit=2&cursor=")
    api_page = api.get("/api/executions", params={"taskId": task_id, "limit": 2}).json()
    assert next_url.endswith("cursor=" + api_page["nextCursor"])
    second = browser_like.get(next_url)
    assert second.status_code == 200 and 'rel="next"' not in second.text
    shown = [re.findall(r'href="/console/executions/([^"]+)"', p.text) for p in (first, second)]
    assert shown == [runs[:0:-1], runs[:1]]
    none = browser_like.get(LIST, params={"taskId": task_id, "outcome": "crashed"})
    assert "No execution matches" in none.text


def test_a_person_finds_a_run_and_reads_it(
    api: httpx.Client, site: str, chromium: SharedChromium
) -> None:
    """Run a task that takes a screenshot, then in Chromium: filter the list by the task,
    page through it, open the run, see its log line, screenshot, result and webhook."""
    task_id = "console-executions-task"
    task = {
        "id": task_id,
        "name": "Console executions",
        "url": f"{site}/form",
        "actions": [*add_item("cherry"), {"type": "screenshot", "label": "after add"}],
        "extractionScript": "return document.title",
    }
    assert api.post("/api/tasks", json=task).status_code == 200
    with Receiver() as receiver:
        hooked = _run(api, task_id, webhookUrl=receiver.url)

        def delivered() -> bool:
            execution = api.get(f"/api/executions/{hooked['executionId']}").json()["execution"]
            return bool(execution["webhook"]["state"] == "delivered")

        wait_until(delivered, 60, "the webhook to be delivered")
    latest = _run(api, task_id)
    base = str(api.base_url)
    axe = Axe()
    with console_page(chromium, viewport={"width": 1024, "height": 800}) as (page, violations):
        page.goto(base + LIST + "?limit=1")
        expect(page).to_have_url(base + SIGN_IN)
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
        page.goto(base + LIST + "?limit=1")
        expect(page.get_by_role("link", name="Executions")).to_have_attribute(
            "aria-current", "page"
        )

        page.get_by_label("Task id").fill(task_id)
        page.get_by_label("Outcome").select_option("success")
        page.get_by_role("button", name="Filter").click()
        table = page.get_by_role("table", name=re.compile("Executions, newest first"))
        expect(table.get_by_role("row")).to_have_count(2)  # the header and one run
        expect(table.get_by_role("link", name=latest["executionId"])).to_be_visible()
        accessible(page, axe)

        page.get_by_role("link", name="Next page").click()
        expect(table.get_by_role("link", name=hooked["executionId"])).to_be_visible()
        expect(page.get_by_role("link", name="First page")).to_be_visible()
        accessible(page, axe)

        table.get_by_role("link", name=hooked["executionId"]).click()
        expect(page.get_by_role("heading", name=re.compile("Execution"))).to_contain_text(
            hooked["executionId"]
        )
        logs = page.get_by_role("region", name="Logs")
        expect(logs).to_contain_text("Typing into #q: cherry")
        shots = page.get_by_role("img", name=re.compile("^Screenshot "))
        expect(shots.first).to_be_visible()
        widths = shots.evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
        assert widths and all(w and w > 0 for w in widths), widths
        expect(page.get_by_role("region", name="Result")).to_contain_text('data: "Form"')
        webhook = page.get_by_role("region", name="Webhook delivery")
        expect(webhook.locator("dt:text-is('State') + dd")).to_have_text("delivered")
        expect(webhook.locator("dt:text-is('Last HTTP status') + dd")).to_have_text("200")
        accessible(page, axe)

        page.goto(base + LIST + "/exec_gone_for_good")
        expect(page.get_by_role("heading", name="No such execution")).to_be_visible()
        accessible(page, axe)
    assert not violations, violations
