"""The console's general settings page: API key rotation (on a stack of its own, since it
ends every session), AI keys and models, the webhook secret, the selector finder and the
captcha solver, each saved through the API's own rules; driven once in Chromium with axe."""

from __future__ import annotations

import re
from contextlib import closing
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.console_browser import (
    SIGN_IN,
    SharedChromium,
    accessible,
    console_page,
    signed_in,
)
from tests.integration.stack import API_KEY, Stack

SETTINGS = "/console/settings"
MASK = "••••••••"  # the captcha key's mask, as GET /api/settings/captcha answers it


def _get(api: httpx.Client, path: str) -> Any:
    answer = api.get(path)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _post(client: httpx.Client, path: str, **fields: str) -> httpx.Response:
    return client.post(
        SETTINGS + path, data={"csrf_token": client.cookies["figranium_csrf"], **fields}
    )


def _saved(answer: httpx.Response, flag: str) -> None:
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{SETTINGS}?saved={flag}"


def _refused(answer: httpx.Response, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    assert 'role="alert"' in answer.text and words in answer.text


def test_ai_keys_and_models_save_what_the_api_answers(
    api: httpx.Client, browser_like: httpx.Client
) -> None:
    keys = "/api/settings/claude-api-key"
    first, second = "sk-console-first-key-0001", "sk-console-second-key-0002"
    refused = browser_like.post(SETTINGS + "/ai-keys/claude", data={"op": "add", "key": first})
    assert refused.status_code == 403 and refused.json()["error"] == "CSRF_TOKEN_MISSING"
    assert _get(api, keys) == {"claudeApiKeys": []}

    _saved(_post(browser_like, "/ai-keys/claude", op="add", key=first), "claude")
    _saved(_post(browser_like, "/ai-keys/claude", op="add", key=second), "claude")
    assert _get(api, keys) == {"claudeApiKeys": ["••••0001", "••••0002"]}
    page = browser_like.get(SETTINGS, params={"saved": "claude"})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "The Claude (Anthropic) keys are saved." in page.text
    assert "<code>••••0001</code>" in page.text and "<code>••••0002</code>" in page.text
    assert first not in page.text and second not in page.text

    _refused(_post(browser_like, "/ai-keys/claude", op="add", key="ключ-0003"), 400, "ASCII")
    _refused(_post(browser_like, "/ai-keys/claude", op="replace", key=""), 400, "Give a key")
    assert _get(api, keys) == {"claudeApiKeys": ["••••0001", "••••0002"]}
    _saved(_post(browser_like, "/ai-keys/claude", op="replace", key=second), "claude")
    assert _get(api, keys) == {"claudeApiKeys": ["••••0002"]}
    _saved(_post(browser_like, "/ai-keys/claude", op="clear"), "claude")
    assert _get(api, keys) == {"claudeApiKeys": []}
    assert _post(browser_like, "/ai-keys/nobody", op="clear").status_code == 404

    # Ollama takes endpoints, checked by the outbound URL rules as the API checks them.
    ollama = "/api/settings/ollama-api-key"
    _refused(_post(browser_like, "/ai-keys/ollama", op="add", key="ftp://x"), 400, "ollama")
    endpoint = "http://user:secret@127.0.0.1:11434"
    _saved(_post(browser_like, "/ai-keys/ollama", op="add", key=endpoint), "ollama")
    assert _get(api, ollama) == {"ollamaApiKeys": ["http://••••@127.0.0.1:11434"]}
    assert "secret@" not in browser_like.get(SETTINGS).text
    _saved(_post(browser_like, "/ai-keys/ollama", op="clear"), "ollama")

    defaults = _get(api, "/api/settings/ai-models")
    models = {"gemini": "gemini-console-test", "openai": "", "claude": "", "ollama": "llama3:8b"}
    _saved(_post(browser_like, "/ai-models", **models), "models")
    saved = _get(api, "/api/settings/ai-models")
    assert saved == {**defaults, "gemini": "gemini-console-test", "ollama": "llama3:8b"}
    page = browser_like.get(SETTINGS).text
    assert 'value="gemini-console-test"' in page and 'value="llama3:8b"' in page
    too_long = {**models, "openai": "m" * 201}
    _refused(_post(browser_like, "/ai-models", **too_long), 400, "openai")
    assert 'value="' + "m" * 201 + '"' in _post(browser_like, "/ai-models", **too_long).text
    assert _get(api, "/api/settings/ai-models") == saved
    _saved(_post(browser_like, "/ai-models", gemini="", openai="", claude="", ollama=""), "models")
    assert _get(api, "/api/settings/ai-models") == defaults


def test_webhook_secret_finder_and_captcha(api: httpx.Client, browser_like: httpx.Client) -> None:
    before = _get(api, "/api/settings/webhook-secret")
    assert "whsec_" not in browser_like.get(SETTINGS).text.replace("whsec_••••", "")
    rotated = _post(browser_like, "/webhook-secret")
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    after = _get(api, "/api/settings/webhook-secret")
    assert after["createdAt"] >= before["createdAt"] and after["previousValidUntil"] is not None
    assert 'id="shown-value" readonly value="whsec_' in rotated.text
    shown = rotated.text.split('id="shown-value" readonly value="', 1)[1].split('"', 1)[0]
    assert shown not in browser_like.get(SETTINGS).text  # shown once, never again

    finder = "/api/settings/selector-finder"
    _saved(_post(browser_like, "/selector-finder", selectorFinder="ai"), "finder")
    assert _get(api, finder) == {"selectorFinder": "ai"}
    _refused(_post(browser_like, "/selector-finder", selectorFinder="guess"), 400, "selector")
    assert _get(api, finder) == {"selectorFinder": "ai"}
    assert '<option value="ai" selected>' in browser_like.get(SETTINGS).text
    _saved(_post(browser_like, "/selector-finder", selectorFinder="highlight"), "finder")
    assert _get(api, finder) == {"selectorFinder": "highlight"}

    captcha = "/api/settings/captcha"
    key = "captcha-client-key-42"
    _refused(_post(browser_like, "/captcha", baseUrl="ftp://solver", clientKey=key), 400, "baseUrl")
    assert _get(api, captcha) == {"baseUrl": "", "clientKey": ""}
    solver = "http://127.0.0.1:9/solver"
    _saved(_post(browser_like, "/captcha", baseUrl=solver, clientKey=key), "captcha")
    assert _get(api, captcha) == {"baseUrl": solver, "clientKey": MASK}
    page = browser_like.get(SETTINGS).text
    assert key not in page and f'value="{MASK}"' in page
    _saved(_post(browser_like, "/captcha", baseUrl=solver, clientKey=MASK), "captcha")
    assert _get(api, captcha) == {"baseUrl": solver, "clientKey": MASK}  # the mask kept it
    _saved(_post(browser_like, "/captcha", baseUrl="", clientKey=""), "captcha")
    assert _get(api, captcha) == {"baseUrl": "", "clientKey": ""}


def test_an_environment_key_is_not_rotated_here(
    api: httpx.Client, browser_like: httpx.Client
) -> None:
    page = browser_like.get(SETTINGS).text
    assert "FIGRANIUM_API_KEY" in page and 'action="/console/settings/api-key"' not in page
    _refused(_post(browser_like, "/api-key", apiKey=""), 409, "FIGRANIUM_API_KEY")
    assert api.get("/api/tasks/list").status_code == 200  # the key still works
    assert browser_like.get(SETTINGS).status_code == 200  # and the session lives


@pytest.mark.stack
def test_rotating_a_stored_key_shows_it_once_and_ends_sessions(isolated: Stack) -> None:
    del isolated.env["FIGRANIUM_API_KEY"]
    _, gateway = isolated.start_gateway()
    base = str(gateway.base_url)
    old_key = (isolated.workdir / "api-key").read_text().strip()
    browser = signed_in(base, old_key)
    other = signed_in(base, old_key)
    page = browser.get(SETTINGS).text
    assert "stored in the database" in page and old_key not in page

    _refused(_post(browser, "/api-key", apiKey="too-short-0123"), 400, "at least 24")
    _refused(_post(browser, "/api-key", apiKey="k" * 30 + " é"), 400, "ASCII")
    assert browser.get("/").status_code == 200  # nothing changed: the session lives

    rotated = _post(browser, "/api-key", apiKey="")
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    new_key = rotated.text.split('id="shown-value" readonly value="', 1)[1].split('"', 1)[0]
    assert new_key.startswith("fig_") and new_key != old_key
    assert "Sign out" not in rotated.text and f'href="{SIGN_IN}"' in rotated.text
    for client in (browser, other):
        assert client.get("/").status_code == 303
    with httpx.Client(base_url=base, timeout=30) as check:
        assert check.get("/api/tasks/list", headers={"x-api-key": old_key}).status_code == 401
        assert check.get("/api/tasks/list", headers={"x-api-key": new_key}).status_code == 200

    # A typed key is taken as the API takes one.
    chosen = "console-chosen-key-0123456789"
    again = signed_in(base, new_key)
    assert _post(again, "/api-key", apiKey=chosen).status_code == 200
    for client in (browser, other, again):
        client.close()
    with closing(signed_in(base, chosen)) as chosen_session:
        assert chosen_session.get(SETTINGS).status_code == 200


def test_a_person_changes_settings_in_the_console(
    api: httpx.Client, chromium: SharedChromium
) -> None:
    """Change an AI model and rotate the webhook secret in Chromium, light and at phone
    width, every page checked with axe and no policy violation reported."""
    base = str(api.base_url)
    axe = Axe()
    with console_page(chromium, viewport={"width": 390, "height": 900}) as (page, violations):
        page.goto(base + SETTINGS)
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        page.get_by_role("link", name="Settings", exact=True).click()
        expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="Access and AI")).to_have_attribute(
            "aria-current", "page"
        )
        accessible(page, axe)

        page.get_by_label("OpenAI model").fill("gpt-console-walk")
        page.get_by_role("button", name="Save the models").click()
        expect(page.get_by_role("status")).to_have_text("The AI models are saved.")
        expect(page.get_by_label("OpenAI model")).to_have_value("gpt-console-walk")
        assert _get(api, "/api/settings/ai-models")["openai"] == "gpt-console-walk"
        page.get_by_label("OpenAI model").fill("")
        page.get_by_role("button", name="Save the models").click()
        expect(page.get_by_role("status")).to_be_visible()

        page.get_by_label("Gemini API key").fill("AIza-console-walk-9876")
        page.get_by_role("button", name="Add").first.click()
        expect(page.get_by_role("list", name="Stored keys of Gemini")).to_have_text("••••9876")
        accessible(page, axe)
        page.get_by_role("button", name="Clear").click()
        expect(page.get_by_text("No key stored.").first).to_be_visible()

        before = _get(api, "/api/settings/webhook-secret")["createdAt"]
        page.get_by_role("button", name="Rotate the webhook secret").click()
        expect(page.get_by_role("textbox", name="The new webhook signing secret")).to_have_value(
            re.compile(r"^whsec_\S+$")
        )
        assert _get(api, "/api/settings/webhook-secret")["createdAt"] >= before
        accessible(page, axe)
        page.get_by_role("link", name="Back to the settings").click()
        expect(page.get_by_role("heading", name="Webhook signing secret")).to_be_visible()
        assert not violations
