"""The scheduler's metrics: lateness histogram, fired and skipped counters, /metrics."""

from __future__ import annotations

import urllib.request

from prometheus_client import generate_latest

from figranium_devstack.ports import free_port
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


def test_served_on_its_port_and_a_taken_port_is_not_fatal() -> None:
    port = free_port()
    first, second = SchedulerMetrics(), SchedulerMetrics()
    first.serve(port)
    try:
        second.serve(port)  # logs and carries on
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"figranium_schedules_fired_total" in answer.read()
    finally:
        first.close()
        second.close()
    first.serve(0)  # disabled: nothing to close
    first.close()
