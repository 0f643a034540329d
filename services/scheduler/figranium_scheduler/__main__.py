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
from figranium_common.settings import Settings
from figranium_scheduler.loop import Scheduler

log = structlog.get_logger("figranium_scheduler")


async def serve(settings: Settings, stopping: asyncio.Event) -> None:
    # One connection claims, one reports heartbeats, one spare for the wake-up query.
    pool = await db.open_pool(settings.database_url, max_size=3)
    try:
        await db.apply_migrations(pool)
        nc = await topology.connect(settings.nats_url, name="figranium-scheduler")
        try:
            log.info("scheduler.ready")
            await Scheduler(pool, nc, settings).run(stopping)
            log.info("scheduler.stopping")
        finally:
            await topology.close(nc)
    finally:
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
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
