"""The small HTTP server every service runs beside its work: metrics and probes.

``GET /metrics`` is the Prometheus text exposition of the service's registry;
``GET /livez`` answers 200 while the event loop runs (it is served by that loop, so a
loop that is stuck stops answering); ``GET /readyz`` answers 200 when the service's own
readiness check finds nothing wrong, else 503 with the reason as JSON.

The server takes a registry and a readiness callback and nothing else, so it pulls no
database or browser code into the services that use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from figranium_common.errors import describe

log = structlog.get_logger(__name__)

# Returns None when ready, else a short reason ("draining", "nats disconnected", ...).
ReadinessCheck = Callable[[], Awaitable[str | None]]

# A readiness check that hangs (a database that does not answer) must still get a 503
# back to the probe before the probe's own timeout, which is 1 s by default in Kubernetes
# but usually raised; checks bound their own I/O below this.
READINESS_TIMEOUT_SECONDS = 3.0


def ops_app(registry: CollectorRegistry, ready: ReadinessCheck) -> web.Application:
    """The probe and metrics routes, as an application of their own."""

    async def metrics(request: web.Request) -> web.Response:
        # generate_latest walks every collector under a lock: cheap, but not async.
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                reason = await ready()
        except TimeoutError:
            reason = "readiness check timed out"
        except Exception as exc:  # a failing check is a reason, not a 500
            reason = describe(exc)
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` (0: a free port); OSError when it cannot listen.

    For small side servers (probes, metrics, a viewer): their requests are quick, so no
    reason to hold up the service's exit for one.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


class ProbeServer:
    """Serves :func:`ops_app` on ``host:port`` while entered; port 0 serves nothing.

    A port that is taken is logged and the service runs on without the endpoints: losing
    metrics must not take a service down.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        ready: ReadinessCheck,
        *,
        port: int,
        host: str = "0.0.0.0",
        service: str,
    ) -> None:
        self._app = ops_app(registry, ready)
        self._host = host
        self._port = port
        self._service = service
        self._runner: web.AppRunner | None = None

    @property
    def serving(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._port == 0 or self._runner is not None:
            return
        try:
            self._runner = await start_site(self._app, self._host, self._port)
        except OSError as exc:
            log.warning("ops.unavailable", service=self._service, port=self._port, error=str(exc))
            return
        log.info("ops.serving", service=self._service, port=self._port)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> ProbeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
