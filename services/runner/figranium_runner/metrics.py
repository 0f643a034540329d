"""The runner's Prometheus metrics: runs, slots, the Chromium's restarts, headful sessions."""

from __future__ import annotations

from collections.abc import Callable

from figranium_common.metric_registry import RUN_DURATION_BUCKETS, MetricRegistry


class RunnerMetrics(MetricRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.runs_started = self.counter(
            "figranium_runner_runs_started", "Run attempts this runner started"
        )
        self.runs_finished = self.counter(
            "figranium_runner_runs_finished",
            "Run attempts this runner ended: the result's outcome, or handed_back when the"
            " run went back to the queue (drained, or its browser crashed)",
            ["outcome"],
        )
        self.run_duration = self.histogram(
            "figranium_runner_run_duration_seconds",
            "Duration of the run attempts that published a result",
            buckets=RUN_DURATION_BUCKETS,
        )
        self.slots = self.gauge(
            "figranium_runner_slots", "Run slots of this runner, busy or free", ["state"]
        )
        self.browser_restarts = self.counter(
            "figranium_browser_restarts",
            "Chromium replaced: after a crash, or recycled after its maximum contexts",
            ["reason"],
        )
        for reason in ("crash", "recycle"):
            self.browser_restarts.labels(reason=reason)  # exposed at 0 from the start
        self.connections_blocked = self.counter(
            "figranium_runner_connections_blocked",
            "Browser connections the egress proxy refused under the URL policy",
        )
        self.headful_session = self.gauge(
            "figranium_headful_session_active",
            "1 while a headful session (a run on the visible browser) is active",
        )
        self.viewer_connections = self.counter(
            "figranium_headful_viewer_connections",
            "Viewer websocket connections to a headful runner: accepted, or refused for a"
            " missing, unknown, used or expired ticket",
            ["result"],
        )
        for result in ("accepted", "refused"):
            self.viewer_connections.labels(result=result)
        self.engine = self.gauge(
            "figranium_runner_engine",
            "1 for the engine runs execute with: playwright, or null (no browser, benchmarks only)",
            ["engine"],
        )

    def show_engine(self, engine: str) -> None:
        """1 for the engine this runner executes runs with (RUNNER_ENGINE): a benchmark's
        browserless runner is visible at a glance."""
        self.engine.labels(engine=engine).set(1)

    def watch_slots(self, total: int, busy: Callable[[], int]) -> None:
        """Read the slot gauges from ``busy`` at every scrape."""
        self.slots.labels(state="busy").set_function(lambda: float(busy()))
        self.slots.labels(state="free").set_function(lambda: float(total - busy()))

    def browser_restarted(self, reason: str) -> None:
        self.browser_restarts.labels(reason=reason).inc()
