"""The gateway's Prometheus metrics, its readiness, and the queue-depth gauge's refresher."""

from __future__ import annotations

import asyncio
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from nats.js import JetStreamContext
from prometheus_client import Gauge

from figranium_common.errors import describe
from figranium_common.metric_registry import RUN_DURATION_BUCKETS, MetricRegistry
from figranium_common.nats import RUNNERS_CONSUMER, RUNS_STREAM
from figranium_gateway.errors import Handler

log = structlog.get_logger(__name__)

# Most requests answer in milliseconds; a synchronous run is answered when it finishes.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
QUEUE_REFRESH_SECONDS = 5.0
UNMATCHED = "unmatched"


class GatewayMetrics(MetricRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.http_requests = self.counter(
            "figranium_http_requests",
            "HTTP requests answered, by route template (or unmatched) and status",
            ["method", "route", "status"],
        )
        self.http_duration = self.histogram(
            "figranium_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
        )
        self.runs_requested = self.counter(
            "figranium_runs_requested", "Runs queued through this gateway, by source", ["source"]
        )
        self.runs_finished = self.counter(
            "figranium_runs_finished",
            "Run results stored by this gateway's ingester, by outcome",
            ["outcome"],
        )
        self.run_duration = self.histogram(
            "figranium_run_duration_seconds",
            "Duration of the runs whose result this gateway stored",
            buckets=RUN_DURATION_BUCKETS,
        )
        self.queue_pending = self.gauge(
            "figranium_queue_pending",
            "Runs waiting for or held by a runner (the runners consumer's pending plus"
            " unacknowledged messages)",
        )
        self.webhook_attempts = self.counter(
            "figranium_webhook_attempts",
            "Webhook delivery attempts: delivered, retry (failed, tried again) or failed",
            ["result"],
        )


METRICS = web.AppKey("metrics", GatewayMetrics)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(request: web.Request) -> str:
    """The matched route's template (``/api/tasks/{task_id}``), never the raw path, so the
    label's values stay as few as the routes."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def http_middleware(metrics: GatewayMetrics) -> Middleware:
    """Counts and times every request; outermost, so it sees the status actually sent."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away first (nginx's code for it)
            raise
        finally:
            method = request.method if request.method in _METHODS else "OTHER"
            route = route_of(request)
            metrics.http_requests.labels(method, route, str(status)).inc()
            metrics.http_duration.labels(method, route).observe(time.perf_counter() - started)

    return observe


async def refresh_queue_pending(js: JetStreamContext, gauge: Gauge) -> None:
    """Keep the queue gauge current: what KEDA-style scaling and alerts look at."""
    failing = False
    while True:
        try:
            info = await js.consumer_info(
                RUNS_STREAM, RUNNERS_CONSUMER, timeout=QUEUE_REFRESH_SECONDS
            )
            gauge.set((info.num_pending or 0) + (info.num_ack_pending or 0))
            failing = False
        except Exception as exc:  # NATS away: the gauge keeps its last value meanwhile
            if not failing:
                log.warning("metrics.queue_unavailable", error=describe(exc))
            failing = True
        await asyncio.sleep(QUEUE_REFRESH_SECONDS)
