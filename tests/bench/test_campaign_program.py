"""The benchmark's 20-campaign programme is a valid program whose campaigns all run over
the simulated period and match the simulator's purchases (so the benchmark measures work)."""

from __future__ import annotations

from itertools import islice

from bench.campaign_program import BENCH_CAMPAIGNS, campaign_program_text
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
