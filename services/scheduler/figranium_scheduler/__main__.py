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
from figranium_common.config import Config
from figranium_common.gc_tuning import tune_gc
from figranium_common.logging import configure_logging
from figranium_common.probes import ProbeServer
from figranium_scheduler.loop import Scheduler
from figranium_scheduler.metrics import SchedulerMetrics

log = structlog.get_logger("figranium_scheduler")


# Readiness: PostgreSQL must answer within this.
READY_DB_TIMEOUT_SECONDS = 2.0


async def serve(config: Config, stopping: asyncio.Event) -> None:
    metrics = SchedulerMetrics()
    probe: db.DatabaseProbe | None = None  # once the database is migrated and NATS connected

    async def readiness() -> str | None:
        if stopping.is_set():
            return "stopping"
        if probe is None:
            return "starting"
        error = await probe.error()
        return None if error is None else f"database: {error}"

    ops = ProbeServer(
        metrics.registry,
        readiness,
        port=config.scheduler_metrics_port,
        host=config.host,
        service="scheduler",
    )
    # Up before the database and down after it: probes answer throughout.
    async with ops:
        # One connection claims, one reports heartbeats, one spare for the wake-up query.
        pool = await db.open_pool(config.database_url, max_size=3)
        try:
            await db.apply_migrations(pool)
            nc = await topology.connect(
                config.nats_url,
                name="figranium-scheduler",
                auth=topology.NatsAuth.from_config(config),
                role="scheduler",
            )
            try:
                probe = db.DatabaseProbe(pool, config.database_url, READY_DB_TIMEOUT_SECONDS)
                log.info("scheduler.ready")
                await Scheduler(pool, nc, config, metrics).run(stopping)
                log.info("scheduler.stopping")
            finally:
                await topology.close(nc)
        finally:
            if probe is not None:
                await probe.close()
            await pool.close(timeout=2)
    log.info("scheduler.stopped")


async def _main(config: Config) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await serve(config, stopping)


def main() -> None:
    config = Config()
    configure_logging(config.log_level, config.log_format, service="scheduler")
    tune_gc()
    asyncio.run(_main(config))


if __name__ == "__main__":
    main()
