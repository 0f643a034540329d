"""The webhook signing secret: whether one exists, and rotating it (answered once)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.errors import InvalidUrlError
from figranium_common.outbound_urls import check_url
from figranium_gateway import webhook_delivery
from figranium_gateway.errors import ApiError
from figranium_gateway.openapi import documented
from figranium_gateway.state import BOX, CONFIG, POOL

routes = web.RouteTableDef()

TAG = "settings"


def _invalid(details: str) -> ApiError:
    return ApiError(400, "INVALID_WEBHOOK_URL", f"webhookUrl: {details}")


def webhook_url_type(raw: dict[str, Any]) -> None:
    """Refuse a ``webhookUrl`` that is not a string before the body's model sees it."""
    value = raw.get("webhookUrl")
    if value is not None and not isinstance(value, str):
        raise _invalid(f"must be a URL string, not {type(value).__name__}")


async def checked_webhook_url(value: str | None, *, allow_private: bool) -> str | None:
    """The URL to deliver to, checked as every outbound URL is; blank means none.

    Checked again at every attempt (the host may resolve elsewhere by then).
    """
    if value is None or not value.strip():
        return None
    url = value.strip()
    try:
        await check_url(url, allow_private=allow_private)
    except InvalidUrlError as exc:
        raise _invalid(exc.details) from None
    return url


class WebhookSecretStatus(BaseModel):
    configured: bool
    createdAt: int | None = Field(default=None, description="when it was made, epoch ms")
    previousValidUntil: int | None = Field(
        default=None,
        description="after a rotation, until when (epoch ms) deliveries are also signed with"
        " the previous secret (a second v1=); null when they are not",
    )


class WebhookSecretOut(BaseModel):
    secret: str = Field(
        description="HMAC-SHA256 key of X-Figranium-Signature; shown only in this answer"
    )


@documented(
    "GET",
    "/api/settings/webhook-secret",
    "Whether webhooks have a signing secret (the secret itself is never answered)",
    tag=TAG,
    responses={200: WebhookSecretStatus},
)
@routes.get("/api/settings/webhook-secret")
async def webhook_secret_status(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    created_at, previous_until = await webhook_delivery.secret_status(pool)
    if created_at is None:
        # Normally made at start-up; a request arriving first makes it just the same.
        await webhook_delivery.ensure_secret(pool, request.app[BOX], request.app[CONFIG].data_dir)
        created_at, previous_until = await webhook_delivery.secret_status(pool)
    out = WebhookSecretStatus(
        configured=created_at is not None,
        createdAt=created_at,
        previousValidUntil=previous_until,
    )
    return web.json_response(out.model_dump())


@documented(
    "POST",
    "/api/settings/webhook-secret",
    "Make a new webhook signing secret; every replica signs with it from its next delivery,"
    " and with the previous one too for WEBHOOK_SECRET_OVERLAP_SECONDS",
    tag=TAG,
    responses={200: WebhookSecretOut},
)
@routes.post("/api/settings/webhook-secret")
async def rotate_webhook_secret(request: web.Request) -> web.Response:
    secret = await webhook_delivery.rotate_secret(
        request.app[POOL],
        request.app[BOX],
        request.app[CONFIG].webhook_secret_overlap_seconds,
    )
    return web.json_response(WebhookSecretOut(secret=secret).model_dump())
