"""The benchmark's sizes carry the issue's targets: latency at 1,000 and 5,000 events/s."""

from __future__ import annotations

from bench.run import SIZES, latency_key


def test_default_and_big_sizes_measure_latency_at_both_target_rates():
    for size in ("default", "big"):
        assert SIZES[size].latency_rates == (1_000, 5_000)


def test_the_first_rate_keeps_the_earlier_key_and_others_are_told_apart():
    keys = {latency_key(rate, "p99", 1_000) for rate in (1_000, 5_000)}
    assert keys == {"latency.p99", "latency.p99@5000"}
