"""A service's own Prometheus registry, and the counters, gauges and histograms made in it.

Each service's metrics class derives from :class:`MetricRegistry` and states only what
its metrics are (name, help text, label names, buckets); where they are registered is
said here once. A registry of its own per service (instead of prometheus_client's global
one) keeps tests that build several services in one process apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# Runs take from well under a second (a scrape) to minutes (long agent tasks); the gateway
# and the runner measure them in the same buckets, so their histograms compare.
RUN_DURATION_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class MetricRegistry:
    """Owns ``registry``; with ``process_metrics``, it also exposes the process's CPU,
    memory and file descriptors (``process_*``)."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=self.registry)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float],
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)
