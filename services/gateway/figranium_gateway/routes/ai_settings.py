"""AI provider settings: several keys per provider (sealed, answered masked) and model names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from figranium_common.db import Pool
from figranium_common.jsontypes import JsonMapping, JsonValue
from figranium_gateway.ai import keys
from figranium_gateway.ai.keys import MASK, PROVIDERS, Provider
from figranium_gateway.errors import ApiError
from figranium_gateway.request_input import read_json_object, without_credentials
from figranium_gateway.routing import Router
from figranium_gateway.state import BOX, CONFIG, POOL
from figranium_gateway.store import settings as settings_store
from figranium_gateway.validation import check_outbound

log = structlog.get_logger(__name__)
api = Router("settings")

MAX_KEY_LENGTH = 512
MAX_OLLAMA_ENTRY_LENGTH = 2048
MAX_ENTRIES = 20
# Keys travel in headers, so only what a header can carry unchanged: visible ASCII.
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")
FIELDS: dict[Provider, str] = {
    "gemini": "geminiApiKeys",
    "openai": "openAiApiKeys",
    "claude": "claudeApiKeys",
    "ollama": "ollamaApiKeys",
}
NAMES: dict[Provider, str] = {
    "gemini": "Gemini",
    "openai": "OpenAI",
    "claude": "Claude (Anthropic)",
    "ollama": "Ollama",
}

_KEYS_IN = (
    "the whole list, replacing the stored one (one key alone is also taken); an entry equal"
    " to the masked form GET answers keeps that stored key"
)
_KEYS_OUT = "stored keys, masked: •••• and the last four characters"
_OLLAMA_IN = (
    'endpoints, each a URL or the JSON text {"url": "...", "model": "..."}, replacing the'
    " stored list; an entry equal to what GET answers keeps that stored entry"
)
_OLLAMA_OUT = "stored endpoints, any user:password@ in a URL answered as ••••@"


def singular(field: str) -> str:
    """The one-key name Figranium's editor also sends, e.g. ``geminiApiKey``."""
    return field.removesuffix("s")


def _keys_models(provider: Provider) -> tuple[type[BaseModel], type[BaseModel]]:
    """A provider's answer and body models, e.g. ``GeminiKeys`` and ``GeminiKeysBody``."""
    field = FIELDS[provider]
    name = field[0].upper() + field[1:].removesuffix("ApiKeys") + "Keys"
    answered, taken = (_OLLAMA_OUT, _OLLAMA_IN) if provider == "ollama" else (_KEYS_OUT, _KEYS_IN)
    answer: dict[str, Any] = {field: (list[str], Field(description=answered))}
    body: dict[str, Any] = {
        field: (list[str] | str | None, Field(default=None, description=taken)),
        singular(field): (
            str | None,
            Field(default=None, description=f"one entry, read when {field} is absent"),
        ),
    }
    return create_model(name, **answer), create_model(f"{name}Body", **body)


MODELS = {provider: _keys_models(provider) for provider in PROVIDERS}


# --- keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Posted:
    index: int  # in the body's list, for messages
    text: str  # a new key or entry, canonical; or the masked form of a stored one
    masked: bool


def _path(provider: Provider) -> str:
    return f"/api/settings/{provider}-api-key"


def _bad(where: str, details: str, code: str = "INVALID_BODY") -> ApiError:
    return ApiError(400, code, f"{where}: {details}")


def _posted_list(field: str, raw: JsonMapping) -> list[tuple[int, str]]:
    if field not in raw and singular(field) in raw:
        field = singular(field)
    if field not in raw:
        raise _bad(field, "required: a list of keys (or one key)")
    value = raw[field]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _bad(field, f"must be a list of strings, not {type(value).__name__}")
    if len(items) > MAX_ENTRIES:
        raise _bad(field, f"at most {MAX_ENTRIES} entries")
    posted = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise _bad(f"{field}[{index}]", f"must be a string, not {type(item).__name__}")
        if item.strip():
            posted.append((index, item.strip()))
    return posted


def _checked_key(where: str, text: str) -> str:
    if len(text) > MAX_KEY_LENGTH:
        raise _bad(where, f"at most {MAX_KEY_LENGTH} characters", "API_KEY_TOO_LONG")
    if not _KEY_CHARS.match(text):
        raise _bad(where, "only visible ASCII characters (keys are sent as headers)")
    return text


async def _checked_endpoint(where: str, text: str, *, allow_private: bool) -> str:
    """The entry as stored, once its URL passed the outbound rules (SSRF)."""
    if len(text) > MAX_OLLAMA_ENTRY_LENGTH:
        raise _bad(where, f"at most {MAX_OLLAMA_ENTRY_LENGTH} characters")
    try:
        endpoint = keys.parse_ollama(text)
        parts = urlsplit(endpoint.url)
    except (keys.BadEntry, ValueError) as exc:
        raise _bad(where, str(exc)) from None
    if parts.query or parts.fragment:
        raise _bad(where, "the URL may have a path, but no query or fragment")
    await check_outbound(endpoint.url, where, allow_private=allow_private)
    return endpoint.text()


async def _read_posted(
    provider: Provider, raw: JsonMapping, *, allow_private: bool
) -> list[_Posted]:
    field = FIELDS[provider]
    posted: list[_Posted] = []
    for index, text in _posted_list(field, raw):
        where = f"{field}[{index}]"
        if MASK in text:
            # What GET answered, sent back: it stands for a stored entry, matched when saving.
            if provider == "ollama":
                try:
                    text = keys.parse_ollama(text).text()
                except keys.BadEntry as exc:
                    raise _bad(where, str(exc)) from None
            posted.append(_Posted(index, text, masked=True))
        elif provider == "ollama":
            checked = await _checked_endpoint(where, text, allow_private=allow_private)
            posted.append(_Posted(index, checked, masked=False))
        else:
            posted.append(_Posted(index, _checked_key(where, text), masked=False))
    return posted


def masked_entries(app: web.Application, provider: Provider, stored: JsonValue) -> list[str]:
    """A provider's stored keys (or endpoints) as GET answers them."""
    entries = keys.open_entries(app[BOX], provider, stored)
    return [keys.mask_entry(provider, entry.plain) for entry in entries]


async def stored_entries(app: web.Application, provider: Provider) -> list[str]:
    stored = await settings_store.get_setting(app[POOL], keys.keys_setting(provider))
    return masked_entries(app, provider, stored)


async def replace_entries(app: web.Application, provider: Provider, raw: JsonMapping) -> list[str]:
    """Replace a provider's keys with the body's list (``POST``'s rules: checked, sealed,
    masked entries standing for stored ones); answers them masked."""
    field = FIELDS[provider]
    posted = await _read_posted(provider, raw, allow_private=app[CONFIG].allow_private_networks)
    box = app[BOX]

    def replace(stored: JsonValue) -> list[str]:
        available = keys.open_entries(box, provider, stored)
        saved: list[str] = []
        seen: set[str] = set()
        for item in posted:
            if item.masked:
                match = next(
                    (e for e in available if keys.mask_entry(provider, e.plain) == item.text),
                    None,
                )
                if match is None:
                    raise _bad(
                        f"{field}[{item.index}]",
                        "masked, but matches no stored entry: send the whole key",
                    )
                available.remove(match)
                identity, sealed = match.plain or match.sealed, match.sealed
            else:
                identity = item.text
                sealed = box.seal(item.text, keys.purpose(provider))
            if identity not in seen:
                seen.add(identity)
                saved.append(sealed)
        return saved

    saved = await settings_store.update_setting(app[POOL], keys.keys_setting(provider), replace)
    log.info("settings.ai_keys_saved", provider=provider, count=len(saved))
    return masked_entries(app, provider, saved)


def _register(provider: Provider) -> None:
    field, name, path = FIELDS[provider], NAMES[provider], _path(provider)
    answer_model, body_model = MODELS[provider]
    what = "endpoints" if provider == "ollama" else "API keys"

    async def get_keys(request: web.Request) -> web.Response:
        return web.json_response({field: await stored_entries(request.app, provider)})

    async def set_keys(request: web.Request) -> web.Response:
        raw = await read_json_object(request)
        return web.json_response({field: await replace_entries(request.app, provider, raw)})

    get_keys.__name__ = f"get_{provider}_keys"
    set_keys.__name__ = f"set_{provider}_keys"
    api.get(path, f"{name} {what}, masked", responses={200: answer_model})(get_keys)
    api.post(
        path,
        f"Replace the {name} {what} (stored encrypted); answers them masked",
        body=body_model,
        responses={200: answer_model, 400: None},
    )(set_keys)


for _provider in PROVIDERS:
    _register(_provider)


# --- model names ------------------------------------------------------------------------

ModelName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=keys.MAX_MODEL_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
    ),
]


class AiModels(BaseModel):
    gemini: str
    openai: str
    claude: str
    ollama: str = Field(description="for Ollama endpoints saved without a model of their own")


class AiModelsBody(BaseModel):
    """Only the providers given change; null returns one to its default."""

    model_config = ConfigDict(extra="forbid")

    gemini: ModelName | None = Field(default=None, description="default gemini-2.5-flash")
    openai: ModelName | None = Field(default=None, description="default gpt-4o-mini")
    claude: ModelName | None = Field(default=None, description="default claude-3-5-haiku-latest")
    ollama: ModelName | None = Field(default=None, description="default gemma4:e2b")


def _models_answer(stored: JsonValue) -> web.Response:
    return web.json_response(AiModels.model_validate(keys.models_from(stored)).model_dump())


@api.get(
    "/api/settings/ai-models", "The model each AI provider is asked with", responses={200: AiModels}
)
async def get_ai_models(request: web.Request) -> web.Response:
    return _models_answer(await settings_store.get_setting(request.app[POOL], keys.MODELS_SETTING))


@api.post(
    "/api/settings/ai-models",
    "Change the model of some AI providers (the others keep theirs)",
    body=AiModelsBody,
    responses={200: AiModels, 400: None},
)
async def set_ai_models(request: web.Request) -> web.Response:
    body = AiModelsBody.model_validate(without_credentials(await read_json_object(request)))
    return _models_answer(await change_models(request.app[POOL], body))


async def change_models(pool: Pool, body: AiModelsBody) -> JsonValue:
    """Store the models the body gives (null: back to the default); answers them all."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}

    def change(stored: JsonValue) -> dict[str, str]:
        models = {
            provider: value
            for provider, value in (stored.items() if isinstance(stored, dict) else [])
            if provider in PROVIDERS and isinstance(value, str)
        }
        for provider, value in changes.items():
            if value is None:
                models.pop(provider, None)
            else:
                models[provider] = value
        return models

    return await settings_store.update_setting(pool, keys.MODELS_SETTING, change)
