"""The console's general settings: the API key, AI keys and models, the webhook signing
secret, the selector finder and the captcha solver; each a small plain form.

Every form saves through the function its ``/api/settings/*`` route saves with
(``api_key_change``, ``routes.ai_settings``, ``routes.webhooks``, ``routes.settings``,
``routes.captcha_settings``), so the console accepts and refuses exactly what the API
does. Secrets are shown as the API shows them: masked, or once, right after they are made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import get_args

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError

from figranium_common.jsontypes import JsonValue
from figranium_gateway.ai import keys
from figranium_gateway.ai.keys import DEFAULT_MODELS, PROVIDERS, Provider
from figranium_gateway.api_key import MIN_API_KEY_LENGTH
from figranium_gateway.api_key_change import (
    MAX_API_KEY_LENGTH,
    check_key_length,
    check_key_text,
    refuse_environment_key,
    replace_api_key,
)
from figranium_gateway.console import sessions
from figranium_gateway.console.execution_pages import shown_time
from figranium_gateway.console.gate import SESSION, SIGN_IN, session_of
from figranium_gateway.console.rendering import render, see_other
from figranium_gateway.errors import ApiError, describe_validation_error
from figranium_gateway.routes import ai_settings, captcha_settings, webhooks
from figranium_gateway.routes import settings as settings_routes
from figranium_gateway.routing import Router
from figranium_gateway.state import AUTH, POOL
from figranium_gateway.store import settings as settings_store

api = Router("console")

SETTINGS = "/console/settings"
SAVED = "saved"  # the query flag naming what was just saved
_HTML = {200: "text/html"}
_FORM_ANSWERS: dict[int, type[BaseModel] | None] = {303: None, 400: None, 403: None}
_FORM_PAGES = {400: "text/html"}
KEY_OPERATIONS = ("add", "replace", "clear")
NOTICES: dict[str, str] = {
    **{provider: f"The {ai_settings.NAMES[provider]} keys are saved." for provider in PROVIDERS},
    "ollama": "The Ollama endpoints are saved.",
    "models": "The AI models are saved.",
    "finder": "The selector finder is saved.",
    "captcha": "The captcha solver is saved.",
}


def _text(form: MultiMapping[object], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


async def _page(
    request: web.Request,
    *,
    error: tuple[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    """The settings page; ``error`` is (form, message) for a form refused, ``values`` what
    was typed in it (never a secret)."""
    app = request.app
    stored_models = await settings_store.get_setting(app[POOL], keys.MODELS_SETTING)
    webhook = await webhooks.secret_state(app)
    context = {
        "tab": "general",
        "key_source": app[AUTH].source,
        "key_lengths": (MIN_API_KEY_LENGTH, MAX_API_KEY_LENGTH),
        "providers": [
            {
                "id": provider,
                "name": ai_settings.NAMES[provider],
                "entries": await ai_settings.stored_entries(app, provider),
            }
            for provider in PROVIDERS
        ],
        "models": keys.models_from(stored_models),
        "default_models": DEFAULT_MODELS,
        "webhook": {
            "created": shown_time(webhook.createdAt),
            "previous_until": shown_time(webhook.previousValidUntil),
        },
        "finder": await settings_routes.stored_finder(app[POOL]),
        "finder_modes": get_args(settings_routes.SelectorFinderMode),
        "captcha": await captcha_settings.stored_captcha(app),
        "mask": captcha_settings.MASK,
        "notice": NOTICES.get(request.query.get(SAVED, "")),
        "error": error,
        "values": values or {},
    }
    return render(request, "settings.html", context, status=status)


async def _saved(
    request: web.Request,
    form_name: str,
    change: Awaitable[object],
    values: dict[str, str] | None = None,
) -> web.Response:
    """Back to the page with a confirmation once ``change`` is done; the page with the
    reason, and the API's status, when it refuses."""
    try:
        await change
    except ApiError as exc:
        return await _page(
            request, error=(form_name, exc.details), values=values, status=exc.status
        )
    except ValidationError as exc:
        details = describe_validation_error(exc)
        return await _page(request, error=(form_name, details), values=values, status=400)
    return see_other(f"{SETTINGS}?{SAVED}={form_name}")


@api.get(
    SETTINGS,
    "The console's settings: API key, AI keys and models, webhook secret, selector finder,"
    " captcha solver",
    query={SAVED: "the form just saved, for its confirmation"},
    content_types=_HTML,
)
async def settings_page(request: web.Request) -> web.Response:
    return await _page(request)


def _shown_once(request: web.Request, context: Mapping[str, object]) -> web.Response:
    """A new secret, on a page of its own (``no-store``, like every page): shown only here."""
    return render(request, "shown_once.html", context)


@api.post(
    SETTINGS + "/api-key",
    "Rotate the API key from the console (form field apiKey: a chosen key; empty: generated)."
    " Ends every console session; the new key is shown once",
    responses={200: None, 400: None, 403: None, 409: None},
    content_types={200: "text/html", 400: "text/html", 409: "text/html"},
)
async def rotate_api_key(request: web.Request) -> web.Response:
    wanted = _text(await request.post(), "apiKey")
    try:
        refuse_environment_key(request.app)
        check_key_text(wanted)
        check_key_length(wanted)
    except ApiError as exc:
        return await _page(request, error=("api-key", exc.details), status=exc.status)
    new_key = await replace_api_key(request.app, wanted)
    session = session_of(request)
    if session is not None:
        del request[SESSION]  # ended with every other session: the page shows no sign-out
    context = {
        "title": "The new API key",
        "value": new_key,
        "about": "Every console session has ended and the previous key no longer works."
        " Copy the key now: it is not shown again.",
        "next": SIGN_IN,
        "next_text": "Sign in with the new key",
    }
    response = _shown_once(request, context)
    if session is not None:
        await sessions.end(request, response, session)
    return response


@api.post(
    SETTINGS + "/ai-keys/{provider}",
    "Add, replace or clear an AI provider's keys from the console (fields op, key)",
    responses={**_FORM_ANSWERS, 404: None},
    content_types=_FORM_PAGES,
)
async def save_ai_keys(request: web.Request) -> web.Response:
    name = request.match_info["provider"]
    provider: Provider | None = next((p for p in PROVIDERS if p == name), None)
    if provider is None:
        raise ApiError(404, "NOT_FOUND", f"no AI provider {name!r}")
    form = await request.post()
    operation, key = _text(form, "op"), _text(form, "key")
    if operation not in KEY_OPERATIONS:
        details = f"op: one of {', '.join(KEY_OPERATIONS)}"
        return await _page(request, error=(provider, details), status=400)
    if operation != "clear" and not key:
        what = "an endpoint" if provider == "ollama" else "a key"
        return await _page(request, error=(provider, f"Give {what} to save."), status=400)
    current = await ai_settings.stored_entries(request.app, provider)
    entries = {"add": [*current, key], "replace": [key], "clear": []}[operation]
    body: dict[str, JsonValue] = {ai_settings.FIELDS[provider]: list(entries)}
    return await _saved(request, provider, ai_settings.replace_entries(request.app, provider, body))


@api.post(
    SETTINGS + "/ai-models",
    "Set the AI models from the console (a field per provider; empty: its default)",
    responses=_FORM_ANSWERS,
    content_types=_FORM_PAGES,
)
async def save_ai_models(request: web.Request) -> web.Response:
    form = await request.post()
    values: dict[str, str] = {provider: _text(form, provider) for provider in PROVIDERS}

    async def change() -> None:
        body = ai_settings.AiModelsBody.model_validate(
            {provider: value or None for provider, value in values.items()}
        )
        await ai_settings.change_models(request.app[POOL], body)

    return await _saved(request, "models", change(), values)


@api.post(
    SETTINGS + "/webhook-secret",
    "Rotate the webhook signing secret from the console; the new secret is shown once",
    responses={200: None, 403: None},
    content_types=_HTML,
)
async def rotate_webhook_secret(request: web.Request) -> web.Response:
    secret = await webhooks.rotate_secret(request.app)
    context = {
        "title": "The new webhook signing secret",
        "value": secret,
        "about": "Deliveries are signed with it from now on, and with the previous secret"
        " too for a while. Copy it now: it is not shown again.",
        "next": SETTINGS,
        "next_text": "Back to the settings",
    }
    return _shown_once(request, context)


@api.post(
    SETTINGS + "/selector-finder",
    "Choose the selector finder from the console (field selectorFinder)",
    responses=_FORM_ANSWERS,
    content_types=_FORM_PAGES,
)
async def save_selector_finder(request: web.Request) -> web.Response:
    chosen = _text(await request.post(), "selectorFinder")

    async def change() -> None:
        body = settings_routes.SelectorFinderBody.model_validate({"selectorFinder": chosen or None})
        await settings_routes.store_finder(request.app[POOL], settings_routes.chosen_finder(body))

    return await _saved(request, "finder", change())


@api.post(
    SETTINGS + "/captcha",
    "Set the captcha solver from the console (fields baseUrl, clientKey)",
    responses=_FORM_ANSWERS,
    content_types=_FORM_PAGES,
)
async def save_captcha(request: web.Request) -> web.Response:
    form = await request.post()
    body = {"baseUrl": _text(form, "baseUrl"), "clientKey": _text(form, "clientKey")}
    change = captcha_settings.save_captcha(request.app, dict(body))
    return await _saved(request, "captcha", change, {"baseUrl": body["baseUrl"]})
