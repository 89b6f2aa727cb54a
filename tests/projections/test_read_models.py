"""The read models as stories: each row field as CONTRACT section 4 defines it.

Facts come from the ledger itself (``LoyaltyLedger(env=pg_env)``); the read
models are caught up from its notification log and read back row by row.
"""

from __future__ import annotations

import pytest

from ledger.application import LoyaltyLedger
from ledger.domain import FACT_TYPES
from projections.annual import ANNUAL
from projections.balances import BALANCES
from projections.kpi_report import kpi_report
from projections.runner import READ_MODELS
from projections.tiers import TIERS
from tests.support import builders as b
from tests.support.ledger_steps import apply
from tests.projections.steps import projected, rows_by_key, utc


# Contract 2's columns: 0 with the default program (no pending lots, holds, transfers...)
CONTRACT_2_ZEROS = {"held": 0, "pending": 0, "lifetime_adjusted_in": 0, "lifetime_adjusted_out": 0,
                    "lifetime_transferred_in": 0, "lifetime_transferred_out": 0,
                    "lifetime_cancelled": 0, "lifetime_forfeited": 0, "pending_lots": "{}"}


@pytest.fixture
def pg_ledger(pg_env):
    ledger = LoyaltyLedger(env=pg_env)
    yield ledger
    ledger.close()


def test_balance_rows_follow_awards_redemptions_expiry_reversals_and_debt(pg_ledger, pg_env):
    # A: earns 100, redeems 30, the lot expires (70) when her birthday a year later
    # moves the clock, then a full refund takes 100 from the birthday lot
    apply(pg_ledger,
          b.purchase("A", "2024-01-10T10:00:00Z", 10000, event_id="a-buy"),
          b.redemption("A", "2024-02-01T10:00:00Z", 30),
          b.birthday("A", "2025-02-01T00:00:00Z"),
          b.refund("A", "2025-02-02T10:00:00Z", "a-buy", 10000))
    # B: redeems everything, a full refund leaves debt, the next purchase pays half of it
    apply(pg_ledger,
          b.purchase("B", "2025-03-01T10:00:00Z", 10000, event_id="b-buy"),
          b.redemption("B", "2025-03-02T10:00:00Z", 100),
          b.refund("B", "2025-03-03T10:00:00Z", "b-buy", 10000),
          b.purchase("B", "2025-03-04T10:00:00Z", 5000))
    with projected(pg_ledger, pg_env, ["balances"]) as models:
        rows = rows_by_key(models, "balances", BALANCES)
    assert rows[("A",)] == {
        "member_id": "A", "balance": 100, "lifetime_earned": 300, "lifetime_redeemed": 30,
        "lifetime_expired": 70, "lifetime_reversed": 100, "debt": 0,
        "last_event_at": utc("2025-02-02T10:00:00Z"), **CONTRACT_2_ZEROS}
    assert rows[("B",)] == {
        "member_id": "B", "balance": -50, "lifetime_earned": 150, "lifetime_redeemed": 100,
        "lifetime_expired": 0, "lifetime_reversed": 100, "debt": 50,
        "last_event_at": utc("2025-03-04T10:00:00Z"), **CONTRACT_2_ZEROS}


def test_tier_row_counts_spend_by_year_of_the_clock_and_rolls_over(pg_ledger, pg_env):
    def tier_row():
        with projected(pg_ledger, pg_env, ["tiers"]) as models:
            row = rows_by_key(models, "tiers", TIERS)[("T",)]
        return {name: row[name] for name in ("tier", "spend_current_year", "spend_previous_year",
                                             "next_tier", "spend_to_next_tier", "tier_since")}

    # 600.00 in 2024 makes T silver
    apply(pg_ledger, b.purchase("T", "2024-03-01T10:00:00Z", 60000, event_id="t-buy"))
    assert tier_row() == {"tier": "silver", "spend_current_year": 60000, "spend_previous_year": 0,
                          "next_tier": "gold", "spend_to_next_tier": 140000,
                          "tier_since": utc("2024-03-01T10:00:00Z")}
    # In 2025 the status earned in 2024 still holds; the years shift with the clock
    apply(pg_ledger, b.birthday("T", "2025-06-01T00:00:00Z"))
    assert tier_row() == {"tier": "silver", "spend_current_year": 0, "spend_previous_year": 60000,
                          "next_tier": "gold", "spend_to_next_tier": 200000,
                          "tier_since": utc("2024-03-01T10:00:00Z")}
    # A refund counts against its purchase's year (2024) and drops T to bronze
    apply(pg_ledger, b.refund("T", "2025-06-02T10:00:00Z", "t-buy", 20000))
    assert tier_row() == {"tier": "bronze", "spend_current_year": 0, "spend_previous_year": 40000,
                          "next_tier": "silver", "spend_to_next_tier": 50000,
                          "tier_since": utc("2025-06-02T10:00:00Z")}
    # 2026: nothing of 2024 counts any more; a late 2025 purchase lands in the previous year
    apply(pg_ledger, b.birthday("T", "2026-01-05T00:00:00Z"),
          b.purchase("T", "2025-12-20T10:00:00Z", 30000))
    assert tier_row() == {"tier": "bronze", "spend_current_year": 0, "spend_previous_year": 30000,
                          "next_tier": "silver", "spend_to_next_tier": 50000,
                          "tier_since": utc("2025-06-02T10:00:00Z")}


def test_top_tier_has_no_next_tier(pg_ledger, pg_env):
    apply(pg_ledger, b.purchase("P", "2025-01-02T10:00:00Z", 500000))
    with projected(pg_ledger, pg_env, ["tiers"]) as models:
        row = rows_by_key(models, "tiers", TIERS)[("P",)]
    assert (row["tier"], row["next_tier"], row["spend_to_next_tier"]) == ("platinum", None, None)


def test_annual_row_counts_purchases_not_fully_refunded_and_the_award(pg_ledger, pg_env):
    # Twelve purchases of 10.00 (10 points each) in 2024, a thirteenth fully refunded,
    # the first partly refunded (5 points back)
    buys = [b.purchase("Y", f"2024-01-{day:02d}T10:00:00Z", 1000, event_id=f"y-{day}")
            for day in range(1, 13)]
    apply(pg_ledger, *buys,
          b.purchase("Y", "2024-02-01T10:00:00Z", 3000, event_id="y-13"),
          b.refund("Y", "2024-02-02T10:00:00Z", "y-13", 3000),
          b.refund("Y", "2024-02-03T10:00:00Z", "y-1", 500))
    with projected(pg_ledger, pg_env, ["annual"]) as models:
        before_close = rows_by_key(models, "annual", ANNUAL)[("Y", 2024)]
    assert before_close == {"member_id": "Y", "year": 2024, "purchases": 12,
                            "net_purchase_points": 115, "eligible": True, "projected_bonus": 5,
                            "awarded_bonus": None}
    # The year-end job closes 2024 (awarded), then 2023 (no purchases), then 2025 starts
    apply(pg_ledger, b.year_closed("Y", "2025-01-01T00:00:00Z", 2024),
          b.year_closed("Y", "2025-01-01T00:00:00Z", 2023),
          b.purchase("Y", "2025-01-10T10:00:00Z", 1000))
    with projected(pg_ledger, pg_env, ["annual"]) as models:
        rows = rows_by_key(models, "annual", ANNUAL)
    assert rows[("Y", 2024)]["awarded_bonus"] == 5
    assert rows[("Y", 2023)] == {"member_id": "Y", "year": 2023, "purchases": 0,
                                 "net_purchase_points": 0, "eligible": False,
                                 "projected_bonus": 0, "awarded_bonus": 0}
    assert rows[("Y", 2025)] == {"member_id": "Y", "year": 2025, "purchases": 1,
                                 "net_purchase_points": 10, "eligible": False,
                                 "projected_bonus": 0, "awarded_bonus": None}


def test_kpi_report_counts_members_checks_redemptions_retention_and_liability(pg_ledger, pg_env):
    apply(pg_ledger,
          b.purchase("K1", "2024-05-01T10:00:00Z", 10000),   # 100 points, lot to 2025-05
          b.purchase("K1", "2024-06-01T10:00:00Z", 20000),   # 200 points, lot to 2025-06
          b.redemption("K1", "2024-06-02T10:00:00Z", 50),    # 50 from the May lot
          b.purchase("K2", "2024-07-01T10:00:00Z", 5000),    # 50 points, lot to 2025-07
          b.purchase("K1", "2025-02-01T10:00:00Z", 60000),   # bronze: 600 points; then silver
          b.purchase("K1", "2025-03-01T10:00:00Z", 10000))   # silver: 125 points
    with projected(pg_ledger, pg_env, ["kpis"]) as models:
        report = kpi_report(models.view("kpis"), pg_ledger.program)
    years = {row["year"]: row for row in report if row["kind"] == "year"}
    expected_2024 = {
        "kind": "year", "year": 2024, "active_members": 2, "repeat_purchasers": 1,
        "repeat_purchase_rate_bp": 5000, "purchases": 3, "purchase_amount_minor": 35000,
        "average_check_minor": 11666, "average_check_minor_bronze": 11666,
        "average_check_minor_silver": None,
        "points_issued": 350, "points_reversed": 0, "points_redeemed": 50, "points_expired": 0,
        "redemption_rate_bp": 1428, "redeeming_members": 1, "previous_active_members": 0,
        "retained_members": 0, "retention_rate_bp": None}
    expected_2025 = {
        "kind": "year", "year": 2025, "active_members": 1, "repeat_purchasers": 1,
        "repeat_purchase_rate_bp": 10000, "purchases": 2, "purchase_amount_minor": 70000,
        "average_check_minor": 35000,
        "average_check_minor_bronze": 60000, "average_check_minor_silver": 10000,
        "points_issued": 725, "points_reversed": 0, "points_redeemed": 0, "points_expired": 0,
        "redemption_rate_bp": 0, "redeeming_members": 0, "previous_active_members": 2,
        "retained_members": 1, "retention_rate_bp": 5000}
    assert _picked(years[2024], expected_2024) == expected_2024
    assert _picked(years[2025], expected_2025) == expected_2025
    liability = [(row["expiry_month"], row["outstanding_points"])
                 for row in report if row["kind"] == "liability"]
    assert liability == [("2025-05", 50), ("2025-06", 200), ("2025-07", 50),
                         ("2026-02", 600), ("2026-03", 125)]
    assert all(isinstance(value, int) for row in report for value in row.values()
               if not isinstance(value, (str, type(None))))


def _picked(row: dict, expected: dict) -> dict:
    """The figures of ``row`` that ``expected`` names (a row has more)."""
    return {key: row.get(key, "missing") for key in expected}


def test_handlers_are_named_after_wire_names_and_projections_subscribe_to_those_only():
    for name, projection_class in READ_MODELS.items():
        handled = {wire for wire in FACT_TYPES if callable(getattr(projection_class, wire, None))}
        assert handled, name
        assert len(projection_class.topics) == len(handled), name
    assert "tier_changed" not in {w for w in FACT_TYPES
                                  if callable(getattr(READ_MODELS["balances"], w, None))}
    annual = {w for w in FACT_TYPES if callable(getattr(READ_MODELS["annual"], w, None))}
    assert annual == {"points_earned", "points_reversed", "year_closed"}
