"""``python -m figranium_runner``: a warm Chromium serving runs from JetStream."""

from __future__ import annotations

import asyncio
import signal

import structlog
from nats.aio.client import Client as NATS

from figranium_common import nats as topology
from figranium_common.logging import configure_logging
from figranium_common.ops import OpsServer
from figranium_common.settings import Settings
from figranium_runner.browser import BrowserHost
from figranium_runner.metrics import RunnerMetrics
from figranium_runner.tools import ToolsService
from figranium_runner.worker import Worker

log = structlog.get_logger("figranium_runner")


async def serve(settings: Settings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    metrics = RunnerMetrics()
    browser = BrowserHost(
        settings.chromium_path,
        max_contexts=settings.runner_browser_max_contexts,
        # Runs end by their timeout; past it a context still open on a recycled Chromium
        # is a leak, not a run.
        retire_grace_seconds=settings.run_timeout_seconds + 60,
        on_restart=metrics.browser_restarted,
    )
    connections: list[NATS] = []

    async def readiness() -> str | None:
        if stopping.is_set():
            return "draining"
        if not connections or not connections[0].is_connected:
            return "nats not connected"
        if not browser.connected:
            return "browser not connected"
        return None

    # Started first and closed last: the probes answer while Chromium starts and while
    # the runner drains.
    ops = OpsServer(
        metrics.registry,
        readiness,
        port=settings.runner_metrics_port,
        host=settings.host,
        service="runner",
    )
    async with ops:
        try:
            await browser.start()
        except Exception:
            if stopping.is_set():  # stopped while starting: the driver may have been killed
                log.info("runner.stopped_while_starting")
                return
            raise
        nc = await topology.connect(settings.nats_url, name="figranium-runner")
        connections.append(nc)
        try:
            await _work(settings, stopping, nc, browser, metrics)
        finally:
            await browser.close()
            await topology.close(nc)
    log.info("runner.stopped")


async def _work(
    settings: Settings,
    stopping: asyncio.Event,
    nc: NATS,
    browser: BrowserHost,
    metrics: RunnerMetrics,
) -> None:
    """Take runs until ``stopping``; then drain: finish within the bound, hand back the rest."""
    js = nc.jetstream()
    await topology.declare_topology(
        js,
        topology.RunConsumerLimits(
            ack_wait_seconds=settings.run_ack_wait_seconds,
            max_deliver=settings.run_max_deliver,
        ),
    )
    worker = Worker(settings, nc, js, browser, metrics)
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


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="runner")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
