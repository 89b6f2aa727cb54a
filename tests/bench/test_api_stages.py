"""The API benchmark's reading of ``Server-Timing``: stages by name, the rest as ``http``."""

from __future__ import annotations

import pytest

from bench.api import stage_summary, with_http_stage

HEADER = 'recorded;dur=5.0;desc="1", produced;dur=3.5;desc="1", ledger;dur=70.0;desc="1", reread;dur=6.5;desc="1"'


def test_a_round_trip_is_split_into_the_server_stages_and_the_rest():
    stages = with_http_stage(100.0, HEADER)
    assert stages == pytest.approx({"recorded": 5.0, "produced": 3.5, "ledger": 70.0, "reread": 6.5,
                                    "http": 15.0})
    assert with_http_stage(12.0, "") == {"http": 12.0}  # a 202 or an error without stages


def test_the_summary_names_each_stage_with_its_percentiles_and_the_slowest_round_trips():
    runs = [with_http_stage(100.0 + n, HEADER) for n in range(100)]
    summary = stage_summary(runs)
    assert summary.startswith("http p50 ") and "ledger p50 70.0 p99 70.0 slowest-1% 70.0" in summary
    assert "http p50 64.0 p99 113.0 slowest-1% 114.0" in summary  # the rest: 15 to 114 ms
