"""The benchmark's 20-campaign programme is a valid program whose campaigns all run over
the simulated period and match the simulator's purchases (so the benchmark measures work)."""

from __future__ import annotations

from itertools import islice

from bench.campaign_program import BENCH_CAMPAIGNS, campaign_program_text, targeted_campaign_program_text
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
