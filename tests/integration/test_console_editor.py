"""The console's task editor: the form drawn from the action palette, its edit operations
without script, saving through the API's validation and store (versions, masked secrets
kept), errors shown at the action they name, nested blocks; and one walk-through in
Chromium (type swap and keyboard reordering by script), checked with axe."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.console_browser import SIGN_IN, SharedChromium, accessible, console_page
from tests.integration.stack import API_KEY, Stack, fetch_rows

Fields = list[tuple[str, str]]

TASK: dict[str, Any] = {
    "name": "Editor probe",
    "description": "Reads a page",
    "url": "https://example.com/start",
    "mode": "agent",
    "wait": 2,
    "actions": [
        {"type": "navigate", "value": "https://example.com/a"},
        {"type": "if", "conditionVar": "n", "conditionOp": "gt", "conditionValue": "1"},
        {"type": "click", "selector": "#go", "timeout": 5000, "note": "kept"},
        {"type": "while", "selector": ".more", "conditionOp": "exists"},
        {"type": "wait", "value": 1},
        {"type": "end"},
        {"type": "else"},
        {"type": "type", "selector": "#q", "value": "{$user}", "typeMode": "replace"},
        {"type": "end"},
        {"type": "set", "varName": "rows", "value": {"a": [1, 2]}},
    ],
    "variables": {
        "user": {"type": "string", "value": "ann"},
        "pw": {"type": "secret", "value": "s3cret-value"},
        "n": {"type": "number", "value": 3},
    },
    "extractionScript": "const rows = [];\nreturn rows;",
    "includeShadowDom": False,
    "stealth": {"naturalTyping": True},
    "custom": {"kept": True},
}
DEPTHS = [0, 0, 1, 1, 2, 1, 0, 1, 0, 0]


class _FormReader(HTMLParser):
    """What a browser would submit for the page's editor form (no button pressed)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: Fields = []
        self.depths: list[int] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._text = ""
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._inside = a.get("class") == "editor"
        if not self._inside:
            return
        if tag == "fieldset" and "data-depth" in a:
            self.depths.append(int(a["data-depth"]))
        if tag == "input" and a.get("name"):
            if a.get("type") != "checkbox":
                self.fields.append((a["name"], a.get("value", "")))
            elif "checked" in a:
                self.fields.append((a["name"], a.get("value") or "on"))
        elif tag == "select" and a.get("name"):
            self._select, self._options = a["name"], []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", "\0"), "selected" in a))
        elif tag == "textarea":
            self._textarea, self._text = a["name"], ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data
        elif self._select is not None and self._options and self._options[-1][0] == "\0":
            self._options[-1] = (data, self._options[-1][1])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        elif tag == "select" and self._select is not None:
            chosen = [v for v, on in self._options if on] or [self._options[0][0]]
            self.fields.append((self._select, chosen[0]))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            text = self._text[1:] if self._text.startswith("\n") else self._text
            self.fields.append((self._textarea, text.replace("\n", "\r\n")))
            self._textarea = None


def _read(html: str) -> _FormReader:
    reader = _FormReader()
    reader.feed(html)
    return reader


def _post(client: httpx.Client, url: str, fields: Fields) -> httpx.Response:
    """The form sent as a browser sends it (repeated names allowed)."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return client.post(url, content=urlencode(fields), headers=form)


def _types(fields: Fields) -> list[str]:
    return [v for k, v in fields if re.fullmatch(r"actions-\d+-type", k)]


def _set(fields: Fields, name: str, value: str) -> Fields:
    assert any(k == name for k, _ in fields), name
    return [(k, value if k == name else v) for k, v in fields]


def _create(api: httpx.Client, task_id: str) -> dict[str, Any]:
    answer = api.post("/api/tasks", json={**TASK, "id": task_id})
    assert answer.status_code == 200, answer.text
    stored: dict[str, Any] = api.get(f"/api/tasks/{task_id}").json()
    return stored


def _without_times(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if k not in ("updatedAt", "last_opened")}


def _stored_secret(stack: Stack, task_id: str) -> str:
    ((value,),) = fetch_rows(
        stack.env["DATABASE_URL"],
        "SELECT body->'variables'->'pw'->>'value' FROM tasks WHERE id = %s",
        (task_id,),
    )
    return str(value)


@pytest.fixture
def shared_stack(stack: tuple[Stack, httpx.Client]) -> Stack:
    return stack[0]


def test_the_form_saves_back_what_it_shows(
    api: httpx.Client, browser_like: httpx.Client, shared_stack: Stack
) -> None:
    """The unchanged form saves the task unchanged (fields it does not show, numbers and a
    masked secret kept) as a new version; a changed form saves its changes."""
    task_id = "console-editor-round-trip"
    before = _create(api, task_id)
    page = browser_like.get(f"/console/tasks/{task_id}")
    assert page.status_code == 200 and "s3cret-value" not in page.text
    form = _read(page.text)
    assert form.depths == DEPTHS  # nested by the API's block matching
    assert _types(form.fields) == [a["type"] for a in TASK["actions"]]

    saved = _post(browser_like, f"/console/tasks/{task_id}", [*form.fields, ("op", "save")])
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/console/tasks/{task_id}?saved=1"
    after = api.get(f"/api/tasks/{task_id}").json()
    assert _without_times(after) == _without_times(before)
    assert _stored_secret(shared_stack, task_id) == "s3cret-value"
    assert len(api.get(f"/api/tasks/{task_id}/versions").json()["versions"]) == 1

    changed = _set(form.fields, "name", "Renamed")
    changed = _set(changed, "actions-2-selector", "#other")
    changed = _set(changed, "variables-3-name", "extra")
    changed = _set(changed, "variables-3-value", "42")
    changed = _set(changed, "variables-3-type", "number")
    changed = [(k, v) for k, v in changed if k != "includeHtml"] + [("includeHtml", "on")]
    assert _post(browser_like, f"/console/tasks/{task_id}", changed).status_code == 303
    now = api.get(f"/api/tasks/{task_id}").json()
    assert now["name"] == "Renamed" and now["includeHtml"] is True
    assert now["actions"][2] == {**TASK["actions"][2], "selector": "#other"}
    assert now["variables"]["extra"] == {"type": "number", "value": 42}
    assert now["custom"] == {"kept": True}
    shown = browser_like.get(f"/console/tasks/{task_id}?saved=1")
    assert "Saved." in shown.text and "Renamed" in shown.text


def test_operations_edit_without_saving(api: httpx.Client, browser_like: httpx.Client) -> None:
    task_id = "console-editor-ops"
    before = _create(api, task_id)
    url = f"/console/tasks/{task_id}"
    fields = _read(browser_like.get(url).text).fields
    kinds = [a["type"] for a in TASK["actions"]]

    added = _post(browser_like, url, [*_set(fields, "add-type", "hover"), ("op", "add")])
    assert added.status_code == 200
    fields = _read(added.text).fields
    assert _types(fields) == [*kinds, "hover"]
    up = _read(_post(browser_like, url, [*fields, ("op", "up:10")]).text).fields
    assert _types(up) == [*kinds[:9], "hover", kinds[9]]
    down = _read(_post(browser_like, url, [*up, ("op", "down:0")]).text).fields
    assert _types(down) == [kinds[1], kinds[0], *kinds[2:9], "hover", kinds[9]]
    removed = _post(browser_like, url, [*down, ("op", "remove:9")])
    assert _types(_read(removed.text).fields) == [kinds[1], kinds[0], *kinds[2:]]
    # The moved click keeps its values, and the page says nothing was saved yet.
    assert ("actions-2-selector", "#go") in _read(removed.text).fields
    assert _without_times(api.get(f"/api/tasks/{task_id}").json()) == _without_times(before)


def test_errors_show_at_their_action(api: httpx.Client, browser_like: httpx.Client) -> None:
    task_id = "console-editor-errors"
    before = _create(api, task_id)
    url = f"/console/tasks/{task_id}"
    fields = _read(browser_like.get(url).text).fields

    missing = _post(browser_like, url, _set(fields, "actions-2-selector", ""))
    assert missing.status_code == 400
    assert 'id="action-2-error"' in missing.text and 'href="#action-2"' in missing.text
    selector = re.search(r'<input id="a2-selector"[^>]*>', missing.text)
    assert selector and 'aria-invalid="true"' in selector.group(0)
    assert "action-2-error" in selector.group(0)
    assert _read(missing.text).depths == DEPTHS

    # An unclosed block: the API's block check names the opening action (index 1).
    unclosed = _read(_post(browser_like, url, [*fields, ("op", "remove:8")]).text)
    assert unclosed.depths == [0] * 9
    refused = _post(browser_like, url, [*unclosed.fields, ("op", "save")])
    assert refused.status_code == 400 and 'id="action-1-error"' in refused.text
    assert "never closed" in refused.text
    assert _without_times(api.get(f"/api/tasks/{task_id}").json()) == _without_times(before)


def test_the_editor_needs_the_token_and_a_task(
    api: httpx.Client, browser_like: httpx.Client
) -> None:
    task_id = "console-editor-csrf"
    before = _create(api, task_id)
    fields = _read(browser_like.get(f"/console/tasks/{task_id}").text).fields
    tokenless = [(k, v) for k, v in fields if k != "csrf_token"]
    refused = _post(browser_like, f"/console/tasks/{task_id}", _set(tokenless, "name", "X"))
    assert refused.status_code == 403 and refused.json()["error"] == "CSRF_TOKEN_MISSING"
    assert api.get(f"/api/tasks/{task_id}").json()["name"] == before["name"]
    unknown = browser_like.get("/console/tasks/no-such-task")
    assert unknown.status_code == 404 and "No such task" in unknown.text
    list_page = browser_like.get("/", params={"q": task_id})
    assert f'href="/console/tasks/{task_id}"' in list_page.text


def test_a_person_edits_actions_in_the_console(api: httpx.Client, chromium: SharedChromium) -> None:
    """Open a task from the list, add a click and an extract action, change a type (its
    fields swap by script), move an action with Alt+ArrowUp, save: in Chromium, with axe."""
    base = str(api.base_url)
    task_id, name = "console-editor-walk", "Editor walk-through"
    answer = api.post(
        "/api/tasks",
        json={"id": task_id, "name": name, "actions": [{"type": "navigate", "value": "/x"}]},
    )
    assert answer.status_code == 200
    axe = Axe()
    with console_page(chromium, viewport={"width": 390, "height": 900}) as (page, violations):
        page.goto(base + "/?q=" + task_id)
        expect(page).to_have_url(re.compile(re.escape(base + SIGN_IN)))
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
        page.goto(base + "/?q=" + task_id)
        page.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
        accessible(page, axe)

        page.get_by_label("Add action").select_option("click")
        page.get_by_role("button", name="Add", exact=True).click()
        page.locator("#a1-selector").fill("#buy")
        page.get_by_label("Add action").select_option("get_content")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("fieldset.action")).to_have_count(3)

        # The extract action becomes a hover by script: its fields are hover's at once.
        page.locator("#a2-type").select_option("hover")
        expect(page.locator("#a2-varName")).to_have_count(0)
        expect(page.locator("#a2-selector")).to_be_visible()
        expect(page.locator("#action-2 .action-label")).to_have_text("Hover")
        page.locator("#a2-selector").fill(".menu")
        page.locator("#a2-selector").press("Alt+ArrowUp")
        expect(page.locator("#actions-status")).to_have_text("Moved to position 2 of 3.")
        expect(page.locator("#a1-selector")).to_have_value(".menu")
        expect(page.locator("#a1-type")).to_have_value("hover")
        accessible(page, axe)

        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
        actions = api.get(f"/api/tasks/{task_id}").json()["actions"]
        assert actions == [
            {"type": "navigate", "value": "/x"},
            {"type": "hover", "selector": ".menu"},
            {"type": "click", "selector": "#buy"},
        ]
        accessible(page, axe)
        assert not violations
