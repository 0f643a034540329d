"""The runner's Prometheus metrics: runs, slots, the Chromium's restarts, headful sessions."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# Runs take from well under a second (a scrape) to minutes (long agent tasks).
RUN_DURATION_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class RunnerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.runs_started = Counter(
            "figranium_runner_runs_started",
            "Run attempts this runner started",
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "figranium_runner_runs_finished",
            "Run attempts this runner ended: the result's outcome, or handed_back when the"
            " run went back to the queue (drained, or its browser crashed)",
            ["outcome"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "figranium_runner_run_duration_seconds",
            "Duration of the run attempts that published a result",
            buckets=RUN_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.slots = Gauge(
            "figranium_runner_slots",
            "Run slots of this runner, busy or free",
            ["state"],
            registry=self.registry,
        )
        self.browser_restarts = Counter(
            "figranium_browser_restarts",
            "Chromium replaced: after a crash, or recycled after its maximum contexts",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("crash", "recycle"):
            self.browser_restarts.labels(reason=reason)  # exposed at 0 from the start
        self.connections_blocked = Counter(
            "figranium_runner_connections_blocked",
            "Browser connections the egress proxy refused under the URL policy",
            registry=self.registry,
        )
        self.headful_session = Gauge(
            "figranium_headful_session_active",
            "1 while a headful session (a run on the visible browser) is active",
            registry=self.registry,
        )
        self.viewer_connections = Counter(
            "figranium_headful_viewer_connections",
            "Viewer websocket connections to a headful runner: accepted, or refused for a"
            " missing, unknown, used or expired ticket",
            ["result"],
            registry=self.registry,
        )
        for result in ("accepted", "refused"):
            self.viewer_connections.labels(result=result)

    def watch_slots(self, total: int, busy: Callable[[], int]) -> None:
        """Read the slot gauges from ``busy`` at every scrape."""
        self.slots.labels(state="busy").set_function(lambda: float(busy()))
        self.slots.labels(state="free").set_function(lambda: float(total - busy()))

    def browser_restarted(self, reason: str) -> None:
        self.browser_restarts.labels(reason=reason).inc()
