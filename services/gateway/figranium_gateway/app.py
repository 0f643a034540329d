"""The gateway application: resources owned by cleanup contexts, routes, middlewares."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web

from figranium_common import db, transit
from figranium_common import nats as topology
from figranium_common.config import Config
from figranium_common.headful import HeadfulRoster
from figranium_common.probes import ProbeServer
from figranium_common.secretbox import SecretBox
from figranium_gateway import capture_index, dispatch, retention
from figranium_gateway.ai import AiChain
from figranium_gateway.auth import api_key_cache, auth_middleware
from figranium_gateway.cabinet_cleanup import run_cabinet_cleanup
from figranium_gateway.changes import ChangeFeed
from figranium_gateway.console import cabinet_pages as console_cabinet_pages
from figranium_gateway.console import credential_pages as console_credential_pages
from figranium_gateway.console import editor_pages as console_editor_pages
from figranium_gateway.console import execution_pages as console_execution_pages
from figranium_gateway.console import file_pages as console_file_pages
from figranium_gateway.console import generate_pages as console_generate_pages
from figranium_gateway.console import pages as console_pages
from figranium_gateway.console import proxy_pages as console_proxy_pages
from figranium_gateway.console import run_pages as console_run_pages
from figranium_gateway.console import schedule_pages as console_schedule_pages
from figranium_gateway.console import settings_pages as console_settings_pages
from figranium_gateway.console import setup as setup_console
from figranium_gateway.console import task_json_pages as console_task_json_pages
from figranium_gateway.console import task_pages as console_task_pages
from figranium_gateway.console import version_pages as console_version_pages
from figranium_gateway.console.gate import session_middleware
from figranium_gateway.console.timing import timing_middleware
from figranium_gateway.errors import error_middleware
from figranium_gateway.ingest import EventIngester
from figranium_gateway.metrics import (
    METRICS,
    GatewayMetrics,
    http_middleware,
    refresh_queue_pending,
)
from figranium_gateway.routes import (
    action_palette,
    ai_settings,
    aliases,
    backup,
    cabinet_archives,
    cabinet_files,
    cabinets,
    capabilities,
    captcha_settings,
    captures,
    cookie_states,
    cookies,
    credentials,
    docs,
    executions,
    generate,
    headful,
    health,
    live,
    proxies,
    runs,
    schedules,
    stream,
    tasks,
    templates,
    test_action,
)
from figranium_gateway.routes import settings as settings_routes
from figranium_gateway.routes import webhooks as webhook_routes
from figranium_gateway.served_files import secure_html
from figranium_gateway.state import (
    AI,
    AUTH,
    BOX,
    CHANGES,
    CONFIG,
    DATABASE_PROBE,
    HEADFUL,
    JS,
    NC,
    POOL,
    STARTED_AT,
    STOPPING,
    TEMPLATES,
    THROTTLE,
    TRANSIT,
    WAITERS,
)
from figranium_gateway.store import settings as settings_store
from figranium_gateway.store.cabinets import Quotas
from figranium_gateway.templates_catalog import TemplateCatalog
from figranium_gateway.throttle import AuthThrottle
from figranium_gateway.waiters import Waiters
from figranium_gateway.webhook_delivery import run_webhooks

log = structlog.get_logger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    pool = await db.open_pool(config.database_url)
    await db.apply_migrations(pool)
    app[POOL] = pool
    app[BOX] = SecretBox.from_config(config)
    app[TRANSIT] = transit.derived_transit_box(app[BOX])
    app[AI] = AiChain(pool, app[BOX], config)
    if sealed := await settings_store.seal_proxy_passwords(pool, app[BOX]):
        log.info("settings.proxy_passwords_sealed", count=sealed)
    app[AUTH] = await api_key_cache(config, pool, app[BOX])
    app[DATABASE_PROBE] = probe = db.DatabaseProbe(
        pool, config.database_url, config.health_db_timeout_seconds
    )
    yield
    await probe.close()
    await pool.close(timeout=2)


async def _nats(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    nc = await topology.connect(
        config.nats_url,
        name="figranium-gateway",
        auth=topology.NatsAuth.from_config(config),
        role="gateway",
    )
    js = nc.jetstream()
    await topology.declare_topology(
        js,
        topology.RunConsumerLimits(
            ack_wait_seconds=config.run_ack_wait_seconds,
            max_deliver=config.run_max_deliver,
            events_max_age_seconds=config.run_events_max_age_seconds,
        ),
        captures_max_bytes=config.captures_max_bytes,
        results_max_bytes=config.results_max_bytes,
        cabinets_max_bytes=config.cabinets_max_total_bytes,
        replicas=config.nats_replicas,
    )
    waiters = Waiters()
    await waiters.start(nc)
    await app[AUTH].listen(nc)
    roster = HeadfulRoster()
    await roster.start(nc)
    app[NC], app[JS], app[WAITERS], app[HEADFUL] = nc, js, waiters, roster
    yield
    await roster.stop()
    await app[AUTH].stop_listening()
    await waiters.stop()
    await topology.close(nc)


async def _ops(app: web.Application) -> AsyncIterator[None]:
    """/metrics, /livez, /readyz on their own port: first up, last down."""
    config = app[CONFIG]

    async def readiness() -> str | None:
        if app[STOPPING].is_set():
            return "stopping"
        probe, nc = app.get(DATABASE_PROBE), app.get(NC)
        if probe is None or nc is None:
            return "starting"
        if not nc.is_connected:
            return "nats not connected"
        error = await probe.error()
        return None if error is None else f"database: {error}"

    ops = ProbeServer(
        app[METRICS].registry,
        readiness,
        port=config.gateway_metrics_port,
        host=config.host,
        service="gateway",
    )
    async with ops:
        yield


async def _changes(app: web.Application) -> AsyncIterator[None]:
    feed = ChangeFeed()
    await feed.start(app[NC])
    app[CHANGES] = feed
    yield
    await feed.stop()


async def _end_streams(app: web.Application) -> None:
    # on_shutdown runs before aiohttp waits for open handlers; cleanup contexts run after,
    # so ending the never-finishing change streams there would stall every shutdown.
    app[STOPPING].set()
    feed = app.get(CHANGES)
    if feed is not None:
        feed.close()


def _watched(
    name: str, make: Callable[[], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A named background task that stops the service if it dies unexpectedly."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task: asyncio.Task[None] = asyncio.create_task(make(), name=name)

        def on_done(done: asyncio.Task[None]) -> None:
            if app[STOPPING].is_set():
                return  # shutting down already: whatever failed is being closed anyway
            if not done.cancelled() and done.exception() is not None:
                log.error("gateway.background_task_died", task=name, error=repr(done.exception()))
                # Stop the whole service: an orchestrator restarts it, a half-working
                # gateway would go on answering without ingesting results.
                signal.raise_signal(signal.SIGTERM)

        task.add_done_callback(on_done)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


def create_app(config: Config) -> web.Application:
    metrics = GatewayMetrics()
    app = web.Application(
        middlewares=[
            http_middleware(metrics),
            timing_middleware,
            error_middleware,
            session_middleware,
            auth_middleware,
        ],
        client_max_size=config.max_body_bytes,
    )
    app[CONFIG] = config
    app[METRICS] = metrics
    app[TEMPLATES] = TemplateCatalog(config)
    app[THROTTLE] = AuthThrottle(
        slow_after=config.auth_slow_after_failures,
        lock_after=config.auth_lockout_after_failures,
        window_seconds=config.auth_failure_window_seconds,
        lockout_seconds=config.auth_lockout_seconds,
        trust_forwarded_for=config.trust_forwarded_for,
    )
    app[STARTED_AT] = time.monotonic()
    app[STOPPING] = asyncio.Event()
    app.cleanup_ctx.append(_ops)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_nats)
    app.cleanup_ctx.append(
        _watched(
            "ingester",
            lambda: EventIngester(
                app[POOL],
                app[NC],
                app[BOX],
                metrics,
                app[WAITERS].finished,
                preview_bytes=config.result_preview_bytes,
                cabinet_quotas=Quotas.of(config),
            ).run(app[JS]),
        )
    )
    app.cleanup_ctx.append(
        _watched(
            "sweeper",
            lambda: dispatch.sweep_queued(
                app[POOL],
                app[JS],
                app[BOX],
                app[TRANSIT],
                timeout_seconds=config.run_timeout_seconds,
            ),
        )
    )
    app.cleanup_ctx.append(
        _watched("retention", lambda: retention.run_retention(app[POOL], app[JS], app[CONFIG]))
    )
    app.cleanup_ctx.append(
        _watched("captures-backfill", lambda: capture_index.run_backfill(app[POOL], app[JS]))
    )
    app.cleanup_ctx.append(
        _watched(
            "cabinet-cleanup",
            lambda: run_cabinet_cleanup(app[POOL], app[JS], app[CONFIG]),
        )
    )
    app.cleanup_ctx.append(
        _watched("webhooks", lambda: run_webhooks(app[POOL], app[BOX], app[CONFIG], metrics))
    )
    app.cleanup_ctx.append(
        _watched("queue-gauge", lambda: refresh_queue_pending(app[JS], metrics.queue_pending))
    )
    app.cleanup_ctx.append(_changes)
    app.cleanup_ctx.append(_watched("change-feed", lambda: app[CHANGES].run(app[POOL])))
    app.on_shutdown.append(_end_streams)
    app.on_response_prepare.append(secure_html)
    # stream before executions: /api/executions/{execution_id} would match its path too.
    modules = (
        health,
        generate,
        tasks,
        schedules,
        runs,
        aliases,
        live,
        stream,
        executions,
        captures,
        credentials,
        settings_routes,
        proxies,
        headful,
        ai_settings,
        captcha_settings,
        webhook_routes,
        cabinets,
        cabinet_files,
        cabinet_archives,
        backup,
        capabilities,
        action_palette,
        cookies,
        cookie_states,
        templates,
        test_action,
        docs,
        console_pages,
        console_editor_pages,
        console_task_pages,
        console_task_json_pages,
        console_version_pages,
        console_run_pages,
        console_generate_pages,
        console_schedule_pages,
        console_execution_pages,
        console_file_pages,
        console_cabinet_pages,
        console_settings_pages,
        console_proxy_pages,
        console_credential_pages,
    )
    for module in modules:
        app.add_routes(module.api.table)
    setup_console(app)
    return app
