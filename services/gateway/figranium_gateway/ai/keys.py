"""AI provider keys and model names in the ``settings`` table: sealed, parsed, masked.

Each provider's keys are one row, ``ai_keys:<provider>``, a JSON list of strings each sealed
with the SecretBox (purpose ``ai-key:<provider>``), so a dump of the table shows none of
them. Ollama has endpoints instead of keys: a plain URL, or the JSON text
``{"url": …, "model": …}``; they are sealed too, since a URL may carry a password.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

from figranium_common.db import Pool
from figranium_common.jsontypes import JsonValue
from figranium_common.secretbox import SecretBox, SecretError
from figranium_gateway.store import settings

Provider = Literal["gemini", "openai", "claude", "ollama"]
# The order the chain tries them in.
PROVIDERS: Final[tuple[Provider, ...]] = ("gemini", "openai", "claude", "ollama")
DEFAULT_MODELS: Final[dict[Provider, str]] = {
    "gemini": "gemini-2.5-flash",
    "openai": "gpt-4o-mini",
    "claude": "claude-3-5-haiku-latest",
    "ollama": "gemma4:e2b",
}
MODELS_SETTING = "ai_models"
MASK = "••••"
MAX_MODEL_LENGTH = 200


def keys_setting(provider: Provider) -> str:
    return f"ai_keys:{provider}"


def purpose(provider: Provider) -> str:
    return f"ai-key:{provider}"


def mask_key(key: str) -> str:
    """What GET answers for a key: its last four characters, and only for a long key."""
    return MASK + key[-4:] if len(key) > 8 else MASK


def key_digest(provider: Provider, key: str) -> str:
    """How in-memory bookkeeping (cool-downs) names a key without holding it."""
    return hashlib.sha256(f"{provider}\0{key}".encode()).hexdigest()


# --- Ollama endpoints -------------------------------------------------------------------


@dataclass(frozen=True)
class OllamaEndpoint:
    url: str  # without a trailing "/"; may carry user:password@
    model: str | None  # None: the configured Ollama model
    as_json: bool  # written as {"url", "model"} rather than a plain URL

    def text(self, *, masked: bool = False) -> str:
        """The entry as stored (or, masked, as answered)."""
        url = mask_userinfo(self.url) if masked else self.url
        if not self.as_json:
            return url
        entry = {"url": url} if self.model is None else {"url": url, "model": self.model}
        return json.dumps(entry, ensure_ascii=False)


class BadEntry(ValueError):
    """An Ollama entry that is neither a URL nor ``{"url", "model"}`` JSON."""


def parse_ollama(entry: str) -> OllamaEndpoint:
    text = entry.strip()
    if not text.startswith("{"):
        return OllamaEndpoint(url=text.rstrip("/"), model=None, as_json=False)
    try:
        data: JsonValue = json.loads(text)
    except ValueError as exc:
        raise BadEntry(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadEntry('must be a URL or {"url": "...", "model": "..."}')
    unknown = set(data) - {"url", "model"}
    if unknown:
        raise BadEntry(f"unknown fields {sorted(unknown)} (only url and model)")
    url, model = data.get("url"), data.get("model")
    if not isinstance(url, str) or not url.strip():
        raise BadEntry("url: required, a string")
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise BadEntry("model: must be a non-empty string")
        if len(model.strip()) > MAX_MODEL_LENGTH:
            raise BadEntry(f"model: at most {MAX_MODEL_LENGTH} characters")
        model = model.strip()
    return OllamaEndpoint(url=url.strip().rstrip("/"), model=model, as_json=True)


def mask_userinfo(url: str) -> str:
    """The URL with any ``user:password@`` replaced by ``••••@``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


def mask_entry(provider: Provider, plain: str | None) -> str:
    """What GET answers for one stored entry (None: it could not be decrypted)."""
    if plain is None:
        return MASK
    if provider != "ollama":
        return mask_key(plain)
    try:
        return parse_ollama(plain).text(masked=True)
    except BadEntry:
        return MASK


# --- storage ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEntry:
    sealed: str
    plain: str | None  # None when the master key cannot open it


def open_entries(box: SecretBox, provider: Provider, stored: JsonValue) -> list[StoredEntry]:
    if not isinstance(stored, list):
        return []
    entries = []
    for sealed in stored:
        if not isinstance(sealed, str) or not sealed:
            continue
        try:
            plain: str | None = box.open(sealed, purpose(provider))
        except SecretError:
            plain = None
        entries.append(StoredEntry(sealed, plain))
    return entries


async def load_all(
    pool: Pool, box: SecretBox
) -> tuple[dict[Provider, list[StoredEntry]], JsonValue]:
    """Every provider's entries and the stored model names, in one round trip."""
    names = [keys_setting(provider) for provider in PROVIDERS] + [MODELS_SETTING]
    rows = await settings.get_settings(pool, names)
    entries = {
        provider: open_entries(box, provider, rows.get(keys_setting(provider)))
        for provider in PROVIDERS
    }
    return entries, rows.get(MODELS_SETTING)


def models_from(stored: JsonValue) -> dict[Provider, str]:
    """The model name per provider: the stored ones over the defaults."""
    models = dict(DEFAULT_MODELS)
    if isinstance(stored, dict):
        for provider in PROVIDERS:
            value = stored.get(provider)
            if isinstance(value, str) and value.strip():
                models[provider] = value.strip()
    return models
