"""AI provider settings on a running gateway: keys sealed and masked, endpoints, model names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from figranium_common import db
from figranium_common.config import Config
from figranium_common.secretbox import SecretBox
from figranium_gateway.ai import AiAnswer, AiChain
from tests.integration.ai_fakes import AiFakes, answer, fail, forget_ai_settings
from tests.integration.stack import Stack
from tests.integration.test_bad_input import assert_error

pytestmark = pytest.mark.stack  # every test here starts services of its own

FIRST = "sk-first-key-aaaa1111"
SECOND = "sk-second-key-bbbb2222"
THIRD = "sk-third-key-cccc3333"
ROUTES = {
    "gemini": ("/api/settings/gemini-api-key", "geminiApiKeys"),
    "openai": ("/api/settings/openai-api-key", "openAiApiKeys"),
    "claude": ("/api/settings/claude-api-key", "claudeApiKeys"),
    "ollama": ("/api/settings/ollama-api-key", "ollamaApiKeys"),
}
DEFAULT_MODELS = {
    "gemini": "gemini-2.5-flash",
    "openai": "gpt-4o-mini",
    "claude": "claude-3-5-haiku-latest",
    "ollama": "gemma4:e2b",
}


@pytest.fixture
def client(ai_stack: Stack, fakes: AiFakes) -> httpx.Client:
    return forget_ai_settings(ai_stack, fakes)


def _rows(stack: Stack) -> dict[str, str]:
    """The settings table as a database dump would show it."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return {key: text for key, text in conn.execute("SELECT key, value::text FROM settings")}


def _box(stack: Stack) -> SecretBox:
    return SecretBox.from_config(Config(FIGRANIUM_DATA_DIR=Path(stack.env["FIGRANIUM_DATA_DIR"])))


def _stored(stack: Stack, provider: str) -> list[str]:
    """A provider's entries as the gateway stored them, opened with its master key."""
    box = _box(stack)
    sealed: list[str] = json.loads(_rows(stack)[f"ai_keys:{provider}"])
    return [box.open(value, f"ai-key:{provider}") for value in sealed]


def _post(client: httpx.Client, provider: str, value: Any) -> httpx.Response:
    path, field = ROUTES[provider]
    return client.post(path, json={field: value})


def _saved(client: httpx.Client, provider: str, value: Any) -> list[str]:
    answer = _post(client, provider, value)
    assert answer.status_code == 200, answer.text
    field = ROUTES[provider][1]
    assert client.get(ROUTES[provider][0]).json() == answer.json()
    masked: list[str] = answer.json()[field]
    return masked


def test_keys_are_answered_masked(client: httpx.Client) -> None:
    for provider in ("gemini", "openai", "claude", "ollama"):
        path, field = ROUTES[provider]
        assert client.get(path).json() == {field: []}
    assert _saved(client, "openai", [FIRST, SECOND]) == ["••••1111", "••••2222"]
    assert _saved(client, "gemini", "AIza-one-key-9876") == ["••••9876"]  # one key alone
    # The singular field Figranium's editor sends is read as well.
    one = client.post(ROUTES["gemini"][0], json={"geminiApiKey": "AIza-singular-5432"})
    assert one.status_code == 200, one.text
    assert one.json() == {"geminiApiKeys": ["••••5432"]}
    # Eight characters or fewer show nothing of themselves.
    assert _saved(client, "claude", ["short-12", "  ", "", "longer-key-xyz9", "short-12"]) == [
        "••••",
        "••••xyz9",
    ]


def test_the_masked_list_sent_back_with_one_key_added_keeps_the_stored_keys(
    client: httpx.Client, ai_stack: Stack
) -> None:
    masked = _saved(client, "openai", [FIRST, SECOND])
    assert _saved(client, "openai", [masked[0], THIRD]) == ["••••1111", "••••3333"]
    assert _stored(ai_stack, "openai") == [FIRST, THIRD]
    # Order and duplicates as sent: a masked entry and the same key in full are one key.
    assert _saved(client, "openai", [THIRD, "••••1111", FIRST]) == ["••••3333", "••••1111"]
    assert _stored(ai_stack, "openai") == [THIRD, FIRST]
    assert _saved(client, "openai", []) == []


async def test_the_chain_uses_the_keys_the_settings_routes_saved(
    client: httpx.Client, ai_stack: Stack, fakes: AiFakes
) -> None:
    masked = _saved(client, "claude", [FIRST, SECOND])
    _saved(client, "claude", [masked[1], THIRD, masked[0]])
    fakes.script("claude", SECOND, fail(401))
    fakes.script("claude", THIRD, fail(429))
    fakes.script("claude", FIRST, answer("#found"))
    # A second gateway process, in effect: same database, same master key, same fakes.
    values: dict[str, Any] = {
        "DATABASE_URL": ai_stack.env["DATABASE_URL"],
        "FIGRANIUM_DATA_DIR": Path(ai_stack.env["FIGRANIUM_DATA_DIR"]),
        "ALLOW_PRIVATE_NETWORKS": True,
        **fakes.env,
    }
    config = Config(**values)
    pool = await db.open_pool(config.database_url, max_size=1)
    try:
        chain = AiChain(pool, SecretBox.from_config(config), config)

        async def accept(text: str) -> str:
            return text

        got = await chain.ask(system="s", prompt="p", accept=accept)
    finally:
        await pool.close()
    assert got == AiAnswer(text="#found", provider="claude", key_index=2)
    assert fakes.order() == [("claude", SECOND), ("claude", THIRD), ("claude", FIRST)]


def test_a_dump_of_the_settings_table_shows_no_key(client: httpx.Client, ai_stack: Stack) -> None:
    _saved(client, "gemini", [FIRST])
    _saved(client, "openai", [SECOND])
    _saved(client, "claude", [THIRD])
    _saved(client, "ollama", ["http://ollama-user:pa55-word-77@127.0.0.1:11434"])
    rows = _rows(ai_stack)
    dump = "\n".join(rows.values())
    for secret in (FIRST, SECOND, THIRD, "pa55-word-77", "ollama-user"):
        assert secret not in dump
    for provider in ("gemini", "openai", "claude", "ollama"):
        values = json.loads(rows[f"ai_keys:{provider}"])
        assert len(values) == 1 and values[0].startswith("enc:v1:")


def test_ollama_endpoints_answer_their_urls_without_passwords(
    client: httpx.Client, ai_stack: Stack, fakes: AiFakes
) -> None:
    with_password = "http://me:s3cret-pw@127.0.0.1:11434/"
    entry = json.dumps({"url": fakes.ollama_url("x"), "model": "llama3.2:1b"})
    masked = _saved(client, "ollama", [with_password, entry, "http://127.0.0.1:11434"])
    assert masked == [
        "http://••••@127.0.0.1:11434",
        json.dumps({"url": fakes.ollama_url("x"), "model": "llama3.2:1b"}),
        "http://127.0.0.1:11434",
    ]
    assert _stored(ai_stack, "ollama")[0] == "http://me:s3cret-pw@127.0.0.1:11434"
    # Sent back as answered: the password is kept; the plain duplicate collapses.
    kept = _saved(client, "ollama", [masked[0], masked[1], "http://127.0.0.1:11434/"])
    assert kept == masked
    assert _stored(ai_stack, "ollama")[0] == "http://me:s3cret-pw@127.0.0.1:11434"
    json_masked = json.dumps({"url": "http://me:pw@127.0.0.1:11434", "model": "m"})
    assert _saved(client, "ollama", [json_masked]) == [
        json.dumps({"url": "http://••••@127.0.0.1:11434", "model": "m"}, ensure_ascii=False)
    ]


def test_an_ollama_endpoint_the_outbound_rules_refuse_is_invalid_url(
    client: httpx.Client,
) -> None:
    answer = _post(client, "ollama", ["http://127.0.0.1:11434", "http://169.254.169.254"])
    assert_error(answer, 400, "INVALID_URL")
    assert answer.json()["details"].startswith("ollamaApiKeys[1]: ")
    assert "metadata" in answer.json()["details"]
    entry = json.dumps({"url": "http://169.254.169.254/latest", "model": "m"})
    assert_error(_post(client, "ollama", entry), 400, "INVALID_URL")
    for bad, where in [
        ("ftp://127.0.0.1/", "ollamaApiKeys[0]"),
        ('{"url": 5}', "ollamaApiKeys[0]: url"),
        ('{"url": "http://127.0.0.1", "extra": 1}', "ollamaApiKeys[0]: unknown fields"),
        ("{not json", "ollamaApiKeys[0]: not valid JSON"),
        ("http://127.0.0.1:11434/?q=1", "ollamaApiKeys[0]: the URL may have a path"),
    ]:
        answer = _post(client, "ollama", [bad])
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["details"].startswith(where), (bad, answer.text)
    assert client.get(ROUTES["ollama"][0]).json() == {"ollamaApiKeys": []}


def test_bad_key_bodies_are_refused_naming_the_entry(client: httpx.Client) -> None:
    _saved(client, "openai", [FIRST])
    too_long = client.post(ROUTES["openai"][0], json={"openAiApiKeys": [FIRST, "x" * 513]})
    assert_error(too_long, 400, "API_KEY_TOO_LONG")
    assert too_long.json()["details"].startswith("openAiApiKeys[1]: at most 512")
    cases: list[tuple[Any, str]] = [
        ({}, "openAiApiKeys: required"),
        ({"openAiApiKeys": 5}, "openAiApiKeys: must be a list"),
        ({"openAiApiKeys": None}, "openAiApiKeys: must be a list"),
        ({"openAiApiKeys": [FIRST, 7]}, "openAiApiKeys[1]: must be a string"),
        ({"openAiApiKeys": ["sk key with spaces"]}, "openAiApiKeys[0]: only visible ASCII"),
        ({"openAiApiKeys": ["sk-ключ"]}, "openAiApiKeys[0]: only visible ASCII"),
        ({"openAiApiKeys": ["••••9999"]}, "openAiApiKeys[0]: masked, but matches no"),
        ({"openAiApiKeys": ["••••1111", "••••1111"]}, "openAiApiKeys[1]: masked, but"),
        ({"openAiApiKeys": [f"k-{n:010d}" for n in range(21)]}, "openAiApiKeys: at most 20"),
    ]
    for body, details in cases:
        answer = client.post("/api/settings/openai-api-key", json=body)
        assert_error(answer, 400, "INVALID_BODY")
        assert answer.json()["details"].startswith(details), (body, answer.text)
    assert_error(client.post("/api/settings/openai-api-key", content=b"{nope"), 400, "INVALID_JSON")
    assert_error(client.post("/api/settings/openai-api-key", json=[FIRST]), 400, "INVALID_BODY")
    assert client.get("/api/settings/openai-api-key").json() == {"openAiApiKeys": ["••••1111"]}
    assert _saved(client, "openai", ["x" * 512]) == ["••••xxxx"]


def test_ai_models_default_and_change_one_provider_at_a_time(client: httpx.Client) -> None:
    assert client.get("/api/settings/ai-models").json() == DEFAULT_MODELS
    answer = client.post("/api/settings/ai-models", json={"claude": "  claude-sonnet-4-5  "})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {**DEFAULT_MODELS, "claude": "claude-sonnet-4-5"}
    answer = client.post(
        "/api/settings/ai-models", json={"gemini": "gemini-2.5-pro", "apiKey": "ignored"}
    )
    assert answer.json() == {
        **DEFAULT_MODELS,
        "claude": "claude-sonnet-4-5",
        "gemini": "gemini-2.5-pro",
    }
    assert client.get("/api/settings/ai-models").json() == answer.json()
    # null returns a provider to its default.
    answer = client.post("/api/settings/ai-models", json={"claude": None})
    assert answer.json() == {**DEFAULT_MODELS, "gemini": "gemini-2.5-pro"}
    for body in (
        {"mistral": "large"},
        {"gemini": ""},
        {"gemini": "   "},
        {"openai": 4},
        {"ollama": "m" * 201},
        {"ollama": "bad\nname"},
    ):
        assert_error(client.post("/api/settings/ai-models", json=body), 400, "INVALID_BODY")
    assert client.get("/api/settings/ai-models").json() == answer.json()


def test_every_ai_settings_route_needs_the_api_key(client: httpx.Client) -> None:
    base = str(client.base_url)
    paths = [path for path, _ in ROUTES.values()] + ["/api/settings/ai-models"]
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        for path in paths:
            assert_error(anonymous.get(path), 401)
            assert_error(anonymous.post(path, json={"openAiApiKeys": [FIRST]}), 401)
            assert_error(anonymous.get(path, headers={"x-api-key": "wrong"}), 401)
    assert client.get("/api/settings/openai-api-key").json() == {"openAiApiKeys": []}


def test_the_routes_are_in_the_openapi_document(client: httpx.Client) -> None:
    spec = client.get("/api/openapi.json").json()
    for path in [path for path, _ in ROUTES.values()] + ["/api/settings/ai-models"]:
        assert set(spec["paths"][path]) == {"get", "post"}
        assert "401" in spec["paths"][path]["get"]["responses"]
        assert "400" in spec["paths"][path]["post"]["responses"]


def test_generation_without_a_runner_is_503(client: httpx.Client, fakes: AiFakes) -> None:
    # This stack has no runner: nobody can prepare a page or compile a script.
    client.post("/api/settings/gemini-api-key", json={"geminiApiKeys": ["g-1"]})
    fakes.script("gemini", "g-1", answer("return document.title"))
    script = client.post("/api/tasks/generate-script", json={"description": "the title"})
    assert_error(script, 503, "NO_RUNNER")
    body = {"task": {"url": "http://127.0.0.1:9/"}, "actionIndex": 0, "prompt": "a link"}
    assert_error(client.post("/api/tasks/generate-selector", json=body), 503, "NO_RUNNER")
