"""The programme KPIs on a small stream, every figure computed by hand.

Three members over two years (default program, a point costing 3 minor
units when redeemed): A buys twice in January 2024, refunds one purchase in
February, buys big in March (then silver) and once more in January 2025; B
buys in January 2024, redeems in February, gets a birthday in March, buys
in February 2025 and then sends a purchase of 20 December 2024 late; C buys
once in February 2024 and never comes back. Lots expire twelve months after
their purchase: A's and B's January 2024 lots expire in January 2025.

Then section 13: members enrolling after their first event, or never;
NPS answers in every band; an erasure's forfeited points (breakage).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from ledger.application import LoyaltyLedger
from ledger.program import load_program, parse_program
from projections.kpi_definitions import nps_band, nps_figures
from projections.kpi_report import kpi_fields, kpi_report, report_tiers
from projections.kpis import campaign_points
from tests.support import builders as b
from tests.support import member_builders as m
from tests.support.ledger_steps import apply
from tests.projections.steps import projected

POINT_VALUE_MINOR = 3
PROGRAM = dataclasses.replace(load_program(), point_value_minor=POINT_VALUE_MINOR)
TIERS = ("bronze", "silver", "gold", "platinum")


@pytest.fixture
def ledger(pg_env):
    ledger = LoyaltyLedger(env=pg_env, program=PROGRAM)
    yield ledger
    ledger.close()


def two_years(ledger: LoyaltyLedger) -> None:
    apply(ledger,
          b.purchase("A", "2024-01-10T10:00:00Z", 10000, event_id="a1"),   # 100 points
          b.purchase("B", "2024-01-15T10:00:00Z", 20000, event_id="b1"),   # 200 points
          b.purchase("A", "2024-01-20T10:00:00Z", 5000, event_id="a2"),    # 50 points
          b.refund("A", "2024-02-05T10:00:00Z", "a2", 5000),              # 50 reversed
          b.redemption("B", "2024-02-10T10:00:00Z", 80),                  # costs 240
          b.purchase("C", "2024-02-20T10:00:00Z", 3000, event_id="c1"),    # 30 points
          b.purchase("A", "2024-03-01T10:00:00Z", 60000, event_id="a3"),   # 600, then silver
          b.birthday("B", "2024-03-05T10:00:00Z"),                        # 200 points
          b.purchase("A", "2025-01-25T10:00:00Z", 10000, event_id="a4"),   # 100 expire; 125
          b.purchase("B", "2025-02-01T10:00:00Z", 4000, event_id="b2"),    # 120 expire; 40
          b.purchase("B", "2024-12-20T10:00:00Z", 1000, event_id="b-late"))  # late: 10


def empty_period(kind: str, year: int, month: str | None = None, **figures) -> dict:
    """A period row with nothing in it, then ``figures``."""
    row = dict.fromkeys(kpi_fields(list(TIERS))[:-3], 0)
    row.update({"kind": kind, "year": year, "month": month})
    for rate in ("retention_rate_bp", "churn_rate_bp", "repeat_purchase_rate_bp",
                 "average_check_minor", "average_net_spend_minor", "projected_clv_minor",
                 "historical_clv_minor", "nps_score_bp", "redemption_rate_bp",
                 "breakage_rate_bp", *(f"average_check_minor_{tier}" for tier in TIERS)):
        row[rate] = None
    return row | figures


def test_every_kpi_of_a_small_stream_per_month_and_per_year(ledger, pg_env):
    two_years(ledger)
    with projected(ledger, pg_env, ["kpis"]) as models:
        report = kpi_report(models.view("kpis"), ledger.program)
    months = {row["month"]: row for row in report if row["kind"] == "month"}
    years = {row["year"]: row for row in report if row["kind"] == "year"}
    # Every month from the first to the last, none skipped; the late purchase is December's
    assert list(months) == [f"2024-{m:02d}" for m in range(1, 13)] + ["2025-01", "2025-02"]
    assert months["2024-01"] == empty_period(
        "month", 2024, "2024-01", enrollments=2, active_members=2,
        repeat_purchasers=1, repeat_purchase_rate_bp=5000,
        purchases=3, purchase_amount_minor=35000, average_check_minor=11666,
        average_check_minor_bronze=11666,
        net_spend_minor=35000, average_net_spend_minor=17500,
        cohort_net_spend_minor=105000, historical_clv_minor=52500,  # A 80,000 + B 25,000 to date
        points_issued=350, redemption_rate_bp=0)
    assert months["2024-02"] == empty_period(
        "month", 2024, "2024-02", enrollments=1, active_members=1,
        previous_active_members=2, retained_members=0, retention_rate_bp=0,
        churned_members=2, churn_rate_bp=10000, repeat_purchase_rate_bp=0, redeeming_members=1,
        purchases=1, purchase_amount_minor=3000, average_check_minor=3000,
        average_check_minor_bronze=3000,
        refunded_minor=5000, net_spend_minor=-2000, average_net_spend_minor=-2000,
        projected_clv_minor=-2000,  # -2,000 x 2 previous / (1 active x 2 churned)
        cohort_net_spend_minor=3000, historical_clv_minor=3000,
        points_issued=30, points_reversed=50, points_redeemed=80, redemption_rate_bp=26666,
        points_retired=80, breakage_rate_bp=0, programme_cost_minor=240)
    assert months["2024-03"] == empty_period(
        "month", 2024, "2024-03", active_members=1, previous_active_members=1,
        retention_rate_bp=0, churned_members=1, churn_rate_bp=10000, repeat_purchase_rate_bp=0,
        purchases=1, purchase_amount_minor=60000, average_check_minor=60000,
        average_check_minor_bronze=60000,  # bronze when bought; silver after it
        net_spend_minor=60000, average_net_spend_minor=60000, projected_clv_minor=60000,
        points_issued=800, redemption_rate_bp=0)
    assert months["2024-04"] == empty_period(
        "month", 2024, "2024-04", previous_active_members=1, retention_rate_bp=0,
        churned_members=1, churn_rate_bp=10000)
    assert months["2024-05"] == empty_period("month", 2024, "2024-05")
    assert months["2024-12"] == empty_period(
        "month", 2024, "2024-12", active_members=1, repeat_purchase_rate_bp=0,
        purchases=1, purchase_amount_minor=1000, average_check_minor=1000,
        average_check_minor_bronze=1000, net_spend_minor=1000, average_net_spend_minor=1000,
        points_issued=10, redemption_rate_bp=0)
    assert months["2025-01"] == empty_period(
        "month", 2025, "2025-01", active_members=1, previous_active_members=1,
        retention_rate_bp=0, churned_members=1, churn_rate_bp=10000, repeat_purchase_rate_bp=0,
        purchases=1, purchase_amount_minor=10000, average_check_minor=10000,
        average_check_minor_silver=10000,
        net_spend_minor=10000, average_net_spend_minor=10000, projected_clv_minor=10000,
        points_issued=125, redemption_rate_bp=0,
        points_expired=220, breakage_points=220, points_retired=220, breakage_rate_bp=10000)
    assert months["2025-02"] == empty_period(
        "month", 2025, "2025-02", active_members=1, previous_active_members=1,
        retention_rate_bp=0, churned_members=1, churn_rate_bp=10000, repeat_purchase_rate_bp=0,
        purchases=1, purchase_amount_minor=4000, average_check_minor=4000,
        average_check_minor_bronze=4000,
        net_spend_minor=4000, average_net_spend_minor=4000, projected_clv_minor=4000,
        points_issued=40, redemption_rate_bp=0)
    assert years[2024] == empty_period(
        "year", 2024, enrollments=3, active_members=3,
        repeat_purchasers=2, repeat_purchase_rate_bp=6666, redeeming_members=1,
        purchases=6, purchase_amount_minor=99000, average_check_minor=16500,
        average_check_minor_bronze=16500,
        refunded_minor=5000, net_spend_minor=94000, average_net_spend_minor=31333,
        cohort_net_spend_minor=108000, historical_clv_minor=36000,
        points_issued=1190, points_reversed=50, points_redeemed=80, redemption_rate_bp=672,
        points_retired=80, breakage_rate_bp=0, programme_cost_minor=240)
    assert years[2025] == empty_period(
        "year", 2025, active_members=2, previous_active_members=3, retained_members=2,
        retention_rate_bp=6666, churned_members=1, churn_rate_bp=3333, repeat_purchase_rate_bp=0,
        purchases=2, purchase_amount_minor=14000, average_check_minor=7000,
        average_check_minor_bronze=4000, average_check_minor_silver=10000,
        net_spend_minor=14000, average_net_spend_minor=7000,
        projected_clv_minor=21000,  # 7,000 a year x 3 years (1 / (1 - 2/3))
        points_issued=165, redemption_rate_bp=0,
        points_expired=220, breakage_points=220, points_retired=220, breakage_rate_bp=10000)
    assert list(years) == [2024, 2025]
    liability = [(row["expiry_month"], row["outstanding_points"], row["outstanding_value_minor"])
                 for row in report if row["kind"] == "liability"]
    assert liability == [("2025-02", 30, 90), ("2025-03", 800, 2400), ("2025-12", 10, 30),
                         ("2026-01", 125, 375), ("2026-02", 40, 120)]
    assert report_tiers(report) == list(TIERS)
    assert all(isinstance(value, int) for row in report for value in row.values()
               if not isinstance(value, (str, type(None))))


def test_an_annual_bonus_counts_in_the_year_it_rewards_not_the_year_end_jobs(ledger, pg_env):
    # D buys twelve times in 2024 (10 points each); the year-end job closes 2024 on 1 January 2025
    apply(ledger, *(b.purchase("D", f"2024-{month:02d}-15T10:00:00Z", 1000)
                    for month in range(1, 13)))
    apply(ledger, b.year_closed("D", "2025-01-01T00:00:00Z", 2024))
    with projected(ledger, pg_env, ["kpis"]) as models:
        report = kpi_report(models.view("kpis"), ledger.program)
    years = {row["year"]: row for row in report if row["kind"] == "year"}
    months = {row["month"]: row for row in report if row["kind"] == "month"}
    # The bonus (floor(120 x 5 / 100) = 6) is December 2024's: no 2025 row with points and no buyer
    assert list(years) == [2024]
    assert years[2024]["points_issued"] == 126 and years[2024]["active_members"] == 1
    assert months["2024-12"]["points_issued"] == 16
    assert [row["expiry_month"] for row in report if row["kind"] == "liability"][-1] == "2026-01"


def test_enrollments_cohorts_nps_and_forfeits(ledger, pg_env):
    apply(ledger,
          b.purchase("E", "2024-03-10T10:00:00Z", 5000),        # E's first event: March...
          m.enrolled("F", "2024-04-01T10:00:00Z"),              # F enrolls (opens the account)
          b.purchase("F", "2024-04-03T10:00:00Z", 2000),        # 20 points
          m.nps("F", "2024-04-05T10:00:00Z", 10),               # promoter
          m.nps("F", "2024-05-01T10:00:00Z", 3),                # detractor
          m.enrolled("E", "2024-05-02T10:00:00Z"),              # ...but E enrolls in May
          m.nps("E", "2024-05-03T10:00:00Z", 8),                # passive
          m.nps("E", "2024-05-04T10:00:00Z", 9),                # promoter (E answers twice)
          b.purchase("G", "2024-05-20T10:00:00Z", 1000),        # G never enrolls: from May
          m.erased("F", "2024-06-01T10:00:00Z"))                # F's 20 points forfeited
    with projected(ledger, pg_env, ["kpis"]) as models:
        report = kpi_report(models.view("kpis"), ledger.program)
    months = {row["month"]: row for row in report if row["kind"] == "month"}
    [year] = [row for row in report if row["kind"] == "year"]

    def picked(row: dict, *fields: str) -> tuple:
        return tuple(row[field] for field in fields)

    cohort = ("enrollments", "cohort_net_spend_minor", "historical_clv_minor")
    assert picked(months["2024-03"], *cohort) == (0, 0, None)
    assert picked(months["2024-04"], *cohort) == (1, 2000, 2000)
    assert picked(months["2024-05"], *cohort) == (2, 6000, 3000)
    assert picked(year, *cohort) == (3, 8000, 2666)
    nps = ("nps_responses", "nps_promoters", "nps_passives", "nps_detractors", "nps_score_bp")
    assert picked(months["2024-03"], *nps) == (0, 0, 0, 0, None)
    assert picked(months["2024-04"], *nps) == (1, 1, 0, 0, 10000)
    assert picked(months["2024-05"], *nps) == (3, 1, 1, 1, 0)
    assert picked(year, *nps) == (4, 2, 1, 1, 2500)
    breakage = ("points_forfeited", "breakage_points", "points_retired", "breakage_rate_bp")
    assert picked(months["2024-06"], *breakage) == (20, 20, 20, 10000)
    assert [(row["expiry_month"], row["outstanding_points"])
            for row in report if row["kind"] == "liability"] == [("2025-03", 50), ("2025-05", 10)]


@pytest.mark.parametrize(("scores", "expected"), [
    ((), (0, 0, 0, 0, None)),
    ((10, 9, 8, 7, 6, 0), (6, 2, 2, 2, 0)),
    ((0, 0, 9), (3, 1, 0, 2, -3334)),       # -1/3: floored, like every rate
    ((9, 10, 10, 7), (4, 3, 1, 0, 7500)),
])
def test_nps_bands_and_score(scores, expected):
    bands = [nps_band(score) for score in scores]
    figures = nps_figures(bands.count("promoters"), bands.count("passives"),
                          bands.count("detractors"))
    assert tuple(figures.values()) == expected


def test_the_cost_of_a_redemption_is_the_point_value_of_the_version_that_decided_it(pg_env):
    # Version 1 (a point costs 1) decides the first redemption; version 2 (a point costs 4)
    # the second; the liability is priced at the current version
    first = LoyaltyLedger(env=pg_env)
    first.record_program_version()
    apply(first, b.purchase("V", "2025-01-02T10:00:00Z", 60000),
          b.redemption("V", "2025-01-03T10:00:00Z", 100))
    first.close()
    second_text = first.program.source_text.replace(
        'name = "default"', 'name = "default"\nversion = 2\npoint_value_minor = 4')
    second = LoyaltyLedger(env=pg_env, program=parse_program(second_text))
    second.record_program_version()
    try:
        apply(second, b.redemption("V", "2025-02-03T10:00:00Z", 50))
        with projected(second, pg_env, ["kpis"]) as models:
            report = kpi_report(models.view("kpis"), second.program)
    finally:
        second.close()
    months = {row["month"]: row for row in report if row["kind"] == "month"}
    assert [months[m]["programme_cost_minor"] for m in ("2025-01", "2025-02")] == [100, 200]
    [liability] = [row for row in report if row["kind"] == "liability"]
    assert (liability["outstanding_points"], liability["outstanding_value_minor"]) == (450, 1800)


def test_campaign_points_are_the_sum_of_a_purchases_campaign_lines():
    lines = [{"campaign_id": "spring", "points": 30}, {"campaign_id": "coffee", "points": 5}]
    assert campaign_points(SimpleNamespace(points=135, campaigns=lines)) == 35
    assert campaign_points(SimpleNamespace(points=100, campaigns=[])) == 0
    assert campaign_points(SimpleNamespace(points=100)) == 0  # before section 12's lines
