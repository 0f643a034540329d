"""The official SDK's sync and async clients against the shared stack, on every call the
second drop-in round changed: editor-shaped tasks, plain run variables and
``taskVariables``, ad-hoc agent and scrape runs, schedule merging, the runs' executions,
the health check and the template catalogue. Each test runs once per client; no call may
answer 400 or 404.

The async client's resources are the sync ones over an awaitable transport, so one
scenario serves both: :func:`_answer` awaits what the async client returns
(:mod:`tests.integration.sdk_clients`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from figranium import Schedule

from tests.integration.editor_shapes import editor_action, editor_task
from tests.integration.pages import QuietHandler, serve_http
from tests.integration.sdk_clients import CLIENTS, Sdk, open_sdk
from tests.integration.sdk_clients import answer as _answer
from tests.integration.sdk_clients import refused as _refused

sdk = pytest.fixture(params=CLIENTS)(open_sdk)


class _LinksPage(QuietHandler):
    """A page with links, showing the ``X-Probe`` header it was fetched with."""

    def do_GET(self) -> None:
        probe = self.headers.get("X-Probe", "")
        page = (
            "<!doctype html><html><head><title>Links</title></head><body>"
            f'<div id="main"><a href="/one">One</a><p id="probe">{probe}</p></div>'
            '<a href="https://example.org/two">Two</a><a href="mailto:x@example.org">Mail</a>'
            "</body></html>"
        )
        self.send_body(page.encode(), "text/html; charset=utf-8")


@pytest.fixture(scope="module")
def links_site() -> Iterator[str]:
    with serve_http(_LinksPage) as url:
        yield url


async def test_health_uptime_is_whole_seconds(sdk: Sdk) -> None:
    health = await _answer(sdk.health.check())
    assert health["status"] == "ok"
    assert type(health["uptime"]) is int and health["uptime"] >= 0


async def test_an_editor_task_runs_with_plain_variables(sdk: Sdk, site: str) -> None:
    title = editor_action("javascript", value="document.title = '{$q}|{$n}'; return 1")
    task = editor_task(
        f"SDK editor {uuid.uuid4().hex[:6]}",
        f"{site}/form",
        actions=[title],
        variables={"q": {"type": "string", "value": "default"}},
    )
    saved = await _answer(sdk.tasks.save(task))
    task_id = saved["id"]
    assert saved["stealth"] == task["stealth"] and saved["actions"] == [title]
    summaries = (await _answer(sdk.tasks.list_summaries()))["tasks"]
    assert {"id": task_id, "name": task["name"]} in summaries

    plain = await _answer(sdk.run_task(task_id, {"variables": {"q": "plain", "n": 3}}))
    alias = await _answer(sdk.run_task(task_id, {"taskVariables": {"q": "alias"}}))
    # No extraction script: the answer is the page's HTML after the actions.
    assert plain["outcome"] == "success" and "<title>plain|3</title>" in plain["html"]
    assert alias["outcome"] == "success" and "<title>alias|</title>" in alias["html"]

    execution = (await _answer(sdk.executions.get(plain["executionId"])))["execution"]
    assert execution["taskId"] == task_id and execution["outcome"] == "success"
    assert "<title>plain|3</title>" in execution["result"]["html"]
    assert execution["taskSnapshot"]["stealth"] == task["stealth"]
    for api_key_route in (True, False):
        listed = await _answer(sdk.executions.list(api_key_route=api_key_route))
        ids = [entry["id"] for entry in listed["executions"]]
        assert {plain["executionId"], alias["executionId"]} <= set(ids)
    assert (await _answer(sdk.tasks.delete(task_id)))["deleted"] is True


async def test_ad_hoc_agent_and_scrape_take_plain_variables(sdk: Sdk, links_site: str) -> None:
    agent = await _answer(
        sdk.agent(
            {
                "url": f"{links_site}/page",
                "variables": {"who": "plain", "n": 2},
                "extractionScript": "return '{$who}-{$n}:' + document.title",
            }
        )
    )
    assert agent["outcome"] == "success" and agent["data"] == "plain-2:Links"

    scrape = await _answer(
        sdk.scrape(
            {
                "url": f"{links_site}/page",
                "selector": "{$part}",
                "headers": {"X-Probe": "{$token}"},
                "variables": {"part": "#main", "token": "t-42"},
            }
        )
    )
    assert scrape["title"] == "Links"
    assert scrape["selector_used"] == "#main" and scrape["is_partial"] is True
    assert (
        scrape["html"].startswith('<div id="main">') and '<p id="probe">t-42</p>' in scrape["html"]
    )
    assert scrape["links"] == [f"{links_site}/one", "https://example.org/two"]


async def test_schedules_merge_into_what_is_stored(sdk: Sdk, site: str) -> None:
    saved = await _answer(sdk.tasks.save(editor_task("SDK schedules", f"{site}/form")))
    task_id = saved["id"]
    weekly: Schedule = {"frequency": "weekly", "hour": 8, "minute": 15, "daysOfWeek": [1]}
    described = await _answer(sdk.schedules.describe(task_id, {"enabled": True, **weekly}))
    assert described["valid"] is True and described["cron"] == "15 8 * * 1"

    await _answer(sdk.schedules.set(task_id, {"enabled": True, **weekly}))
    paused = (await _answer(sdk.schedules.set(task_id, {"enabled": False})))["schedule"]
    assert paused["enabled"] is False
    assert {key: paused[key] for key in weekly} == weekly and paused["cron"] == "15 8 * * 1"
    status = await _answer(sdk.schedules.status(task_id))
    assert status["cron"] == "15 8 * * 1" and status["isValid"] is True

    by_cron = (await _answer(sdk.schedules.set(task_id, {"cron": "0 6 * * *"})))["schedule"]
    assert by_cron["cron"] == "0 6 * * *"
    assert not {"frequency", "hour", "minute", "daysOfWeek"} & set(by_cron), by_cron
    by_frequency = await _answer(sdk.schedules.set(task_id, {"frequency": "hourly", "minute": 5}))
    assert by_frequency["schedule"]["cron"] == "5 * * * *"
    assert by_frequency["schedule"]["enabled"] is False

    overall = await _answer(sdk.schedules.overall_status())
    assert isinstance(overall["running"], bool) and isinstance(overall["scheduledCount"], int)
    listed = (await _answer(sdk.schedules.list()))["schedules"]
    assert task_id in [entry["taskId"] for entry in listed]
    assert (await _answer(sdk.schedules.delete(task_id)))["success"] is True
    await _answer(sdk.tasks.delete(task_id))


async def test_templates_without_a_catalogue_answer_501(sdk: Sdk) -> None:
    template_id = str(uuid.uuid4())
    calls: tuple[Callable[[], Any], ...] = (
        sdk.templates.list,
        lambda: sdk.templates.search(limit=6, sort="newest", search="shop"),
        lambda: sdk.templates.get(template_id),
        lambda: sdk.templates.record_import(template_id),
    )
    for call in calls:
        refused = await _refused(call)
        assert refused.status == 501 and refused.code == "TEMPLATES_UNAVAILABLE"
        assert "TEMPLATES_CATALOG_URL" in str(refused.details)
