"""``bench/campaign_cpu.py``: one side's parts come out per event, with the campaign lines
its facts carry (the 20 bench campaigns give many, the default program none)."""

from __future__ import annotations

from bench.campaign_cpu import inbound, run_side
from bench.campaign_program import campaign_program_text
from bench.load import simulated_lines
from ledger.program import DEFAULT_PROGRAM_PATH
from streams.settings import Settings

EVENTS = 300


def test_a_side_reports_cpu_bytes_and_campaign_lines_per_event(embedded_pg):
    stream = inbound(simulated_lines(EVENTS))
    assert len({message.partition for message in stream}) > 1
    settings = Settings()
    none = run_side(embedded_pg, "test_none", DEFAULT_PROGRAM_PATH.read_text(), stream, settings)
    twenty = run_side(embedded_pg, "test_twenty", campaign_program_text(), stream, settings)
    for part in ("ledger", "relay", "projections"):
        assert none[part] > 0 and twenty[part] > 0
    assert none["facts_per_event"] >= 1
    assert none["campaign_lines_per_event"] == 0
    assert twenty["campaign_lines_per_event"] > 3
    assert twenty["stored_bytes_per_event"] > none["stored_bytes_per_event"]
