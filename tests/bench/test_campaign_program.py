"""The benchmark's 20-campaign programme is a valid program whose campaigns all run over
the simulated period and match the simulator's purchases (so the benchmark measures work)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from itertools import islice

import orjson

from bench.campaign_program import (
    BENCH_CAMPAIGNS, EXHAUSTED_BUDGET_POINTS, campaign_program_text, realistic_campaign_program_text,
    targeted_campaign_program_text)
from bench.load import SIMULATION_DAYS, simulated_lines
from ledger.calendar import parse_timestamp
from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.domain import LoyaltyAccount
from ledger.program import parse_program
from streams.devkit.simulator import SimulationConfig, simulate_events


def test_twenty_campaigns_of_every_kind_run_and_match_simulated_purchases():
    program = parse_program(campaign_program_text(), "bench-campaigns")
    assert len(program.campaigns) == BENCH_CAMPAIGNS
    assert {c.effect for c in program.campaigns} == {
        "extra_multiplier_pct", "bonus_points", "points_per_item", "items_min_bonus_points",
        "items_min_reward_id"}
    assert sum(c.budget_points is not None for c in program.campaigns) == 8  # odd ones, not gifts
    ledger = LoyaltyLedger(program=program)
    events = [e for e in islice(simulate_events(SimulationConfig(seed=2, members=100)), 1500)
              if e.get("type") == "purchase"]
    ledger.apply(*(command_from_event(event) for event in events))
    matched = {line["campaign_id"] for fact in ledger.fact_log.facts()
               if isinstance(fact, LoyaltyAccount.PointsEarned) for line in fact.campaigns}
    assert len(matched) >= BENCH_CAMPAIGNS - 4  # (the gift and a few narrow ones may not)


def campaign_lines_per_purchase(program_text: str) -> float:
    ledger = LoyaltyLedger(program=parse_program(program_text))
    events = [e for e in islice(simulate_events(SimulationConfig(seed=2, members=100)), 1500)
              if e.get("type") == "purchase"]
    ledger.apply(*(command_from_event(event) for event in events))
    lines = [len(fact.campaigns) for fact in ledger.fact_log.facts()
             if isinstance(fact, LoyaltyAccount.PointsEarned)]
    return sum(lines) / len(lines)


def test_the_aimed_programme_has_twenty_campaigns_a_purchase_matches_one_or_two_of():
    program = parse_program(targeted_campaign_program_text(), "aimed-campaigns")
    assert len(program.campaigns) == BENCH_CAMPAIGNS
    assert len({c.effect for c in program.campaigns}) == 5
    aimed = campaign_lines_per_purchase(targeted_campaign_program_text())
    assert 0.2 < aimed < 2.5
    assert campaign_lines_per_purchase(campaign_program_text()) > 3 * aimed


BENCH_STREAM_EVENTS = 1_500  # the start of the bench's stream (every bench size starts alike)
SIMULATION_START = datetime(2025, 1, 1, tzinfo=timezone.utc)  # bench.load's simulated year


def test_the_realistic_programme_runs_all_twenty_campaigns_over_the_whole_bench_stream():
    program = parse_program(realistic_campaign_program_text(), "chain-campaigns")
    assert len(program.campaigns) == BENCH_CAMPAIGNS
    moments = [parse_timestamp(orjson.loads(line)["occurred_at"])
               for line in simulated_lines(BENCH_STREAM_EVENTS)]
    year_end = SIMULATION_START + timedelta(days=SIMULATION_DAYS)
    for campaign in program.campaigns:  # the whole simulated year, with a day's margin for offsets
        assert campaign.runs_at(min(moments)) and campaign.runs_at(max(moments))
        assert campaign.starts_at <= SIMULATION_START - timedelta(hours=14)
        assert campaign.ends_at > max(moments) and campaign.ends_at >= year_end + timedelta(hours=14)
    assert {c.effect for c in program.campaigns} == {
        "extra_multiplier_pct", "bonus_points", "points_per_item", "items_min_bonus_points",
        "items_min_reward_id"}
    assert sum(c.budget_points is not None for c in program.campaigns) == 6
    assert all(c.stores or c.channels or c.tiers or c.min_amount_minor or c.skus or c.sku_prefixes
               for c in program.campaigns)  # every one aimed


def test_the_realistic_programme_matches_a_realistic_share_of_the_bench_stream():
    program = parse_program(realistic_campaign_program_text())
    ledger = LoyaltyLedger(program=program)
    events = [orjson.loads(line) for line in simulated_lines(BENCH_STREAM_EVENTS)]
    ledger.apply(*(command_from_event(e) for e in events if e["type"] == "purchase"))
    lines, points = Counter(), Counter()
    for fact in ledger.fact_log.facts():
        for line in getattr(fact, "campaigns", ()) if isinstance(fact, LoyaltyAccount.PointsEarned) else ():
            lines[line["campaign_id"]] += 1
            points[line["campaign_id"]] += line["points"]
        if isinstance(fact, LoyaltyAccount.RewardGranted):
            lines[fact.campaign_id] += 1
    assert 0.5 <= sum(lines.values()) / len(events) <= 3  # lines per inbound event (the dense set: ~7)
    assert len(lines) >= BENCH_CAMPAIGNS - 2  # nearly every campaign earns something early on
    assert points["chain-00"] == EXHAUSTED_BUDGET_POINTS  # its budget ran out within the stream
