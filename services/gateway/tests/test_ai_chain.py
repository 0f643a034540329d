"""The AI provider chain against a real PostgreSQL and the real SDKs talking to local fakes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from figranium_common import db
from figranium_common.config import Config
from figranium_common.secretbox import SecretBox
from figranium_devstack.ports import free_port
from figranium_gateway.ai import AiAnswer, AiChain, AllProvidersFailed, AnswerRejected, NoAiKeys
from figranium_gateway.ai.keys import Provider
from figranium_gateway.store import settings
from tests.integration.ai_fakes import ANY_KEY, AiFakes, answer, fail, stall

BOX = SecretBox(bytes(range(32)))
GEMINI_KEYS = ("AIza-gemini-key-one-1111", "AIza-gemini-key-two-2222")
OPENAI_KEYS = ("sk-openai-key-one-3333", "sk-openai-key-two-4444")
CLAUDE_KEYS = ("sk-ant-claude-key-one-5555",)


@pytest.fixture
async def pool(pool: db.Pool) -> db.Pool:
    """The module's database without AI settings of an earlier test."""
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM settings WHERE key LIKE 'ai\\_%'")
    return pool


@pytest.fixture
def fakes() -> Iterator[AiFakes]:
    with AiFakes() as started:
        yield started


def _config(fakes: AiFakes, **extra: Any) -> Config:
    values: dict[str, Any] = {
        "GEMINI_BASE_URL": fakes.gemini_base_url,
        "OPENAI_BASE_URL": fakes.openai_base_url,
        "ANTHROPIC_BASE_URL": fakes.anthropic_base_url,
        "AI_TIMEOUT_SECONDS": 5,
        "ALLOW_PRIVATE_NETWORKS": True,
        **extra,
    }
    return Config(**values)


def _chain(pool: db.Pool, fakes: AiFakes, **extra: Any) -> AiChain:
    return AiChain(pool, BOX, _config(fakes, **extra))


async def _keys(pool: db.Pool, provider: Provider, *entries: str, box: SecretBox = BOX) -> None:
    sealed = [box.seal(entry, f"ai-key:{provider}") for entry in entries]
    await settings.set_setting(pool, f"ai_keys:{provider}", sealed)


async def _take(text: str) -> str:
    return text.strip()


async def _ask(chain: AiChain) -> AiAnswer:
    return await chain.ask(system="be brief", prompt="find the button", accept=_take)


async def test_gemini_is_asked_first_with_the_system_prompt_and_model(
    pool: db.Pool, fakes: AiFakes
) -> None:
    await _keys(pool, "gemini", GEMINI_KEYS[0])
    await _keys(pool, "openai", OPENAI_KEYS[0])
    fakes.script("gemini", ANY_KEY, answer("  #submit  "))
    fakes.script("openai", ANY_KEY, answer("#other"))

    got = await _ask(_chain(pool, fakes))

    assert got == AiAnswer(text="#submit", provider="gemini", key_index=0)
    [call] = fakes.calls_to()
    assert (call.provider, call.key, call.model) == ("gemini", GEMINI_KEYS[0], "gemini-2.5-flash")
    assert (call.system, call.prompt) == ("be brief", "find the button")


async def test_providers_are_tried_in_order_gemini_openai_claude_ollama(
    pool: db.Pool, fakes: AiFakes
) -> None:
    await _keys(pool, "ollama", fakes.ollama_url("local"))
    await _keys(pool, "claude", CLAUDE_KEYS[0])
    await _keys(pool, "openai", OPENAI_KEYS[0])
    await _keys(pool, "gemini", GEMINI_KEYS[0])
    fakes.script("gemini", ANY_KEY, fail(403))
    fakes.script("openai", ANY_KEY, fail(500))
    fakes.script("claude", ANY_KEY, fail(503))
    fakes.script("ollama", "local", answer("button.primary"))

    got = await _ask(_chain(pool, fakes))

    assert got == AiAnswer(text="button.primary", provider="ollama", key_index=0)
    assert fakes.order() == [
        ("gemini", GEMINI_KEYS[0]),
        ("openai", OPENAI_KEYS[0]),
        ("claude", CLAUDE_KEYS[0]),
        ("ollama", "local"),
    ]
    assert [call.model for call in fakes.calls_to()] == [
        "gemini-2.5-flash",
        "gpt-4o-mini",
        "claude-3-5-haiku-latest",
        "gemma4:e2b",
    ]


async def test_a_refused_key_hands_over_to_the_next_key(pool: db.Pool, fakes: AiFakes) -> None:
    await _keys(pool, "openai", *OPENAI_KEYS)
    fakes.script("openai", OPENAI_KEYS[0], fail(401))
    fakes.script("openai", OPENAI_KEYS[1], answer("#ok"))

    with capture_logs() as logs:
        got = await _ask(_chain(pool, fakes))

    assert got == AiAnswer(text="#ok", provider="openai", key_index=1)
    assert fakes.order() == [("openai", OPENAI_KEYS[0]), ("openai", OPENAI_KEYS[1])]
    failed = [entry for entry in logs if entry["event"] == "ai.key_failed"]
    assert failed == [
        {
            "event": "ai.key_failed",
            "log_level": "warning",
            "provider": "openai",
            "key_index": 0,
            "reason": "refused the key (401)",
        }
    ]
    answered = [entry for entry in logs if entry["event"] == "ai.answered"]
    assert answered == [
        {"event": "ai.answered", "log_level": "info", "provider": "openai", "key_index": 1}
    ]
    assert not any(key in repr(logs) for key in OPENAI_KEYS)


async def test_a_provider_whose_keys_all_fail_hands_over_to_the_next(
    pool: db.Pool, fakes: AiFakes
) -> None:
    await _keys(pool, "gemini", *GEMINI_KEYS)
    await _keys(pool, "claude", *CLAUDE_KEYS)
    fakes.script("gemini", ANY_KEY, fail(500))
    fakes.script("claude", ANY_KEY, answer("text=Save"))

    got = await _ask(_chain(pool, fakes))

    assert got == AiAnswer(text="text=Save", provider="claude", key_index=0)
    assert fakes.order() == [*(("gemini", key) for key in GEMINI_KEYS), ("claude", CLAUDE_KEYS[0])]


async def test_a_rate_limited_key_is_left_out_until_its_cool_down_ends(
    pool: db.Pool, fakes: AiFakes
) -> None:
    await _keys(pool, "gemini", *GEMINI_KEYS)
    fakes.script("gemini", GEMINI_KEYS[0], fail(429))
    fakes.script("gemini", GEMINI_KEYS[1], answer("#a"))
    chain = _chain(pool, fakes, AI_RATE_LIMIT_COOLDOWN_SECONDS=1.0)

    assert (await _ask(chain)).key_index == 1
    assert (await _ask(chain)).key_index == 1
    assert fakes.order() == [
        ("gemini", GEMINI_KEYS[0]),
        ("gemini", GEMINI_KEYS[1]),
        ("gemini", GEMINI_KEYS[1]),  # the second question skipped the cooling key
    ]

    # Another gateway process has its own cool-downs.
    fakes.reset()
    fakes.script("gemini", ANY_KEY, answer("#b"))
    assert (await _ask(_chain(pool, fakes))).key_index == 0

    await asyncio.sleep(1.1)
    fakes.reset()
    fakes.script("gemini", ANY_KEY, answer("#c"))
    assert await _ask(chain) == AiAnswer(text="#c", provider="gemini", key_index=0)


async def test_a_cooling_key_is_named_in_the_reasons(pool: db.Pool, fakes: AiFakes) -> None:
    await _keys(pool, "gemini", GEMINI_KEYS[0])
    fakes.script("gemini", ANY_KEY, fail(429))
    chain = _chain(pool, fakes)

    with pytest.raises(AllProvidersFailed) as first:
        await _ask(chain)
    assert first.value.reasons == ["gemini: key 1 rate limited (429)"]
    with pytest.raises(AllProvidersFailed) as second:
        await _ask(chain)
    assert second.value.reasons[0].startswith("gemini: key 1 cooling down after 429 (")
    assert len(fakes.calls_to()) == 1


@pytest.mark.parametrize("provider", ["gemini", "openai", "claude", "ollama"])
async def test_a_key_that_times_out_hands_over_to_the_next(
    pool: db.Pool, fakes: AiFakes, provider: Provider
) -> None:
    slow, quick = ("slow", "quick") if provider == "ollama" else ("key-slow-0001", "key-quick-002")
    if provider == "ollama":
        await _keys(pool, provider, fakes.ollama_url(slow), fakes.ollama_url(quick))
    else:
        await _keys(pool, provider, slow, quick)
    fakes.script(provider, slow, stall(10))
    fakes.script(provider, quick, answer("#fast"))

    # Long enough for a quick answer on a loaded machine (an SDK's first call builds its
    # client), far shorter than the stall.
    started = time.monotonic()
    with capture_logs() as logs:
        got = await _ask(_chain(pool, fakes, AI_TIMEOUT_SECONDS=2))

    assert got == AiAnswer(text="#fast", provider=provider, key_index=1)
    assert time.monotonic() - started < 8
    [failed] = [entry for entry in logs if entry["event"] == "ai.key_failed"]
    assert failed["reason"] == "timed out after 2s"


async def test_a_rejected_answer_hands_over_to_the_next_provider_not_the_next_key(
    pool: db.Pool, fakes: AiFakes
) -> None:
    await _keys(pool, "gemini", *GEMINI_KEYS)
    await _keys(pool, "openai", OPENAI_KEYS[0])
    fakes.script("gemini", ANY_KEY, answer("#missing"))
    fakes.script("openai", ANY_KEY, answer("```css\n#found\n```"))

    async def accept(text: str) -> str:
        cleaned = text.strip().removeprefix("```css").removesuffix("```").strip()
        if cleaned != "#found":
            raise AnswerRejected(f"the selector {cleaned} matches nothing")
        return cleaned

    got = await _chain(pool, fakes).ask(system="s", prompt="p", accept=accept)

    assert got == AiAnswer(text="#found", provider="openai", key_index=0)
    assert fakes.order() == [("gemini", GEMINI_KEYS[0]), ("openai", OPENAI_KEYS[0])]


async def test_an_empty_answer_hands_over_to_the_next_key(pool: db.Pool, fakes: AiFakes) -> None:
    await _keys(pool, "claude", "claude-key-aaaa", "claude-key-bbbb")
    fakes.script("claude", "claude-key-aaaa", answer("   "))
    fakes.script("claude", "claude-key-bbbb", answer("#b"))

    assert await _ask(_chain(pool, fakes)) == AiAnswer("#b", "claude", 1)


async def test_nothing_configured_is_no_ai_keys(pool: db.Pool, fakes: AiFakes) -> None:
    chain = _chain(pool, fakes)
    assert (await chain.keyring()).configured is False
    with pytest.raises(NoAiKeys) as raised:
        await _ask(chain)
    assert raised.value.code == "NO_AI_KEYS"
    await _keys(pool, "gemini")  # an empty list is nothing configured too
    with pytest.raises(NoAiKeys):
        await _ask(chain)
    await _keys(pool, "ollama", fakes.ollama_url())
    assert (await chain.keyring()).configured is True
    assert fakes.calls_to() == []


async def test_every_failure_gives_one_reason_per_provider_and_no_key(
    pool: db.Pool, fakes: AiFakes
) -> None:
    await _keys(pool, "gemini", *GEMINI_KEYS)
    await _keys(pool, "openai", *OPENAI_KEYS)
    await _keys(pool, "claude", *CLAUDE_KEYS)
    dead = f"http://admin:hunter2-secret@127.0.0.1:{free_port()}"
    await _keys(pool, "ollama", dead, fakes.ollama_url("empty"))
    fakes.script("gemini", GEMINI_KEYS[0], fail(401))
    fakes.script("gemini", GEMINI_KEYS[1], fail(429))
    fakes.script("openai", ANY_KEY, fail(500))
    fakes.script("claude", ANY_KEY, answer("div > span"))
    fakes.script("ollama", "empty", fail(404))

    async def accept(text: str) -> str:
        raise AnswerRejected("the selector matches nothing")

    with pytest.raises(AllProvidersFailed) as raised:
        await _chain(pool, fakes).ask(system="s", prompt="p", accept=accept)

    failed = raised.value
    assert failed.code == "AI_FAILED"
    assert len(failed.reasons) == 4
    gemini, openai, claude, ollama = failed.reasons
    assert gemini == "gemini: key 1 refused the key (401); key 2 rate limited (429)"
    assert openai == "openai: key 1 server error (500); key 2 server error (500)"
    assert claude == "claude: key 1 answer rejected: the selector matches nothing"
    assert ollama.startswith("ollama: endpoint 1 POST http://127.0.0.1:")
    assert ollama.endswith("; endpoint 2 HTTP 404: Not found")
    assert failed.details == "; ".join(failed.reasons)
    secrets = (*GEMINI_KEYS, *OPENAI_KEYS, *CLAUDE_KEYS, "hunter2", "admin")
    assert not any(secret in failed.details for secret in secrets)


async def test_ollama_entries_plain_url_and_json_with_its_own_model(
    pool: db.Pool, fakes: AiFakes
) -> None:
    json_entry = json.dumps({"url": fakes.ollama_url("second"), "model": "llama3.2:1b"})
    with_password = fakes.ollama_url("first").replace("http://", "http://me:pa55word@")
    await _keys(pool, "ollama", with_password, json_entry)
    fakes.script("ollama", "first", fail(500))
    fakes.script("ollama", "second", answer("#json"))

    got = await _ask(_chain(pool, fakes))

    assert got == AiAnswer(text="#json", provider="ollama", key_index=1)
    first, second = fakes.calls_to("ollama")
    assert (first.key, first.model) == ("first", "gemma4:e2b")
    assert first.authorization == "Basic " + base64.b64encode(b"me:pa55word").decode()
    assert (second.key, second.model, second.authorization) == ("second", "llama3.2:1b", None)
    assert (second.system, second.prompt) == ("be brief", "find the button")


async def test_models_come_from_the_ai_models_setting(pool: db.Pool, fakes: AiFakes) -> None:
    await settings.set_setting(pool, "ai_models", {"openai": "gpt-4.1", "ollama": "qwen3"})
    await _keys(pool, "openai", OPENAI_KEYS[0])
    await _keys(pool, "ollama", fakes.ollama_url())
    fakes.script("openai", ANY_KEY, fail(401))

    assert (await _ask(_chain(pool, fakes))).provider == "ollama"
    assert [call.model for call in fakes.calls_to()] == ["gpt-4.1", "qwen3"]


async def test_keys_are_read_again_for_every_question(pool: db.Pool, fakes: AiFakes) -> None:
    chain = _chain(pool, fakes)
    fakes.script("gemini", ANY_KEY, answer("#x"))
    await _keys(pool, "gemini", GEMINI_KEYS[0])
    await _ask(chain)
    await _keys(pool, "gemini", GEMINI_KEYS[1])  # saved by another replica, say
    await _ask(chain)
    assert fakes.order() == [("gemini", GEMINI_KEYS[0]), ("gemini", GEMINI_KEYS[1])]


async def test_a_key_sealed_under_another_master_key_is_skipped(
    pool: db.Pool, fakes: AiFakes
) -> None:
    other = SecretBox(bytes(32))
    await settings.set_setting(
        pool,
        "ai_keys:gemini",
        [other.seal(GEMINI_KEYS[0], "ai-key:gemini"), BOX.seal(GEMINI_KEYS[1], "ai-key:gemini")],
    )
    fakes.script("gemini", ANY_KEY, answer("#y"))

    assert await _ask(_chain(pool, fakes)) == AiAnswer("#y", "gemini", 1)
    assert fakes.order() == [("gemini", GEMINI_KEYS[1])]


async def test_an_ollama_endpoint_refused_by_the_outbound_rules_is_not_called(
    pool: db.Pool, fakes: AiFakes
) -> None:
    await _keys(pool, "ollama", fakes.ollama_url("x"))
    with pytest.raises(AllProvidersFailed) as raised:
        await _ask(_chain(pool, fakes, ALLOW_PRIVATE_NETWORKS=False))
    assert "blocked address (loopback)" in raised.value.details
    assert fakes.calls_to() == []
