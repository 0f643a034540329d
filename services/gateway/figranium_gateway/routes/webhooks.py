"""The webhook signing secret: whether one exists, and rotating it (answered once)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_gateway import webhook_delivery
from figranium_gateway.routing import Router
from figranium_gateway.state import BOX, CONFIG, POOL

api = Router("settings")


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


@api.get(
    "/api/settings/webhook-secret",
    "Whether webhooks have a signing secret (the secret itself is never answered)",
    responses={200: WebhookSecretStatus},
)
async def webhook_secret_status(request: web.Request) -> web.Response:
    return web.json_response((await secret_state(request.app)).model_dump())


async def secret_state(app: web.Application) -> WebhookSecretStatus:
    """Whether a secret exists and since when; made now if start-up has not made it yet."""
    pool = app[POOL]
    created_at, previous_until = await webhook_delivery.secret_status(pool)
    if created_at is None:
        # Normally made at start-up; a request arriving first makes it just the same.
        await webhook_delivery.ensure_secret(pool, app[BOX], app[CONFIG].data_dir)
        created_at, previous_until = await webhook_delivery.secret_status(pool)
    return WebhookSecretStatus(
        configured=created_at is not None,
        createdAt=created_at,
        previousValidUntil=previous_until,
    )


async def rotate_secret(app: web.Application) -> str:
    """A new signing secret, the previous one still signing for the configured overlap."""
    return await webhook_delivery.rotate_secret(
        app[POOL], app[BOX], app[CONFIG].webhook_secret_overlap_seconds
    )


@api.post(
    "/api/settings/webhook-secret",
    "Make a new webhook signing secret; every replica signs with it from its next delivery,"
    " and with the previous one too for WEBHOOK_SECRET_OVERLAP_SECONDS",
    responses={200: WebhookSecretOut},
)
async def rotate_webhook_secret(request: web.Request) -> web.Response:
    secret = await rotate_secret(request.app)
    return web.json_response(WebhookSecretOut(secret=secret).model_dump())
