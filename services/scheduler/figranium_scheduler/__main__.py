"""``python -m figranium_scheduler``: connects to PostgreSQL and NATS and waits for work.

Turning schedules into run requests comes with the scheduling feature; this process
already owns its connections and shuts down cleanly, so deployments can include it.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from figranium_common import db
from figranium_common import nats as topology
from figranium_common.logging import configure_logging
from figranium_common.settings import Settings

log = structlog.get_logger("figranium_scheduler")


async def serve(settings: Settings, stopping: asyncio.Event) -> None:
    pool = await db.open_pool(settings.database_url, max_size=2)
    try:
        await db.apply_migrations(pool)
        nc = await topology.connect(settings.nats_url, name="figranium-scheduler")
        try:
            log.info("scheduler.ready")
            await stopping.wait()
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
