"""``GET /api/capabilities``: what this server supports, for clients that adapt to it.

Figranium answers ``{apiVersion, runtimeVersion, features, browser, actions}``; the same
fields come first here, with this server's truth in them (no external CDP, no selector
streaming), followed by what Figranium does not say: the AI providers and whether each is
configured, the task modes, and the limits a task runs under.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from figranium_common.action_models import ACTION_MODELS
from figranium_gateway.ai.keys import PROVIDERS
from figranium_gateway.routes.health import VERSION
from figranium_gateway.routing import Router
from figranium_gateway.state import AI, CONFIG, HEADFUL

api = Router("capabilities")

API_VERSION = "1"
MODES = ("agent", "scrape", "headful")


class ActionType(BaseModel):
    type: str
    title: str
    configurationSchema: dict[str, object] | None = Field(
        description="the JSON schema of the action's fields"
    )


class AiProvider(BaseModel):
    name: str
    configured: bool = Field(description="a key (or Ollama endpoint) is saved")


class Limits(BaseModel):
    runTimeoutSeconds: float
    actionTimeoutMs: int = Field(description="an action's default timeout")
    maxLoopIterations: int
    maxResultBytes: int
    resultPreviewBytes: int
    maxDownloadBytes: int
    maxBodyBytes: int
    runQueueLimit: int


class Capabilities(BaseModel):
    apiVersion: str
    runtimeVersion: str
    features: dict[str, bool]
    browser: dict[str, bool]
    actions: list[ActionType]
    modes: list[str]
    aiProviders: list[AiProvider]
    limits: Limits


def _actions() -> list[ActionType]:
    return [
        ActionType(
            type=kind,
            title=kind.replace("_", " "),
            configurationSchema=model.model_json_schema(),
        )
        for kind, model in sorted(ACTION_MODELS.items())
    ]


@api.get(
    "/api/capabilities",
    "What this server supports: features, action types, modes, AI providers and limits",
    responses={200: Capabilities},
)
async def capabilities(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    keyring = await app[AI].keyring()
    headful = bool(app[HEADFUL].runners())
    body = Capabilities(
        apiVersion=API_VERSION,
        runtimeVersion=VERSION,
        features={
            "tasks": True,
            "executions": True,
            "executionStreaming": True,
            "schedules": True,
            "captures": True,
            "cabinets": True,
            "selectorStreaming": False,
            "headfulSessions": headful,
            "externalCDP": False,
            "testAction": True,
            "templates": config.templates_catalog_url is not None,
        },
        browser={"headful": headful, "selectorStreaming": False, "externalCDP": False},
        actions=_actions(),
        modes=list(MODES),
        aiProviders=[
            AiProvider(name=provider, configured=bool(keyring.entries[provider]))
            for provider in PROVIDERS
        ],
        limits=Limits(
            runTimeoutSeconds=config.run_timeout_seconds,
            actionTimeoutMs=config.action_timeout_ms,
            maxLoopIterations=config.max_loop_iterations,
            maxResultBytes=config.max_result_bytes,
            resultPreviewBytes=config.result_preview_bytes,
            maxDownloadBytes=config.max_download_bytes,
            maxBodyBytes=config.max_body_bytes,
            runQueueLimit=config.run_queue_limit,
        ),
    )
    return web.json_response(body.model_dump())
