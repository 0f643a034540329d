"""Typed application state keys: every shared resource the app owns."""

from __future__ import annotations

import asyncio

from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from figranium_common.config import Config
from figranium_common.db import DatabaseProbe, Pool
from figranium_common.headful import HeadfulRoster
from figranium_common.secretbox import SecretBox
from figranium_gateway.ai.chain import AiChain
from figranium_gateway.api_key import ApiKeyCache
from figranium_gateway.changes import ChangeFeed
from figranium_gateway.templates_catalog import TemplateCatalog
from figranium_gateway.throttle import AuthThrottle
from figranium_gateway.waiters import Waiters

CONFIG = web.AppKey("settings", Config)
POOL = web.AppKey("pool", Pool)
# Health and readiness: PostgreSQL asked through POOL, or on a connection of its own
# while POOL is queueing requests.
DATABASE_PROBE = web.AppKey("database_probe", DatabaseProbe)
NC = web.AppKey("nats", NATS)
JS = web.AppKey("jetstream", JetStreamContext)
BOX = web.AppKey("secret_box", SecretBox)
# Seals run requests' secrets for the runners (figranium_common.transit), derived from BOX
# once at start rather than for every run published.
TRANSIT = web.AppKey("transit_box", SecretBox)
AI = web.AppKey("ai_chain", AiChain)


AUTH = web.AppKey("auth", ApiKeyCache)
THROTTLE = web.AppKey("auth_throttle", AuthThrottle)
WAITERS = web.AppKey("waiters", Waiters)
STARTED_AT = web.AppKey("started_at", float)
# Set when shutdown begins, so background tasks failing on the way down stop nothing more.
STOPPING = web.AppKey("stopping", asyncio.Event)
CHANGES = web.AppKey("changes", ChangeFeed)
HEADFUL = web.AppKey("headful_roster", HeadfulRoster)
TEMPLATES = web.AppKey("templates_catalog", TemplateCatalog)
