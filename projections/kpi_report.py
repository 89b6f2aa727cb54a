"""Programme KPIs from the ``kpis`` read model: integers only.

One row per year (``kind`` = ``year``) and one per expiry month of open
points (``kind`` = ``liability``). Definitions:

- active members: members with at least one accepted purchase in the year;
- repeat-purchase rate: members with two or more purchases / active members;
- average check: purchase amount / purchases (gross, floor, minor units),
  overall and per tier held at the time of purchase;
- redemption rate: points redeemed / points earned in the year (booking year);
  ``redeeming_members`` counts members with at least one redemption;
- retention: members active in the year before and in this year / members
  active in the year before;
- liability: unspent points of open lots by the month they expire.

Every rate is ``*_bp`` (basis points, floor; null when the denominator is 0)
with its numerator and denominator in the same row.
"""

from __future__ import annotations

from typing import Any

from psycopg.sql import SQL, Identifier

from projections.kpis import BASIS_POINTS, KpisRecorder

YEAR_ACTIVITY = """
SELECT year,
       count(*) FILTER (WHERE purchases >= 1) AS active_members,
       count(*) FILTER (WHERE purchases >= 2) AS repeat_purchasers,
       count(*) FILTER (WHERE redemptions >= 1) AS redeeming_members
FROM {schema}.kpi_member_years GROUP BY year
"""
RETAINED = """
SELECT cur.year, count(*) AS retained_members
FROM {schema}.kpi_member_years cur
JOIN {schema}.kpi_member_years prev ON prev.member_id = cur.member_id AND prev.year = cur.year - 1
WHERE cur.purchases >= 1 AND prev.purchases >= 1
GROUP BY cur.year
"""
CHECKS = "SELECT year, tier, purchases, amount_minor FROM {schema}.kpi_checks ORDER BY year, tier"
POINTS = "SELECT year, earned, reversed, redeemed, expired FROM {schema}.kpi_points ORDER BY year"
LIABILITY = """
SELECT expires_month, sum(remaining)::bigint AS outstanding_points
FROM {schema}.kpi_open_lots GROUP BY expires_month ORDER BY expires_month
"""
KPI_FIELDS = (
    "kind", "year", "active_members", "repeat_purchasers", "repeat_purchase_rate_bp",
    "purchases", "purchase_amount_minor", "average_check_minor", "average_check_by_tier_minor",
    "points_earned", "points_reversed", "points_redeemed", "points_expired",
    "redemption_rate_bp", "redeeming_members", "previous_year_active_members",
    "retained_members", "retention_rate_bp", "expiry_month", "outstanding_points",
)


def basis_points(numerator: int, denominator: int) -> int | None:
    """floor(numerator / denominator * 10 000), None when there is no denominator."""
    return numerator * BASIS_POINTS // denominator if denominator else None


def kpi_report(view: KpisRecorder) -> list[dict[str, Any]]:
    """The year rows (ascending) then the liability rows (by expiry month)."""
    with view.datastore.transaction(commit=False) as cursor:
        schema = Identifier(view.schema)
        fetched = {name: cursor.execute(SQL(query).format(schema=schema)).fetchall()
                   for name, query in
                   (("activity", YEAR_ACTIVITY), ("retained", RETAINED), ("checks", CHECKS),
                    ("points", POINTS), ("liability", LIABILITY))}
    years = sorted({row["year"] for name in ("activity", "checks", "points")
                    for row in fetched[name]})
    liability = [{"kind": "liability", "expiry_month": row["expires_month"],
                  "outstanding_points": row["outstanding_points"]} for row in fetched["liability"]]
    return [_year_row(year, fetched) for year in years] + liability


def _year_row(year: int, fetched: dict[str, list[dict]]) -> dict[str, Any]:
    activity = _one(fetched["activity"], year, active_members=0, repeat_purchasers=0,
                    redeeming_members=0)
    before = _one(fetched["activity"], year - 1, active_members=0)
    retained = _one(fetched["retained"], year, retained_members=0)["retained_members"]
    points = _one(fetched["points"], year, earned=0, reversed=0, redeemed=0, expired=0)
    return {
        "kind": "year", "year": year,
        "active_members": activity["active_members"],
        "repeat_purchasers": activity["repeat_purchasers"],
        "repeat_purchase_rate_bp": basis_points(activity["repeat_purchasers"],
                                                activity["active_members"]),
        **_checks(year, fetched["checks"]),
        "points_earned": points["earned"], "points_reversed": points["reversed"],
        "points_redeemed": points["redeemed"], "points_expired": points["expired"],
        "redemption_rate_bp": basis_points(points["redeemed"], points["earned"]),
        "redeeming_members": activity["redeeming_members"],
        "previous_year_active_members": before["active_members"],
        "retained_members": retained,
        "retention_rate_bp": basis_points(retained, before["active_members"]),
    }


def _one(rows: list[dict], year: int, **defaults: int) -> dict[str, Any]:
    return next((row for row in rows if row["year"] == year), defaults)


def _checks(year: int, checks: list[dict]) -> dict[str, Any]:
    of_year = [row for row in checks if row["year"] == year]
    purchases = sum(row["purchases"] for row in of_year)
    amount = sum(row["amount_minor"] for row in of_year)
    return {
        "purchases": purchases,
        "purchase_amount_minor": amount,
        "average_check_minor": amount // purchases if purchases else None,
        "average_check_by_tier_minor": {row["tier"]: row["amount_minor"] // row["purchases"]
                                        for row in of_year if row["purchases"]},
    }
