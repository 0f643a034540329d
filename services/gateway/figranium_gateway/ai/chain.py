"""The provider chain: Gemini → OpenAI → Claude → Ollama, each key in turn, first accepted wins.

A key that fails (refused, rate limited, server error, timeout, network, empty answer) hands
over to the provider's next key; an answer the caller rejects hands over to the next
provider, since another model may do better where this one did not. Keys are read from the
database on every question, so every replica uses what was saved last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from figranium_common.config import Config
from figranium_common.db import Pool
from figranium_common.errors import FigraniumError
from figranium_common.secretbox import SecretBox
from figranium_gateway.ai import keys
from figranium_gateway.ai.keys import PROVIDERS, Provider, StoredEntry
from figranium_gateway.ai.providers import (
    KeyFailed,
    Question,
    ask_claude,
    ask_gemini,
    ask_ollama,
    ask_openai,
    failure,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AiAnswer:
    text: str  # the accepted (cleaned) answer
    provider: str  # "gemini" | "openai" | "claude" | "ollama"
    key_index: int  # which key (0-based) of that provider answered


class NoAiKeys(FigraniumError):
    """No provider has a key (or Ollama endpoint) configured."""

    code = "NO_AI_KEYS"


class AllProvidersFailed(FigraniumError):
    """Every configured provider was tried and none gave an accepted answer."""

    code = "AI_FAILED"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class AnswerRejected(FigraniumError):
    """Raised by an ``accept`` callback: the answer is unusable (the reason says why)."""

    code = "ANSWER_REJECTED"


@dataclass(frozen=True)
class KeyRing:
    """What is configured at one moment: each provider's entries and model."""

    entries: dict[Provider, list[StoredEntry]]
    models: dict[Provider, str]

    @property
    def configured(self) -> bool:
        """Whether any provider has a key or endpoint (so ``ask`` would not raise NoAiKeys)."""
        return any(self.entries.values())


# Gets the raw model text; returns the cleaned accepted answer or raises AnswerRejected.
Accept = Callable[[str], Awaitable[str]]

_ASKERS: dict[Provider, Callable[[str, Question, Config], Awaitable[str]]] = {
    "gemini": ask_gemini,
    "openai": ask_openai,
    "claude": ask_claude,
}


class AiChain:
    """One per gateway process: it also remembers which keys are cooling down after a 429."""

    def __init__(self, pool: Pool, box: SecretBox, config: Config) -> None:
        self._pool = pool
        self._box = box
        self._config = config
        # key digest → monotonic time it may be tried again; never the key itself.
        self._cooling: dict[str, float] = {}

    async def keyring(self) -> KeyRing:
        """The keys, endpoints and models saved now; read once per request, then asked."""
        entries, stored_models = await keys.load_all(self._pool, self._box)
        return KeyRing(entries, keys.models_from(stored_models))

    async def ask(
        self, *, system: str, prompt: str, accept: Accept, keyring: KeyRing | None = None
    ) -> AiAnswer:
        ring = keyring or await self.keyring()
        if not ring.configured:
            raise NoAiKeys(
                "no AI provider is configured: save a key with POST"
                " /api/settings/{gemini,openai,claude}-api-key or an endpoint with"
                " /api/settings/ollama-api-key"
            )
        self._forget_cooled()
        reasons: list[str] = []
        for provider in PROVIDERS:
            if not ring.entries[provider]:
                continue
            outcome = await self._ask_provider(
                provider, ring.entries[provider], ring.models[provider], system, prompt, accept
            )
            if isinstance(outcome, AiAnswer):
                return outcome
            reasons.append(f"{provider}: " + "; ".join(outcome))
        raise AllProvidersFailed(reasons)

    async def _ask_provider(
        self,
        provider: Provider,
        entries: list[StoredEntry],
        model: str,
        system: str,
        prompt: str,
        accept: Accept,
    ) -> AiAnswer | list[str]:
        """The accepted answer, or one note per key tried."""
        notes: list[str] = []
        noun = "endpoint" if provider == "ollama" else "key"
        for index, entry in enumerate(entries):
            label = f"{noun} {index + 1}"
            try:
                raw = await self._ask_one(provider, entry, model, system, prompt)
            except KeyFailed as exc:
                notes.append(f"{label} {exc.details}")
                log.warning("ai.key_failed", provider=provider, key_index=index, reason=exc.details)
                continue
            try:
                text = await accept(raw)
            except AnswerRejected as exc:
                notes.append(f"{label} answer rejected: {exc.details}")
                log.info(
                    "ai.answer_rejected", provider=provider, key_index=index, reason=exc.details
                )
                return notes  # the same model with another key would answer alike
            log.info("ai.answered", provider=provider, key_index=index)
            return AiAnswer(text=text, provider=provider, key_index=index)
        return notes

    async def _ask_one(
        self, provider: Provider, entry: StoredEntry, model: str, system: str, prompt: str
    ) -> str:
        """The raw answer of one key; KeyFailed when there is none."""
        if entry.plain is None:
            raise KeyFailed("cannot be decrypted (was FIGRANIUM_MASTER_KEY changed?)")
        secret = entry.plain
        digest = keys.key_digest(provider, secret)
        left = self._cooling.get(digest, 0.0) - time.monotonic()
        if left > 0:
            raise KeyFailed(f"cooling down after 429 ({left:.0f}s left)")
        timeout = self._config.ai_timeout_seconds
        try:
            # The SDKs have their own timeouts; this bounds client setup and reading too.
            async with asyncio.timeout(timeout):
                if provider == "ollama":
                    try:
                        endpoint = keys.parse_ollama(secret)
                    except keys.BadEntry as exc:
                        raise KeyFailed(f"is not a valid entry: {exc}") from None
                    question = Question(system, prompt, endpoint.model or model, timeout)
                    secret = ""  # an endpoint's messages never show its userinfo
                    raw = await ask_ollama(endpoint, question, self._config)
                else:
                    question = Question(system, prompt, model, timeout)
                    raw = await _ASKERS[provider](secret, question, self._config)
        except KeyFailed as exc:
            self._note_rate_limit(exc, digest)
            raise
        except Exception as exc:
            failed = failure(exc, secret, timeout)
            self._note_rate_limit(failed, digest)
            raise failed from None
        if not raw.strip():
            raise KeyFailed("gave an empty answer")
        return raw

    def _note_rate_limit(self, failed: KeyFailed, digest: str) -> None:
        cooldown = self._config.ai_rate_limit_cooldown_seconds
        if failed.rate_limited and cooldown > 0:
            self._cooling[digest] = time.monotonic() + cooldown

    def _forget_cooled(self) -> None:
        now = time.monotonic()
        for digest in [d for d, until in self._cooling.items() if until <= now]:
            del self._cooling[digest]
