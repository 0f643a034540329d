"""``python -m figranium_runner``: a warm Chromium serving runs from JetStream.

With ``RUNNER_HEADFUL=true`` the Chromium is headed on a virtual display watched through
noVNC, and the runner takes headful runs only, one at a time (:mod:`figranium_runner.headful`).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog
from nats.aio.client import Client as NATS

from figranium_common import nats as topology
from figranium_common.config import Config
from figranium_common.gc_tuning import tune_gc
from figranium_common.logging import configure_logging
from figranium_common.probes import ProbeServer
from figranium_runner import headful, null_engine
from figranium_runner.browser import BrowserHost
from figranium_runner.headful.display import HeadfulError, VirtualDisplay
from figranium_runner.headful.service import HeadfulService
from figranium_runner.metrics import RunnerMetrics
from figranium_runner.tool_service import ToolsService
from figranium_runner.worker import Worker, runner_name

log = structlog.get_logger("figranium_runner")


async def serve(config: Config) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    metrics = RunnerMetrics()
    metrics.show_engine(config.runner_engine)
    browserless = config.runner_engine == "null"
    if browserless:
        log.warning("runner.null_engine", warning=null_engine.WARNING)
    display: VirtualDisplay | None = None
    if config.runner_headful:
        # The Chromium dies with its display; bring it back with the display.
        display = VirtualDisplay(
            config.headful_screen, on_restart=lambda: browser.relaunch_if_down()
        )
    browser = BrowserHost(
        config.chromium_path,
        headless_path=config.chromium_headless_path,
        max_contexts=config.runner_browser_max_contexts,
        # Runs end by their timeout; past it a context still open on a recycled Chromium
        # is a leak, not a run.
        retire_grace_seconds=config.run_timeout_seconds + 60,
        on_restart=metrics.browser_restarted,
        screen=display,
        nice=config.runner_browser_nice,
    )
    connections: list[NATS] = []

    async def readiness() -> str | None:
        if stopping.is_set():
            return "draining"
        if not connections or not connections[0].is_connected:
            return "nats not connected"
        if display is not None and (problem := display.problem()) is not None:
            return problem
        if not browserless and not browser.connected:
            return "browser not connected"
        return None

    # Started first and closed last: the probes answer while Chromium starts and while
    # the runner drains.
    ops = ProbeServer(
        metrics.registry,
        readiness,
        port=config.runner_metrics_port,
        host=config.host,
        service="runner",
    )
    async with ops:
        if display is not None:
            await display.start()
        try:
            try:
                if not browserless:
                    await browser.start()
            except Exception:
                if stopping.is_set():  # stopped while starting: the driver may have been killed
                    log.info("runner.stopped_while_starting")
                    return
                raise
            nc = await topology.connect(
                config.nats_url,
                name="figranium-runner",
                auth=topology.NatsAuth.from_config(config),
                role="runner",
            )
            connections.append(nc)
            try:
                await _work(config, stopping, nc, browser, metrics, display)
            finally:
                await browser.close()
                await topology.close(nc)
        finally:
            if display is not None:
                await display.close()
    log.info("runner.stopped")


async def _work(
    config: Config,
    stopping: asyncio.Event,
    nc: NATS,
    browser: BrowserHost,
    metrics: RunnerMetrics,
    display: VirtualDisplay | None,
) -> None:
    """Take runs until ``stopping``; then drain: finish within the bound, hand back the rest."""
    js = nc.jetstream()
    # The gateway declares the streams, consumers and buckets; a runner only binds to them.
    consumer = topology.RUNNERS_CONSUMER if display is None else topology.HEADFUL_CONSUMER
    if not await topology.bind_topology(js, consumer, stopping):
        return
    if display is not None:
        await _work_headful(config, stopping, nc, browser, metrics, display)
        return
    worker = Worker(config, nc, js, browser, metrics)
    tools = ToolsService(config, nc, browser)
    if config.runner_engine != "null":  # the tools need a browser
        await tools.start(stopping)
    try:
        await worker.run(stopping)
        log.info("runner.stopping", running=worker.busy)
        await asyncio.gather(
            worker.drain(config.runner_drain_seconds),
            tools.drain(config.runner_drain_seconds),
        )
    finally:
        await tools.drain(0)  # a no-op after a clean stop


async def _work_headful(
    config: Config,
    stopping: asyncio.Event,
    nc: NATS,
    browser: BrowserHost,
    metrics: RunnerMetrics,
    display: VirtualDisplay,
) -> None:
    """One visible session at a time, from the headful consumer only. The tools services
    stay with headless runners: their pages would appear on the watched screen."""
    service = HeadfulService(config, nc, display, metrics, runner_id=runner_name())
    worker = Worker(
        config,
        nc,
        nc.jetstream(),
        browser,
        metrics,
        consumer=topology.HEADFUL_CONSUMER,
        slots=1,
        runner_id=service.runner_id,
        observer=service,
    )
    await service.start()
    try:
        await worker.run(stopping)
        log.info("runner.stopping", running=worker.busy)
        await worker.drain(config.runner_drain_seconds)
    finally:
        await service.close()


def main() -> None:
    config = Config()
    configure_logging(config.log_level, config.log_format, service="runner")
    tune_gc()
    if config.runner_headful and (problem := headful.preflight(config)) is not None:
        log.error("runner.headful_unavailable", error=problem)
        sys.exit(2)
    try:
        asyncio.run(serve(config))
    except HeadfulError as exc:
        log.error("runner.headful_unavailable", error=exc.details)
        sys.exit(2)


if __name__ == "__main__":
    main()
