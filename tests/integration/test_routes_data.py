"""Figranium's data routes this gateway adds: cookies and cookie states over the tasks'
saved browser states, /api/capabilities, and the template catalogue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from figranium import AsyncFigranium, Figranium

from figranium_common.action_models import ACTION_MODELS
from figranium_common.redact import SECRET_MASK
from figranium_gateway.ai.keys import PROVIDERS
from tests.integration.pages import QuietHandler, serve_http
from tests.integration.stack import API_KEY, Stack
from tests.integration.test_browser_state import run, visits_task


def cookies_of(api: httpx.Client, task_id: str, path: str = "/api/data/cookies") -> Any:
    response = api.get(path, params={"taskId": task_id})
    assert response.status_code == 200, response.text
    return response.json()


def test_cookies_are_listed_masked_and_deleted_from_what_runs_start_with(
    api: httpx.Client, site: str
) -> None:
    api.post("/api/tasks", json=visits_task(site, "cookie-jar"))
    assert run(api, "cookie-jar") == {"visits": 1, "stored": 1}

    listed = cookies_of(api, "cookie-jar")
    [cookie] = [c for c in listed["cookies"] if c["name"] == "visits"]
    assert cookie["value"] == SECRET_MASK and cookie["taskId"] == "cookie-jar"
    assert cookie["domain"] == "127.0.0.1" and cookie["path"] == "/"
    [origin] = listed["origins"]
    assert origin["localStorage"] == [{"name": "stored", "value": SECRET_MASK}]
    assert cookies_of(api, "cookie-jar", "/api/cookies") == listed  # Figranium's /api alias

    refused = api.post("/api/data/cookies/delete", json={"domain": "127.0.0.1"})
    assert refused.status_code == 400 and refused.json()["error"] == "MISSING_NAME"
    other_domain = {"name": "visits", "domain": "example.com", "taskId": "cookie-jar"}
    assert api.post("/api/data/cookies/delete", json=other_domain).json()["removed"] == 0
    deleted = api.post("/api/data/cookies/delete", json={"name": "visits", "taskId": "cookie-jar"})
    assert deleted.json() == {"success": True, "removed": 1}
    assert cookies_of(api, "cookie-jar")["cookies"] == []
    # The next run starts without the cookie, with the local storage it kept.
    assert run(api, "cookie-jar") == {"visits": 1, "stored": 2}

    cleared = api.post("/api/data/clear-cookies")
    assert cleared.status_code == 200 and cleared.json()["success"] is True
    assert cookies_of(api, "cookie-jar") == {"cookies": [], "origins": []}
    assert run(api, "cookie-jar") == {"visits": 1, "stored": 1}


def test_cookie_states_are_the_tasks_states(api: httpx.Client, site: str) -> None:
    api.post("/api/tasks", json=visits_task(site, "imported-cookies", name="Imported"))
    state = {"cookies": [{"name": "visits", "value": "41", "domain": "127.0.0.1", "path": "/"}]}

    missing_task = api.post("/api/cookie-states", json={"state": state})
    assert missing_task.status_code == 400 and missing_task.json()["error"] == "TASK_ID_REQUIRED"
    no_cookies = api.post("/api/cookie-states", json={"taskId": "imported-cookies", "state": {}})
    assert no_cookies.json()["error"] == "COOKIE_STATE_REQUIRED"
    bad = {"taskId": "imported-cookies", "state": {"cookies": [{"name": "x"}]}}
    refused = api.post("/api/cookie-states", json=bad)
    assert refused.status_code == 400 and refused.json()["error"] == "INVALID_COOKIE_STATE"
    unknown = api.post("/api/cookie-states", json={"taskId": "no-such-task", "state": state})
    assert unknown.status_code == 404

    created = api.post("/api/cookie-states", json={"taskId": "imported-cookies", "state": state})
    assert created.status_code == 201, created.text
    assert created.json() | {"updatedAt": None} == {
        "id": "imported-cookies",
        "name": "Imported",
        "taskId": "imported-cookies",
        "updatedAt": None,
        "cookies": 1,
        "origins": 0,
    }
    # The imported cookie is what the task's next run starts with.
    assert run(api, "imported-cookies") == {"visits": 42, "stored": 1}

    listed = api.get("/api/cookie-states").json()["states"]
    [entry] = [s for s in listed if s["id"] == "imported-cookies"]
    assert entry["cookies"] == 1 and entry["origins"] == 1
    one = api.get("/api/cookie-states/imported-cookies").json()
    assert one["state"]["cookies"][0]["value"] == SECRET_MASK

    renamed = api.patch("/api/cookie-states/imported-cookies", json={"name": "Other"})
    assert renamed.status_code == 400 and renamed.json()["error"] == "COOKIE_STATE_NAME_FIXED"
    replaced = api.patch("/api/cookie-states/imported-cookies", json={"state": {"cookies": []}})
    assert replaced.status_code == 200 and replaced.json()["cookies"] == 0
    assert run(api, "imported-cookies") == {"visits": 1, "stored": 1}

    assert api.delete("/api/cookie-states/imported-cookies").json() == {"ok": True}
    gone = api.delete("/api/cookie-states/imported-cookies")
    assert gone.status_code == 404 and gone.json()["error"] == "COOKIE_STATE_NOT_FOUND"
    assert api.get("/api/cookie-states/imported-cookies").status_code == 404


def test_capabilities_say_what_this_server_supports(api: httpx.Client) -> None:
    response = api.get("/api/capabilities")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["apiVersion"] == "1" and body["runtimeVersion"]
    assert body["features"]["cabinets"] is True and body["features"]["templates"] is False
    types = [action["type"] for action in body["actions"]]
    assert sorted(types) == sorted(ACTION_MODELS)
    click = next(action for action in body["actions"] if action["type"] == "click")
    assert "selector" in click["configurationSchema"]["properties"]
    assert body["modes"] == ["agent", "scrape", "headful"]
    assert [p["name"] for p in body["aiProviders"]] == list(PROVIDERS)
    # The shared stack's settings (tests/integration/stack.py and the defaults).
    assert body["limits"]["runTimeoutSeconds"] == 60
    assert body["limits"]["maxLoopIterations"] == 1000
    assert body["limits"]["actionTimeoutMs"] == 10_000


PRESETS: list[dict[str, Any]] = [
    {
        "id": "6f1c2a3e-0000-4000-8000-000000000001",
        "title": "Zebra prices",
        "category": "shopping",
        "downloads": 5,
        "readme": "long text",
        "configuration": {"url": "https://example.com", "actions": [{"type": "click"}] * 2},
    },
    {
        "id": "6f1c2a3e-0000-4000-8000-000000000002",
        "title": "Alpha news",
        "category": "news",
        "downloads": 50,
        "configuration": {"tasks": [{"actions": [{"type": "wait"}]}]},
    },
]
WRONG_ID = "6f1c2a3e-0000-4000-8000-00000000000f"


class CatalogueHandler(QuietHandler):
    """A template catalogue in Figranium's format; one preset answers under a wrong id."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        by_id = {p["id"]: p for p in PRESETS}
        if path == "/presets":
            self.send_body(json.dumps(PRESETS).encode(), "application/json")
        elif path == f"/presets/{WRONG_ID}":
            self.send_body(json.dumps(PRESETS[0]).encode(), "application/json")
        elif path.startswith("/presets/") and path[9:] in by_id:
            self.send_body(json.dumps(by_id[path[9:]]).encode(), "application/json")
        else:
            self.send_body(b'{"error": "not found"}', "application/json", status=404)


@pytest.fixture(scope="module")
def catalogue_gateway(stack: tuple[Stack, httpx.Client]) -> Iterator[httpx.Client]:
    """A second gateway of the shared stack, with a local template catalogue."""
    with serve_http(CatalogueHandler) as url:
        service, client = stack[0].start_gateway(TEMPLATES_CATALOG_URL=f"{url}/presets")
        try:
            yield client
        finally:
            service.stop(timeout=15)


def test_templates_without_a_catalogue_answer_501(api: httpx.Client) -> None:
    for answer in (
        api.get("/api/templates"),
        api.get(f"/api/templates/{PRESETS[0]['id']}"),
        api.post(f"/api/templates/{PRESETS[0]['id']}/import"),
    ):
        assert answer.status_code == 501 and answer.json()["error"] == "TEMPLATES_UNAVAILABLE"


def test_templates_from_a_configured_catalogue(catalogue_gateway: httpx.Client) -> None:
    api = catalogue_gateway
    assert api.get("/api/templates").json() == PRESETS
    page = api.get("/api/templates", params={"limit": 1, "sort": "name"}).json()
    assert page["total"] == 2
    [card] = page["items"]
    assert card["title"] == "Alpha news" and card["action_count"] == 1
    assert "configuration" not in card
    popular = api.get("/api/templates", params={"category": "shopping"}).json()
    assert [c["title"] for c in popular["items"]] == ["Zebra prices"]
    assert popular["items"][0]["action_count"] == 2 and "readme" not in popular["items"][0]
    searched = api.get("/api/templates", params={"search": "NEWS"}).json()
    assert [c["title"] for c in searched["items"]] == ["Alpha news"]
    bad_query = api.get("/api/templates", params={"limit": 30})
    assert bad_query.status_code == 400 and bad_query.json()["error"] == "INVALID_TEMPLATE_QUERY"

    assert api.get(f"/api/templates/{PRESETS[1]['id']}").json() == PRESETS[1]
    assert api.get("/api/templates/not-a-uuid").json()["error"] == "INVALID_TEMPLATE_ID"
    missing = api.get("/api/templates/6f1c2a3e-0000-4000-8000-0000000000aa")
    assert missing.status_code == 404 and missing.json()["error"] == "TEMPLATE_NOT_FOUND"
    wrong = api.get(f"/api/templates/{WRONG_ID}")
    assert wrong.status_code == 502 and wrong.json()["error"] == "TEMPLATE_CATALOG_INVALID"
    imported = api.post(f"/api/templates/{PRESETS[0]['id']}/import")
    assert imported.json() == {"success": True, "counted": False}
    assert api.get("/api/capabilities").json()["features"]["templates"] is True


async def test_the_sdks_template_methods(catalogue_gateway: httpx.Client) -> None:
    base_url = str(catalogue_gateway.base_url)
    with Figranium(base_url=base_url, api_key=API_KEY) as sdk:
        assert sdk.templates.list() == PRESETS
        assert sdk.templates.search(sort="name", limit=1)["items"][0]["title"] == "Alpha news"
        assert sdk.templates.get(PRESETS[0]["id"]) == PRESETS[0]
        assert sdk.templates.record_import(PRESETS[0]["id"])["success"] is True
    async with AsyncFigranium(base_url=base_url, api_key=API_KEY) as client:
        assert await client.templates.list() == PRESETS
        assert (await client.templates.search(search="zebra"))["total"] == 1
        assert await client.templates.get(PRESETS[1]["id"]) == PRESETS[1]
        assert (await client.templates.record_import(PRESETS[1]["id"]))["counted"] is False
