"""The annual incentive's one rule (``ledger.rules``): eligibility, the bonus, the year's totals."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from ledger.program import load_program
from ledger.rules import PurchaseRecord, annual_bonus, annual_totals

PROGRAM = load_program()  # 12 purchases, 5 %
JAN_1 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def purchase(points: int, amount_minor: int = 1000, refunded_minor: int = 0,
             reversed_points: int = 0) -> PurchaseRecord:
    return PurchaseRecord(f"p-{points}-{refunded_minor}", JAN_1, 2025, amount_minor, points, None,
                          refunded_minor, reversed_points)


def test_eligible_from_the_minimum_number_of_purchases():
    assert annual_bonus(PROGRAM.annual_purchases_min - 1, 1000, PROGRAM) == (False, 0)
    assert annual_bonus(PROGRAM.annual_purchases_min, 1000, PROGRAM) == (True, 50)


def test_the_bonus_is_rounded_down_and_never_negative():
    assert annual_bonus(12, 39, PROGRAM) == (True, 1)      # 5 % of 39 = 1.95
    assert annual_bonus(12, -40, PROGRAM) == (True, 0)     # refunds beyond earnings
    assert annual_bonus(12, 1000, replace(PROGRAM, annual_bonus_pct=0)) == (True, 0)


def test_totals_leave_out_fully_refunded_purchases_but_count_every_reversal():
    purchases = [purchase(10), purchase(20, refunded_minor=500, reversed_points=10),
                 purchase(30, refunded_minor=1000, reversed_points=30)]
    assert annual_totals(purchases) == (2, 20)
    assert annual_totals([]) == (0, 0)
