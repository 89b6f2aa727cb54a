"""``bench/campaign_cpu.py``: one side's parts come out per event, with the campaign lines
its facts carry (the 20 bench campaigns give many, the default program none)."""

from __future__ import annotations

import pytest

from bench.campaign_cpu import PREVIOUS_STORE_PATH_ENV, inbound, run_side
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


def test_the_previous_store_path_side_stores_the_same_facts(embedded_pg):
    stream = inbound(simulated_lines(EVENTS))
    settings, text = Settings(), campaign_program_text()
    new = run_side(embedded_pg, "test_new_path", text, stream, settings)
    old = run_side(embedded_pg, "test_old_path", text, stream, settings, PREVIOUS_STORE_PATH_ENV)
    assert old["ledger_wall_us_per_event"] > 0 and new["ledger_wall_us_per_event"] > 0
    for figure in ("facts_per_event", "stored_bytes_per_event", "campaign_lines_per_event"):
        assert old[figure] == new[figure]


class Stop(Exception):
    """Ends ``main`` where the database would start."""


def test_main_tunes_the_collector_as_a_worker_does_unless_told_not_to(monkeypatch):
    import bench.campaign_cpu as campaign_cpu
    tuned = []
    monkeypatch.setattr(campaign_cpu, "tune_gc", tuned.append)
    monkeypatch.setattr(campaign_cpu, "simulated_lines", lambda events: [])
    monkeypatch.setattr(campaign_cpu, "EmbeddedPostgres", lambda durable: (_ for _ in ()).throw(Stop()))
    for argv, expected in ((["--events", "1"], 1), (["--events", "1", "--gc-defaults"], 1)):
        with pytest.raises(Stop):
            campaign_cpu.main(argv)
        assert len(tuned) == expected
