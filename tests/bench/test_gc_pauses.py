"""``bench/gc_pauses.py``: each side runs in its own interpreter and reports its collections,
CPU per event and batch times; the tuned side collects its young generation far less often
than CPython's defaults over the same stream, and never fully (its timer is minutes away)."""

from __future__ import annotations

from bench.gc_pauses import _side_in_child

EVENTS = 1_500


def test_both_sides_report_and_the_tuned_one_collects_less():
    default, tuned = _side_in_child("default", EVENTS), _side_in_child("tuned", EVENTS)
    for side in (default, tuned):
        assert side["cpu_us_per_event"] > 0
        assert 0 < side["batch_ms"]["p50"] <= side["batch_ms"]["p100"]
    assert default["collections"]["0"]["count"] > 5 * max(tuned["collections"]["0"]["count"], 1)
    assert tuned["collections"]["2"]["count"] == 0
