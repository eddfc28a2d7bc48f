"""Prometheus metrics of one app instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class Telemetry:
    """What `/metrics` exports: refreshes, Simpro requests, reads, values and their age."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.refresh_duration = Histogram(
            "simpro_counter_refresh_duration_seconds",
            "Duration of refreshes, by metric and outcome (full, incremental or error)",
            ["metric", "outcome"],
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
        self.simpro_requests = Counter(
            "simpro_counter_simpro_requests",
            "Requests sent to Simpro, by HTTP status (0: no answer)",
            ["status"],
            registry=self.registry,
        )
        # The log lets only a few refusals a minute through (anyone can send them): the
        # counter is where each one is counted, by outcome.
        self.webhook_deliveries = Counter(
            "simpro_counter_webhook_deliveries",
            "Webhook deliveries received, by outcome (queued, replayed, stale, unused, "
            "backlog_full, redis_unavailable, disabled, bad_signature, bad_request, too_large)",
            ["outcome"],
            registry=self.registry,
        )
        # Reads are counted in a plain dict and exported at scrape time: a prometheus
        # Counter takes a lock per increment, which shows on a path measured in µs.
        self._reads: dict[tuple[str, str], int] = {}
        self.registry.register(_ReadsCollector(self._reads))
        self.value = Gauge(
            "simpro_counter_value",
            "The current value of each metric",
            ["metric"],
            registry=self.registry,
        )
        self.age = Gauge(
            "simpro_counter_value_age_seconds",
            "Seconds since the current value was computed",
            ["metric"],
            registry=self.registry,
        )

    def count_read(self, metric: str, source: str) -> None:
        key = (metric, source)
        self._reads[key] = self._reads.get(key, 0) + 1

    def record_requests(self, by_status: Mapping[int, int]) -> None:
        for status, count in by_status.items():
            self.simpro_requests.labels(str(status)).inc(count)


class _ReadsCollector(Collector):
    def __init__(self, reads: dict[tuple[str, str], int]) -> None:
        self._reads = reads

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "simpro_counter_reads",
            "Counter reads served, by metric and where the value came from",
            labels=["metric", "source"],
        )
        for (metric, source), count in sorted(self._reads.items()):
            family.add_metric([metric, source], count)
        yield family
