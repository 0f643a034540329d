"""``python -m figranium_runner``: a warm Chromium serving runs from JetStream."""

from __future__ import annotations

import asyncio
import signal

import structlog

from figranium_common import nats as topology
from figranium_common.logging import configure_logging
from figranium_common.settings import Settings
from figranium_runner.browser import BrowserHost
from figranium_runner.tools import ToolsService
from figranium_runner.worker import Worker

log = structlog.get_logger("figranium_runner")


async def serve(settings: Settings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    browser = BrowserHost(settings.chromium_path)
    try:
        await browser.start()
    except Exception:
        if stopping.is_set():  # stopped while starting: the driver may have been killed too
            log.info("runner.stopped_while_starting")
            return
        raise
    nc = await topology.connect(settings.nats_url, name="figranium-runner")
    try:
        js = nc.jetstream()
        await topology.declare_topology(
            js,
            topology.RunConsumerLimits(
                ack_wait_seconds=settings.run_ack_wait_seconds,
                max_deliver=settings.run_max_deliver,
            ),
        )
        worker = Worker(settings, nc, js, browser)
        tools = ToolsService(settings, nc, browser)
        await tools.start(stopping)
        try:
            await worker.run(stopping)
            log.info("runner.stopping", running=worker.busy)
            await asyncio.gather(
                worker.drain(settings.runner_drain_seconds),
                tools.drain(settings.runner_drain_seconds),
            )
        finally:
            await tools.drain(0)  # a no-op after a clean stop
    finally:
        await browser.close()
        await topology.close(nc)
    log.info("runner.stopped")


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="runner")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
