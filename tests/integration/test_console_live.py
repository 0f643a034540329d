"""The console's live execution view: result downloads (JSON, guarded CSV), the result as
a tree and a table, Stop, and, in Chromium, a run followed from queued to done without a
reload through the SSE stream."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.console_browser import SIGN_IN, SharedChromium, accessible, console_page
from tests.integration.pages import QuietHandler, serve_http
from tests.integration.stack import API_KEY, Stack, wait_until

PAGE = "/console/executions"
# Rows whose cells a spreadsheet would take for formulas, a nested value and a missing key.
# (PostgreSQL's jsonb keeps an object's keys shorter first: the columns come in that order.)
ROWS_SCRIPT = (
    'return [{name: "=HYPERLINK(1)", n: -3, tags: ["a", "b"]},'
    ' {name: "plain", extra: "@cmd", n: 2}]'
)


def _task(api: httpx.Client, task_id: str, url: str, **fields: Any) -> None:
    task = {"id": task_id, "name": task_id, "url": url, "actions": [], **fields}
    answer = api.post("/api/tasks", json=task)
    assert answer.status_code == 200, answer.text


def _run(api: httpx.Client, task_id: str, **body: Any) -> str:
    answer = api.post(f"/api/tasks/{task_id}/api", json=body)
    assert answer.status_code in (200, 202), answer.text
    execution_id: str = answer.json()["executionId"]
    return execution_id


@pytest.fixture(scope="module")
def finished_runs(stack: tuple[Stack, httpx.Client], site: str) -> dict[str, str]:
    """Two finished runs: one whose data are rows, one whose data is a title."""
    api = stack[1]
    _task(api, "console-live-rows", f"{site}/form", extractionScript=ROWS_SCRIPT)
    _task(api, "console-live-title", f"{site}/form", extractionScript="return document.title")
    return {"rows": _run(api, "console-live-rows"), "title": _run(api, "console-live-title")}


def test_downloads_serve_the_whole_result_as_json_and_guarded_csv(
    browser_like: httpx.Client, finished_runs: dict[str, str]
) -> None:
    run = finished_runs["rows"]
    as_json = browser_like.get(f"{PAGE}/{run}/result.json")
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.headers["content-disposition"].startswith(f'attachment; filename="{run}.json"')
    whole = json.loads(as_json.text)
    assert whole["outcome"] == "success" and whole["data"][1]["extra"] == "@cmd"

    as_csv = browser_like.get(f"{PAGE}/{run}/result.csv")
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["content-disposition"].startswith(f'attachment; filename="{run}.csv"')
    assert as_csv.headers["x-content-type-options"] == "nosniff"
    assert list(csv.reader(io.StringIO(as_csv.text, newline=""))) == [
        ["n", "name", "tags", "extra"],
        ["-3", "'=HYPERLINK(1)", '["a", "b"]', ""],
        ["2", "plain", "", "'@cmd"],
    ]

    untabular = browser_like.get(f"{PAGE}/{finished_runs['title']}/result.csv")
    assert untabular.status_code == 409
    assert untabular.json()["error"] == "RESULT_NOT_TABULAR"
    for suffix in ("json", "csv"):
        missing = browser_like.get(f"{PAGE}/exec_no_such_run/result.{suffix}")
        assert missing.status_code == 404 and missing.json()["error"] == "EXECUTION_NOT_FOUND"


def test_the_page_shows_the_result_as_a_tree_and_a_table(
    browser_like: httpx.Client, finished_runs: dict[str, str]
) -> None:
    rows = browser_like.get(f"{PAGE}/{finished_runs['rows']}").text
    table = re.search(r'<table class="result-table">.*?</table>', rows, re.S)
    assert table is not None
    assert re.findall(r'<th scope="col">([^<]*)</th>', table.group(0)) == [
        "n",
        "name",
        "tags",
        "extra",
    ]
    cells = re.findall(r"<td>([^<]*)</td>", table.group(0))
    tags = "[&#34;a&#34;, &#34;b&#34;]"
    assert cells == ["-3", "=HYPERLINK(1)", tags, "", "2", "plain", "", "@cmd"]
    assert f'href="{PAGE}/{finished_runs["rows"]}/result.csv"' in rows
    # The tree: the result object, its data list, each row an object of its keys.
    tree = rows[rows.index('class="json-tree"') :]
    assert re.search(r'<summary><span class="key">data</span> <span class="note">list, 2', tree)
    assert '<span class="key">extra</span>: <code class="json">&#34;@cmd&#34;</code>' in tree
    # The run's recording, as a video with controls.
    video = rf'<video controls preload="metadata" src="/captures/{finished_runs["rows"]}_\w+\.webm"'
    assert re.search(video, rows)
    # Finished: no live view, no Stop.
    assert "data-execution=" not in rows and 'action="' + PAGE not in rows

    title = browser_like.get(f"{PAGE}/{finished_runs['title']}").text
    assert "result-table" not in title and "result.csv" not in title
    assert '<span class="key">data</span>: <code class="json">&#34;Form&#34;</code>' in title


def test_stop_needs_the_csrf_token_and_stops_the_run(
    api: httpx.Client, browser_like: httpx.Client, site: str
) -> None:
    wait = {"type": "wait_selector", "selector": "#never", "value": 60}
    _task(api, "console-live-stop", f"{site}/form", actions=[wait])
    run = _run(api, "console-live-stop", **{"async": True})
    page = browser_like.get(f"{PAGE}/{run}")
    assert f'data-execution="{run}"' in page.text
    assert f'<form method="post" action="{PAGE}/{run}/stop"' in page.text

    refused = browser_like.post(f"{PAGE}/{run}/stop")
    assert refused.status_code == 403 and refused.json()["error"] == "CSRF_TOKEN_MISSING"
    token = {"csrf_token": browser_like.cookies["figranium_csrf"]}
    unknown = browser_like.post(f"{PAGE}/exec_no_such_run/stop", data=token)
    assert unknown.status_code == 404
    stopped = browser_like.post(f"{PAGE}/{run}/stop", data=token)
    assert stopped.status_code == 303 and stopped.headers["location"] == f"{PAGE}/{run}"

    def outcome() -> object:
        return api.get(f"/api/executions/{run}").json()["execution"]["outcome"]

    assert wait_until(outcome, 60, "the stopped run to finish") == "stopped"


class GateHandler(QuietHandler):
    """A page that shows ``#one`` once gate 1 opens, then ``#two`` once gate 2 opens: a
    run waiting on them lasts exactly as long as the test wants."""

    opened: ClassVar[set[str]] = set()
    PAGE = """<!doctype html><html><head><title>Gates</title></head><body><ul id="items"></ul>
<script>
async function gate(n) {
  while ((await (await fetch('/gate/' + n)).text()) !== 'open') {
    await new Promise((done) => setTimeout(done, 100));
  }
  const p = document.createElement('p');
  p.id = n === 1 ? 'one' : 'two';
  p.textContent = 'gate ' + n;
  document.body.appendChild(p);
}
gate(1).then(() => gate(2));
</script></body></html>"""

    def do_GET(self) -> None:
        if self.path.startswith("/gate/"):
            state = "open" if self.path in self.opened else "shut"
            self.send_body(state.encode(), "text/plain")
        else:
            self.send_body(self.PAGE.encode(), "text/html; charset=utf-8")


@pytest.fixture
def gates() -> Iterator[tuple[str, type[GateHandler]]]:
    GateHandler.opened = set()
    with serve_http(GateHandler) as url:
        yield url, GateHandler


def test_a_person_follows_a_run_live(
    api: httpx.Client,
    chromium: SharedChromium,
    gates: tuple[str, type[GateHandler]],
    tmp_path: Path,
) -> None:
    """Open a running run's page, then see without reload: a log line, a screenshot as it
    is taken while the run goes on, the status turning to done, the result table;
    download the CSV."""
    url, gate = gates
    actions = [
        {"type": "wait_selector", "selector": "#one", "value": 60},
        {"type": "screenshot"},
        {"type": "wait_selector", "selector": "#two", "value": 60},
    ]
    _task(api, "console-live-follow", f"{url}/", actions=actions, extractionScript=ROWS_SCRIPT)
    run = _run(api, "console-live-follow", **{"async": True})

    def running() -> bool:
        return bool(api.get(f"/api/executions/{run}").json()["execution"]["phase"] == "running")

    wait_until(running, 60, "the run to start")
    base = str(api.base_url)
    axe = Axe()
    with console_page(chromium, viewport={"width": 390, "height": 844}) as (page, violations):
        page.goto(base + SIGN_IN)
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
        page.goto(f"{base}{PAGE}/{run}")
        status = page.get_by_role("status")
        expect(status).to_contain_text("running")
        expect(page.get_by_role("button", name="Stop")).to_be_visible()
        page.evaluate("window.notReloaded = true")
        accessible(page, axe)

        gate.opened.add("/gate/1")
        logs = page.get_by_role("region", name="Logs")
        expect(logs).to_contain_text("Waiting for selector: #one")
        # The screenshot taken after gate 1 shows while gate 2 holds the run.
        live_shot = page.get_by_role("img", name=re.compile("^Screenshot of run "))
        expect(live_shot).to_be_visible()
        assert live_shot.evaluate("image => image.complete && image.naturalWidth") > 0
        expect(status).to_contain_text("running")  # gate 2 is shut: still running

        gate.opened.add("/gate/2")
        expect(status).to_have_text("Finished: success.")
        expect(page.get_by_role("button", name="Stop")).to_have_count(0)
        expect(page.locator("#fact-status")).to_contain_text("finished")
        expect(logs).to_contain_text("Screenshot saved")
        shot = page.get_by_role("img", name=re.compile("^Screenshot ")).first
        expect(shot).to_be_visible()
        expect(page.locator("video[controls]")).to_have_count(1)  # the run's recording
        table = page.get_by_role("table", name=re.compile("The result as a table"))
        expect(table.get_by_role("columnheader")).to_have_text(["n", "name", "tags", "extra"])
        expect(table.get_by_role("cell", name="@cmd")).to_be_visible()
        # The tree works by keyboard: a summary folds its entries away.
        data = page.locator(".json-tree summary").filter(has_text=re.compile("^data list"))
        data.focus()
        page.keyboard.press("Enter")
        assert data.evaluate("summary => summary.parentElement.open") is False
        assert page.evaluate("window.notReloaded") is True
        accessible(page, axe)

        with page.expect_download() as download:
            page.get_by_role("link", name="Download the table (CSV)").click()
        saved = tmp_path / "result.csv"
        download.value.save_as(saved)
        assert download.value.suggested_filename == f"{run}.csv"
        assert saved.read_text().splitlines()[1] == '-3,\'=HYPERLINK(1),"[""a"", ""b""]",'
    assert not violations, violations
