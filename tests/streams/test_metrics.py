"""Prometheus metrics and the /metrics + /healthz server (streams/metrics.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ledger.application import LoyaltyLedger
from streams.batches import BatchReport
from streams.metrics import (LedgerMetrics, batch_events, default_metrics, rejection_counts,
                             start_http)
from tests.support import builders as b

HTTP_TIMEOUT_S = 5.0


def get(server, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def metrics() -> LedgerMetrics:
    return LedgerMetrics()  # a fresh registry per test


@pytest.fixture
def healthy() -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture
def server(metrics, healthy):
    running = start_http(0, health=lambda: healthy["ok"], registry=metrics.registry, addr="127.0.0.1")
    yield running
    running.close()


def test_counters_move_after_record_batch(server, metrics):
    # Given a fresh registry, every counter starts at zero
    before = samples(get(server, "/metrics")[1])
    assert before[("loyalty_events_applied_total", ())] == 0
    assert before[("loyalty_duplicates_total", ())] == 0

    # When one batch is recorded: 7 applied, 2 duplicates, 3 dead letters, 1 skipped
    report = BatchReport(applied=7, duplicates=2, skipped=1)
    report.count_dead_letter("schema")
    report.count_dead_letter("schema")
    report.count_dead_letter("key_mismatch")
    metrics.record_batch(report, rejections={"currency": 2, "insufficient_points": 1},
                         commit_latency_s=0.04)

    # Then the scrape shows each count, dead letters and rejections by reason
    after = samples(get(server, "/metrics")[1])
    assert after[("loyalty_events_applied_total", ())] == 7
    assert after[("loyalty_duplicates_total", ())] == 2
    assert after[("loyalty_dead_letters_total", (("reason", "schema"),))] == 2
    assert after[("loyalty_dead_letters_total", (("reason", "key_mismatch"),))] == 1
    assert after[("loyalty_rejections_total", (("reason", "currency"),))] == 2
    assert after[("loyalty_rejections_total", (("reason", "insufficient_points"),))] == 1
    # And the batch size (13 messages) and commit latency were observed once each
    assert after[("loyalty_batch_size_events_count", ())] == 1
    assert after[("loyalty_batch_size_events_sum", ())] == 13
    assert after[("loyalty_commit_latency_seconds_count", ())] == 1
    assert after[("loyalty_commit_latency_seconds_bucket", (("le", "0.05"),))] == 1


def test_gauges_are_set_per_label(server, metrics):
    metrics.set_consumer_lag("loyalty.events", 3, 120)
    metrics.set_projection_lag("balances", 40)
    metrics.set_outbox_lag(5)
    metrics.set_consumer_lag("loyalty.events", 3, 20)  # a gauge follows the latest value

    scraped = samples(get(server, "/metrics")[1])
    assert scraped[("loyalty_consumer_lag", (("partition", "3"), ("topic", "loyalty.events")))] == 20
    assert scraped[("loyalty_projection_lag_notifications", (("projection", "balances"),))] == 40
    assert scraped[("loyalty_outbox_lag_notifications", ())] == 5


def test_healthz_follows_the_health_callback(server, healthy):
    # While the callback says healthy: 200 and status ok
    status, body = get(server, "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"

    # When it turns false: 503 and status unhealthy
    healthy["ok"] = False
    status, body = get(server, "/healthz")
    assert status == 503
    assert json.loads(body)["status"] == "unhealthy"

    # And back
    healthy["ok"] = True
    assert get(server, "/healthz")[0] == 200


def test_a_raising_health_check_is_unhealthy_and_names_only_the_error_type(metrics):
    def broken() -> bool:
        raise RuntimeError("postgresql://loyalty:s3cret@db/loyalty unreachable")

    running = start_http(0, health=broken, registry=metrics.registry, addr="127.0.0.1")
    try:
        status, body = get(running, "/healthz")
    finally:
        running.close()
    assert status == 503
    assert json.loads(body)["error"] == "RuntimeError"
    assert "s3cret" not in body


def test_unknown_paths_are_not_found(server):
    assert get(server, "/")[0] == 404
    assert get(server, "/metrics")[0] == 200


def test_batch_events_counts_every_message_once():
    report = BatchReport(applied=3, duplicates=1, skipped=2)
    report.count_dead_letter("not_json")
    assert batch_events(report) == 7


def test_rejection_counts_come_from_rejected_facts():
    # Given a purchase in a foreign currency and a redemption without points
    ledger = LoyaltyLedger()
    results = ledger.apply(*b.commands(
        b.purchase("m-1", "2025-03-01T10:00:00Z", 10_000, currency="USD"),
        b.redemption("m-1", "2025-03-02T10:00:00Z", 50),
        b.purchase("m-1", "2025-03-03T10:00:00Z", 10_000),
    ))
    # Then one rejection per reason is counted, and the accepted purchase none
    assert rejection_counts(results) == {"currency": 1, "insufficient_points": 1}


def test_two_metrics_instances_do_not_clash():
    first, second = LedgerMetrics(), LedgerMetrics()
    first.events_applied.inc(3)
    assert second.registry.get_sample_value("loyalty_events_applied_total") == 0


def test_default_metrics_register_once_on_the_global_registry():
    assert default_metrics() is default_metrics()
    assert REGISTRY.get_sample_value("loyalty_outbox_lag_notifications") is not None
