"""Prometheus metrics of the till API (prefixed ``loyalty_api_``).

- ``requests_total{route,status}``: every answer, by route template and status;
- ``reply_latency_seconds``: ``POST /v1/events`` from receipt to the outcome
  (or to the 202);
- ``replies_timed_out_total``: writes answered 202 because the outcome was
  not in the ledger within ``reply_timeout_ms``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

NAMESPACE = "loyalty_api"
REPLY_LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("requests", "Answers of the till API by route and status",
                                ["route", "status"], namespace=NAMESPACE, registry=self.registry)
        self.reply_latency = Histogram("reply_latency_seconds",
                                       "POST /v1/events: receipt to outcome (or to the 202)",
                                       namespace=NAMESPACE, registry=self.registry,
                                       buckets=REPLY_LATENCY_BUCKETS_SECONDS)
        self.replies_timed_out = Counter("replies_timed_out",
                                         "Writes answered 202: no outcome within reply_timeout_ms",
                                         namespace=NAMESPACE, registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
