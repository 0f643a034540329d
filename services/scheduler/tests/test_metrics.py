"""The scheduler's metrics: lateness histogram, fired and skipped counters, /metrics."""

from __future__ import annotations

from prometheus_client import generate_latest

from figranium_scheduler.metrics import SchedulerMetrics


def test_observations_show_in_the_exposition() -> None:
    metrics = SchedulerMetrics()
    metrics.lateness.observe(0.2)
    metrics.lateness.observe(42)
    metrics.fired.inc(2)
    metrics.skipped.labels(reason="overlap").inc()
    text = generate_latest(metrics.registry).decode()
    assert 'figranium_schedule_lateness_seconds_bucket{le="0.25"} 1.0' in text
    assert 'figranium_schedule_lateness_seconds_bucket{le="60.0"} 2.0' in text
    assert "figranium_schedules_fired_total 2.0" in text
    assert 'figranium_schedules_skipped_total{reason="overlap"} 1.0' in text
