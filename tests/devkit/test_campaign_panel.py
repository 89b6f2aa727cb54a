"""The demo's campaigns: its program file, the simulator's baskets that match it, and the
dashboard's panel of each campaign's points and budget left."""

from __future__ import annotations

from itertools import islice

from rich.console import Console

from ledger.application import LoyaltyLedger
from ledger.program import load_program
from projections.runner import catch_up, open_read_models
from streams.devkit.baskets import basket_items
from streams.devkit.dashboard import DASHBOARD_READ_MODELS, PipelineProbe, render
from streams.devkit.demo import DEMO_PROGRAM_PATH
from streams.devkit.simulator import SimulationConfig, simulate_events
from streams.settings import Settings
from tests.support import builders as b

DEMO_PROGRAM = load_program(DEMO_PROGRAM_PATH)


def test_the_demo_program_runs_the_three_kinds_of_campaign():
    kinds = {campaign.id: campaign.effect for campaign in DEMO_PROGRAM.campaigns}
    assert kinds == {"summer-weekend-x2": "extra_multiplier_pct", "tea-bonus": "bonus_points",
                     "coffee-trio": "items_min_bonus_points", "coffee-mug": "items_min_reward_id"}
    assert DEMO_PROGRAM.tiers == load_program().tiers  # otherwise the default program


def test_baskets_add_up_and_are_the_same_for_the_same_purchase():
    for amount in (1, 7, 3500, 120_000):
        items = basket_items(f"pos-{amount}", amount)
        assert sum(line["amount_minor"] for line in items) == amount
        assert all(line["amount_minor"] > 0 and line["quantity"] > 0 for line in items)
        assert basket_items(f"pos-{amount}", amount) == items


def test_simulated_purchases_carry_baskets_that_the_campaigns_match():
    purchases = [event for event in islice(simulate_events(SimulationConfig(seed=3, members=200)),
                                           4000) if event.get("type") == "purchase"]
    skus = {line["sku"] for event in purchases for line in event["items"]}
    assert "PRD-TEA-01" in skus and any(sku.startswith("COF-") for sku in skus)
    assert all(type(line["quantity"]) is int for e in purchases for line in e["items"])


def test_the_dashboard_shows_each_campaigns_points_and_budget_left(pg_env):
    ledger = LoyaltyLedger(env=pg_env, program=DEMO_PROGRAM)
    coffees = [{"sku": "COF-ARABICA-250", "quantity": 3, "amount_minor": 2400}]
    ledger.apply(*b.commands({**b.purchase("m1", "2025-03-01T10:00:00Z", 2400), "items": coffees}))
    with open_read_models(pg_env, DASHBOARD_READ_MODELS, ledger.program) as models:
        catch_up(ledger, models, batch_notifications_max=100)
        shot = PipelineProbe(ledger, Settings(), models).snapshot(produced=1)
    ledger.close()
    assert shot.campaigns == [("summer-weekend-x2", 0, 0, 0, "-"), ("tea-bonus", 0, 0, 0, "-"),
                              ("coffee-trio", 1, 50, 0, "149,950"), ("coffee-mug", 0, 0, 0, "-")]
    console = Console(record=True, width=160)
    console.print(render(shot, ["bronze"], "demo"))
    text = console.export_text()
    assert "149,950" in text and "Campaigns" in text
