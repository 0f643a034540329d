"""The scheduler's Prometheus metrics: how late schedules fire, how many fired or skipped.

The service serves them with its probes through :class:`figranium_common.probes.ProbeServer`.
"""

from __future__ import annotations

from figranium_common.metric_registry import MetricRegistry

# Lateness is mostly well under a second; the long tail shows a scheduler that was down.
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)


class SchedulerMetrics(MetricRegistry):
    def __init__(self) -> None:
        super().__init__(process_metrics=False)
        self.lateness = self.histogram(
            "figranium_schedule_lateness_seconds",
            "Time between a schedule's due time and its run request being created",
            buckets=LATENESS_BUCKETS,
        )
        self.fired = self.counter("figranium_schedules_fired", "Scheduled runs requested")
        self.skipped = self.counter(
            "figranium_schedules_skipped",
            "Schedule slots skipped, by reason: missed (every scheduler was down), overlap"
            " (the previous run still running), no_headful_runner (a headful task, and no"
            " headful runner live), invalid_task (saved by an older release, refused by"
            " today's rules)",
            ["reason"],
        )
