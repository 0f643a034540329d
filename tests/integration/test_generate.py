"""AI selector and script generation through the whole stack: a real runner prepares the
page or compiles the script, and the real SDKs talk to local stand-ins for the vendors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.ai_fakes import AiFakes, answer, fail, forget_ai_settings
from tests.integration.console_browser import signed_in
from tests.integration.pages import add_item
from tests.integration.stack import Stack
from tests.integration.test_bad_input import assert_error

pytestmark = pytest.mark.stack  # every test here starts services of its own


@pytest.fixture(scope="module", autouse=True)
def runner(ai_stack: Stack) -> None:
    """Generation prepares the page, or compiles the script, in a real runner."""
    ai_stack.start_runner()


@pytest.fixture
def client(ai_stack: Stack, fakes: AiFakes) -> httpx.Client:
    return forget_ai_settings(ai_stack, fakes)


def _keys(client: httpx.Client, **lists: list[str]) -> None:
    fields = {"gemini": "geminiApiKeys", "openai": "openAiApiKeys", "claude": "claudeApiKeys"}
    for provider, keys in lists.items():
        response = client.post(f"/api/settings/{provider}-api-key", json={fields[provider]: keys})
        assert response.status_code == 200, response.text


def _fruit_task(site: str) -> dict[str, Any]:
    return {
        "name": "fruit",
        "url": f"{site}/form",
        "actions": [
            *add_item("cherry"),
            {"type": "get_content", "selector": "#items", "varName": "all"},
        ],
    }


def test_selector_is_checked_against_the_page_as_it_is_at_that_step(
    client: httpx.Client, fakes: AiFakes, site: str
) -> None:
    _keys(client, gemini=["g-1"], openai=["o-1"])
    # Only three items exist once "cherry" was added: the fourth matches nothing.
    fakes.script("gemini", "g-1", answer("```css\n#items li:nth-child(4)\n```"))
    fakes.script("openai", "o-1", answer("`#items li:nth-child(3)`"))
    body = {"task": _fruit_task(site), "actionIndex": 2, "prompt": "the fruit just added"}

    response = client.post("/api/tasks/generate-selector", json=body)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "selector": "#items li:nth-child(3)",
        "provider": "openai",
        "matches": 1,
    }
    assert fakes.order() == [("gemini", "g-1"), ("openai", "o-1")]
    prompt = fakes.calls_to("gemini")[0].prompt
    assert "cherry" in prompt and "the fruit just added" in prompt
    assert "<script" not in prompt

    # Before the click the third item does not exist yet: every proposal is refused.
    fakes.reset()
    fakes.script("gemini", "g-1", answer("#items li:nth-child(3)"))
    fakes.script("openai", "o-1", answer("#items li:nth-child(3)"))
    early = client.post("/api/tasks/generate-selector", json={**body, "actionIndex": 1})
    assert_error(early, 500, "AI_FAILED")
    details = early.json()["details"]
    assert "gemini:" in details and "openai:" in details and "matches nothing" in details
    assert "g-1" not in details and "o-1" not in details


def test_a_failing_key_hands_over_to_the_next(
    client: httpx.Client, fakes: AiFakes, site: str
) -> None:
    _keys(client, gemini=["g-bad", "g-good"])
    fakes.script("gemini", "g-bad", fail(401))
    fakes.script("gemini", "g-good", answer("input#q"))
    body = {"task": _fruit_task(site), "actionIndex": 0, "prompt": "the text box"}
    response = client.post("/api/tasks/generate-selector", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["selector"] == "input#q"
    assert fakes.order() == [("gemini", "g-bad"), ("gemini", "g-good")]


def test_selector_refusals(client: httpx.Client, site: str) -> None:
    task = _fruit_task(site)
    good = {"task": task, "actionIndex": 1, "prompt": "the button"}
    assert_error(client.post("/api/tasks/generate-selector", json=good), 400, "NO_AI_KEYS")
    _keys(client, claude=["c-1"])
    for missing in ("task", "actionIndex", "prompt"):
        partial = {k: v for k, v in good.items() if k != missing}
        response = client.post("/api/tasks/generate-selector", json=partial)
        assert_error(response, 400, "MISSING_FIELDS")
        assert missing in response.json()["details"]
    assert_error(
        client.post("/api/tasks/generate-selector", json={**good, "actionIndex": 9}),
        400,
        "INVALID_ACTION_INDEX",
    )
    bad_task = {**good, "task": {**task, "actions": [{"type": "teleport"}]}}
    assert_error(client.post("/api/tasks/generate-selector", json=bad_task), 400, "INVALID_BODY")

    # The page cannot be prepared: an action before actionIndex fails.
    broken = {
        **good,
        "task": {**task, "actions": [{"type": "click", "selector": "#gone", "timeout": 300}]},
    }
    response = client.post("/api/tasks/generate-selector", json=broken)
    assert_error(response, 500, "PAGE_CAPTURE_FAILED")
    assert "action 1 (click) failed" in response.json()["details"]


def test_script_must_compile_before_it_is_answered(client: httpx.Client, fakes: AiFakes) -> None:
    assert_error(
        client.post("/api/tasks/generate-script", json={"description": "titles"}),
        400,
        "NO_AI_KEYS",
    )
    _keys(client, gemini=["g-1"], claude=["c-1"])
    assert_error(client.post("/api/tasks/generate-script", json={}), 400, "MISSING_FIELDS")

    fakes.script("gemini", "g-1", answer("return [...document.querySelectorAll('li')"))
    script = "return [...document.querySelectorAll('li')].map((li) => li.textContent);"
    fakes.script("claude", "c-1", answer(f"```javascript\n{script}\n```"))
    response = client.post("/api/tasks/generate-script", json={"description": "the fruit"})
    assert response.status_code == 200, response.text
    assert response.json() == {"script": script, "provider": "claude"}
    assert [provider for provider, _ in fakes.order()] == ["gemini", "claude"]

    fakes.reset()
    fakes.script("gemini", "g-1", fail(500))
    fakes.script("claude", "c-1", answer("return ("))
    failed = client.post("/api/tasks/generate-script", json={"description": "the fruit"})
    assert_error(failed, 502, "AI_FAILED")
    assert "gemini:" in failed.json()["details"] and "claude:" in failed.json()["details"]
    assert "SyntaxError" in failed.json()["details"]


def test_the_consoles_generate_page(client: httpx.Client, fakes: AiFakes, site: str) -> None:
    """The task's Generate page asks the same functions as the API: without a provider it
    says so; with one it shows a checked selector and a script, which "Add to task" stores
    as the task's extractionScript."""
    task = {**_fruit_task(site), "id": "console-generate"}
    assert client.post("/api/tasks", json=task).status_code == 200
    browser = signed_in(str(client.base_url))
    url = "/console/tasks/console-generate/generate"
    token = browser.cookies["figranium_csrf"]
    bare = browser.get(url)
    assert bare.status_code == 200 and 'href="/console/settings"' in bare.text
    assert f'href="{url}"' not in bare.text  # no Generate tab without a provider

    _keys(client, gemini=["g-1"])
    page = browser.get(url)
    assert f'href="{url}"' in page.text and f'value="{site}/form"' in page.text
    assert browser.post(url, data={"kind": "script", "description": "x"}).status_code == 403
    fakes.script("gemini", "g-1", answer("#items li:nth-child(3)"))
    selector = browser.post(
        url,
        data={
            "csrf_token": token,
            "kind": "selector",
            "description": "the third fruit",
            "url": "",
            "actionIndex": "2",
        },
    )
    assert selector.status_code == 200, selector.text
    assert "#items li:nth-child(3)</textarea>" in selector.text
    refused = browser.post(
        url, data={"csrf_token": token, "kind": "selector", "description": "x", "actionIndex": "9"}
    )
    assert refused.status_code == 400 and "actionIndex" in refused.text

    script = "return document.title;"
    fakes.script("gemini", "g-1", answer(script))
    written = browser.post(url, data={"csrf_token": token, "kind": "script", "description": "t"})
    assert written.status_code == 200 and f"{script}</textarea>" in written.text
    added = browser.post(url + "/script", data={"csrf_token": token, "script": script})
    assert (
        added.status_code == 303 and added.headers["location"] == "/console/tasks/console-generate"
    )
    assert client.get("/api/tasks/console-generate").json()["extractionScript"] == script
    browser.close()
