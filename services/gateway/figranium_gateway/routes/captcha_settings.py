"""The captcha solver setting: ``GET/POST /api/settings/captcha``, Figranium's shape.

``{baseUrl, clientKey}``: a solving service speaking the createTask/getTaskResult API. The
key is stored sealed and answered masked; runs that solve captchas get both in their run
request (figranium_common.captcha_settings). ``CAPTCHA_SOLVER_URL`` set on a runner wins
over what is stored here, as Figranium's environment variables win over its settings.
"""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.captcha_settings import CAPTCHA_KEY_PURPOSE, CAPTCHA_SETTING
from figranium_common.jsontypes import JsonValue
from figranium_gateway.errors import ApiError
from figranium_gateway.request_input import read_json_object
from figranium_gateway.routing import Router
from figranium_gateway.state import BOX, CONFIG, POOL
from figranium_gateway.store import settings as settings_store
from figranium_gateway.validation import check_outbound

api = Router("settings")

MASK = "••••••••"  # what Figranium answers for a stored key
MAX_KEY_LENGTH = 512
MAX_URL_LENGTH = 2048
# The key travels in a JSON body, but services print it in headers and logs: visible ASCII.
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")


class CaptchaSettings(BaseModel):
    baseUrl: str = Field(description="the solver's base URL; empty: none stored")
    clientKey: str = Field(description=f"{MASK} when a key is stored, else empty")


class CaptchaSettingsBody(BaseModel):
    baseUrl: str = Field(
        default="",
        description="http(s) URL of a createTask/getTaskResult service; empty clears it."
        " Checked by the outbound URL rules (400 INVALID_BASE_URL)",
    )
    clientKey: str = Field(
        default="", description=f"the service's key; empty clears it, {MASK} keeps the stored one"
    )


def captcha_view(stored: JsonValue) -> CaptchaSettings:
    """The stored setting as GET answers it: the key masked."""
    found = stored if isinstance(stored, dict) else {}
    base_url = found.get("baseUrl")
    return CaptchaSettings(
        baseUrl=base_url if isinstance(base_url, str) else "",
        clientKey=MASK if found.get("clientKey") else "",
    )


async def stored_captcha(app: web.Application) -> CaptchaSettings:
    return captcha_view(await settings_store.get_setting(app[POOL], CAPTCHA_SETTING))


def _text_field(body: dict[str, JsonValue], name: str, limit: int) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "INVALID_BODY", f"{name}: must be a string, not {type(value).__name__}")
    if len(value.strip()) > limit:
        raise ApiError(400, "INVALID_BODY", f"{name}: at most {limit} characters")
    return value.strip()


@api.get(
    "/api/settings/captcha",
    "The captcha solving service runs use (key masked)",
    responses={200: CaptchaSettings},
)
async def get_captcha_settings(request: web.Request) -> web.Response:
    return web.json_response((await stored_captcha(request.app)).model_dump())


@api.post(
    "/api/settings/captcha",
    "Set the captcha solving service (createTask/getTaskResult API) for solve_captcha",
    body=CaptchaSettingsBody,
    responses={200: CaptchaSettings, 400: None},
)
async def set_captcha_settings(request: web.Request) -> web.Response:
    saved = await save_captcha(request.app, await read_json_object(request))
    return web.json_response(saved.model_dump())


async def save_captcha(app: web.Application, body: dict[str, JsonValue]) -> CaptchaSettings:
    """Check and store ``{baseUrl, clientKey}`` (``POST``'s rules); answers it masked."""
    base_url = _text_field(body, "baseUrl", MAX_URL_LENGTH)
    key = _text_field(body, "clientKey", MAX_KEY_LENGTH)
    if base_url:
        config = app[CONFIG]
        await check_outbound(
            base_url,
            "baseUrl",
            allow_private=config.allow_private_networks,
            allow_metadata=config.allow_metadata_address,
            code="INVALID_BASE_URL",
        )
    if key and key != MASK and not _KEY_CHARS.match(key):
        raise ApiError(400, "INVALID_BODY", "clientKey: only visible ASCII characters")
    sealed = "" if not key or key == MASK else app[BOX].seal(key, CAPTCHA_KEY_PURPOSE)

    def change(stored: JsonValue) -> JsonValue:
        kept = stored.get("clientKey") if isinstance(stored, dict) else None
        return {"baseUrl": base_url, "clientKey": (kept or "") if key == MASK else sealed}

    return captcha_view(await settings_store.update_setting(app[POOL], CAPTCHA_SETTING, change))
