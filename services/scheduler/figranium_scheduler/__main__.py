"""``python -m figranium_scheduler``: turns due schedules into queued executions and runs.

This module owns the process: settings, logging, connections, signals and their order at
shutdown; the work itself is in :mod:`figranium_scheduler.loop`.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from figranium_common import db
from figranium_common import nats as topology
from figranium_common.logging import configure_logging
from figranium_common.ops import OpsServer
from figranium_common.runtime import tune_gc
from figranium_common.settings import Settings
from figranium_scheduler.loop import Scheduler
from figranium_scheduler.metrics import SchedulerMetrics

log = structlog.get_logger("figranium_scheduler")


# Readiness: PostgreSQL must answer within this.
READY_DB_TIMEOUT_SECONDS = 2.0


async def serve(settings: Settings, stopping: asyncio.Event) -> None:
    metrics = SchedulerMetrics()
    probe: db.DatabaseProbe | None = None  # once the database is migrated and NATS connected

    async def readiness() -> str | None:
        if stopping.is_set():
            return "stopping"
        if probe is None:
            return "starting"
        error = await probe.error()
        return None if error is None else f"database: {error}"

    ops = OpsServer(
        metrics.registry,
        readiness,
        port=settings.scheduler_metrics_port,
        host=settings.host,
        service="scheduler",
    )
    # Up before the database and down after it: probes answer throughout.
    async with ops:
        # One connection claims, one reports heartbeats, one spare for the wake-up query.
        pool = await db.open_pool(settings.database_url, max_size=3)
        try:
            await db.apply_migrations(pool)
            nc = await topology.connect(
                settings.nats_url,
                name="figranium-scheduler",
                auth=topology.NatsAuth.from_settings(settings),
                role="scheduler",
            )
            try:
                probe = db.DatabaseProbe(pool, settings.database_url, READY_DB_TIMEOUT_SECONDS)
                log.info("scheduler.ready")
                await Scheduler(pool, nc, settings, metrics).run(stopping)
                log.info("scheduler.stopping")
            finally:
                await topology.close(nc)
        finally:
            if probe is not None:
                await probe.close()
            await pool.close(timeout=2)
    log.info("scheduler.stopped")


async def _main(settings: Settings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await serve(settings, stopping)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="scheduler")
    tune_gc()
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
