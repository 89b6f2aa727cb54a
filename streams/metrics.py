"""Prometheus metrics of a stream process, and its ``/metrics`` + ``/healthz`` server.

``LedgerMetrics`` owns the metrics on one prometheus-client registry (a fresh
one per instance unless one is passed; ``default_metrics()`` is the process's
instance on prometheus-client's global registry, which also carries the
process and Python collectors). Names (all prefixed ``loyalty_``):

- counters ``events_applied_total``, ``duplicates_total``,
  ``dead_letters_total{reason}``, ``rejections_total{reason}``;
- histograms ``batch_size_events``, ``commit_latency_seconds``;
- gauges ``consumer_lag{topic,partition}`` (messages),
  ``projection_lag_notifications{projection}``, ``outbox_lag_notifications``.

``start_http(port, health)`` serves the registry at ``/metrics`` with
prometheus-client's own WSGI app and ``/healthz`` (200 ``{"status": "ok"}``
while ``health()`` is true, else 503) from a daemon thread.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable, Mapping
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from streams.batches import BatchReport

log = logging.getLogger(__name__)

NAMESPACE = "loyalty"
BATCH_SIZE_BUCKETS_EVENTS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
COMMIT_LATENCY_BUCKETS_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
BIND_ADDRESS = "0.0.0.0"
SERVER_CLOSE_TIMEOUT_S = 5.0
REJECTED_SUFFIX = "_rejected"

HealthCheck = Callable[[], bool]


class LedgerMetrics:
    """The stream pipeline's metrics; every method is cheap and thread-safe."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self._counters()
        self._histograms()
        self._gauges()

    def _counters(self) -> None:
        self.events_applied = Counter("events_applied", "Inbound events applied to the ledger",
                                      namespace=NAMESPACE, registry=self.registry)
        self.duplicates = Counter("duplicates", "Redelivered events the ledger had already applied",
                                  namespace=NAMESPACE, registry=self.registry)
        self.dead_letters = Counter("dead_letters", "Messages dead-lettered, by reason code",
                                    ["reason"], namespace=NAMESPACE, registry=self.registry)
        self.rejections = Counter("rejections", "Business rejections (*_rejected facts), by reason",
                                  ["reason"], namespace=NAMESPACE, registry=self.registry)

    def _histograms(self) -> None:
        self.batch_size = Histogram("batch_size_events", "Messages in one partition batch",
                                    namespace=NAMESPACE, registry=self.registry,
                                    buckets=BATCH_SIZE_BUCKETS_EVENTS)
        self.commit_latency = Histogram("commit_latency_seconds",
                                        "Time to apply and commit one partition batch",
                                        namespace=NAMESPACE, registry=self.registry,
                                        buckets=COMMIT_LATENCY_BUCKETS_SECONDS)

    def _gauges(self) -> None:
        self.consumer_lag = Gauge("consumer_lag", "Messages behind the partition's end offset",
                                  ["topic", "partition"], namespace=NAMESPACE, registry=self.registry)
        self.projection_lag = Gauge("projection_lag_notifications",
                                    "Notifications a projection is behind the event store",
                                    ["projection"], namespace=NAMESPACE, registry=self.registry)
        self.outbox_lag = Gauge("outbox_lag_notifications",
                                "Committed notifications the outbox relay has not published",
                                namespace=NAMESPACE, registry=self.registry)

    # ---------------------------------------------------------------- record

    def record_batch(self, report: BatchReport, rejections: Mapping[str, int] | None = None,
                     commit_latency_s: float | None = None) -> None:
        """Count one committed partition batch (call it once, after the commit)."""
        self.events_applied.inc(report.applied)
        self.duplicates.inc(report.duplicates)
        for reason, count in report.reasons.items():
            self.dead_letters.labels(reason=reason).inc(count)
        self.record_rejections(rejections or {})
        self.batch_size.observe(batch_events(report))
        if commit_latency_s is not None:
            self.commit_latency.observe(commit_latency_s)

    def record_rejections(self, rejections: Mapping[str, int]) -> None:
        for reason, count in rejections.items():
            self.rejections.labels(reason=reason).inc(count)

    def set_consumer_lag(self, topic: str, partition: int, lag_messages: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag_messages)

    def set_projection_lag(self, projection: str, lag_notifications: int) -> None:
        self.projection_lag.labels(projection=projection).set(lag_notifications)

    def set_outbox_lag(self, lag_notifications: int) -> None:
        self.outbox_lag.set(lag_notifications)


def batch_events(report: BatchReport) -> int:
    """Messages of the batch: every message is applied, a duplicate, dead or skipped."""
    return report.applied + report.duplicates + report.dead_letters + report.skipped


def rejection_counts(results: Iterable[Any]) -> dict[str, int]:
    """Per-reason counts of the ``*_rejected`` facts in ledger ``Result``s."""
    from ledger.domain import fact_type

    counts: dict[str, int] = {}
    for result in results:
        for fact in result.facts:
            if fact_type(fact).endswith(REJECTED_SUFFIX):
                counts[fact.reason] = counts.get(fact.reason, 0) + 1
    return counts


@functools.cache
def default_metrics() -> LedgerMetrics:
    """The process's metrics on prometheus-client's global registry (created once)."""
    return LedgerMetrics(REGISTRY)


# ------------------------------------------------------------------ HTTP server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never keeps the process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Scrapes and probes every few seconds: not worth a log line each."""


def health_app(health: HealthCheck, started_at: float) -> Callable:
    """WSGI app for ``/healthz``: 200 while ``health()`` is true, else 503."""

    def app(environ, start_response):
        try:
            healthy = bool(health())
            detail: dict[str, Any] = {}
        except Exception as error:  # noqa: BLE001 - a failing check means unhealthy
            healthy, detail = False, {"error": type(error).__name__}
        body = {"status": "ok" if healthy else "unhealthy",
                "uptime_seconds": round(time.monotonic() - started_at, 3), **detail}
        start_response("200 OK" if healthy else "503 Service Unavailable",
                       [("Content-Type", "application/json")])
        return [json.dumps(body).encode("utf-8")]

    return app


def routing_app(health: HealthCheck, registry: CollectorRegistry) -> Callable:
    """``/healthz`` to the health check, ``/metrics`` to prometheus-client's app, else 404."""
    routes = {HEALTH_PATH: health_app(health, time.monotonic()), METRICS_PATH: make_wsgi_app(registry)}

    def app(environ, start_response):
        route = routes.get(environ.get("PATH_INFO", ""))
        if route is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]
        return route(environ, start_response)

    return app


class MetricsServer:
    """A running ``/metrics`` + ``/healthz`` server; ``close()`` stops it."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread

    @property
    def port(self) -> int:
        return self.httpd.server_port

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(SERVER_CLOSE_TIMEOUT_S)


def start_http(port: int, health: HealthCheck = lambda: True,
               registry: CollectorRegistry | None = None,
               addr: str = BIND_ADDRESS) -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` on ``addr:port`` (0: any free port) in a daemon thread."""
    app = routing_app(health, REGISTRY if registry is None else registry)
    httpd = make_server(addr, port, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info("metrics on %s:%d%s, health on %s", addr, httpd.server_port, METRICS_PATH, HEALTH_PATH)
    return MetricsServer(httpd, thread)
