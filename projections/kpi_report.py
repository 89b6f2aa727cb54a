"""Programme KPIs from the ``kpis`` read model: one row per month, per year and per expiry month.

``kpi_report`` reads the tables of ``projections.kpis`` with a few grouped
queries and turns the totals into rows with ``projections.kpi_definitions``
(where every figure is defined). Rows, all flat (one key per figure):

- ``kind`` = ``month`` (``month`` = ``YYYY-MM``) and ``kind`` = ``year``
  (``month`` null): every period from the first to the last with any
  figure, none skipped (a month nobody bought in still shows who churned);
  months first, then years, each ascending;
- ``kind`` = ``liability``: open points by ``expiry_month``, in points and
  in money at the current program's ``point_value_minor``.

``kpi_fields(tiers)`` is the column list (an average check per tier: the
program's tiers, then any other tier purchases were made in), the same for
JSON and CSV. ``select_rows`` picks what ``loyalty kpis`` shows (a year, a
month), ``monthly_rows`` what its charts draw.
"""

from __future__ import annotations

from typing import Any

from psycopg import Cursor
from psycopg.sql import SQL, Composed, Identifier

from ledger.program import Program
from projections.kpi_definitions import (check_figures, liability_figures, member_figures,
                                         nps_figures, points_figures, value_figures)
from projections.kpis import POINTS_COUNTERS, KpisRecorder

MONTH, YEAR = "month", "year"
# The period key of a row's month column, and of the period before a key (constants, no input).
PERIOD_KEY = {MONTH: SQL("month"), YEAR: SQL("left(month, 4)")}
COHORT_KEY = {MONTH: SQL("coalesce(enrolled_month, first_month)"),
              YEAR: SQL("left(coalesce(enrolled_month, first_month), 4)")}
PREVIOUS_KEY = {MONTH: SQL("to_char(to_date(cur.period, 'YYYY-MM') - interval '1 month', 'YYYY-MM')"),
                YEAR: SQL("(cur.period::integer - 1)::text")}

ACTIVITY = """
SELECT period, count(*) FILTER (WHERE purchases >= 1) AS active_members,
       count(*) FILTER (WHERE purchases >= 2) AS repeat_purchasers,
       count(*) FILTER (WHERE redemptions >= 1) AS redeeming_members,
       sum(spend_minor)::bigint AS spend_minor, sum(refunded_minor)::bigint AS refunded_minor
FROM (SELECT member_id, {period} AS period, sum(purchases) AS purchases,
             sum(redemptions) AS redemptions, sum(spend_minor) AS spend_minor,
             sum(refunded_minor) AS refunded_minor
      FROM {schema}.kpi_member_months GROUP BY 1, 2) per GROUP BY period
"""
RETAINED = """
WITH active AS (SELECT DISTINCT member_id, {period} AS period
                FROM {schema}.kpi_member_months WHERE purchases >= 1)
SELECT cur.period, count(*) AS retained_members
FROM active cur JOIN active prev ON prev.member_id = cur.member_id AND prev.period = {previous}
GROUP BY cur.period
"""
COHORTS = """
SELECT {cohort} AS period, count(*) AS enrollments,
       sum(net_spend_minor)::bigint AS cohort_net_spend_minor
FROM {schema}.kpi_members GROUP BY 1
"""
CHECKS = """
SELECT {period} AS period, tier, sum(purchases)::bigint AS purchases,
       sum(amount_minor)::bigint AS amount_minor
FROM {schema}.kpi_checks GROUP BY 1, 2
"""
POINTS = "SELECT {period} AS period, {sums} FROM {schema}.kpi_points GROUP BY 1"
NPS = """
SELECT {period} AS period, sum(promoters)::bigint AS promoters, sum(passives)::bigint AS passives,
       sum(detractors)::bigint AS detractors
FROM {schema}.kpi_nps GROUP BY 1
"""
LIABILITY = """
SELECT expires_month, sum(remaining)::bigint AS outstanding_points
FROM {schema}.kpi_open_lots GROUP BY expires_month ORDER BY expires_month
"""
PERIOD_QUERIES = {"activity": ACTIVITY, "retained": RETAINED, "cohorts": COHORTS,
                  "checks": CHECKS, "points": POINTS, "nps": NPS}
HEAD_FIELDS = ("kind", "year", "month")
MEMBER_FIELDS = ("enrollments", "active_members", "previous_active_members", "retained_members",
                 "retention_rate_bp", "churned_members", "churn_rate_bp", "repeat_purchasers",
                 "repeat_purchase_rate_bp", "redeeming_members")
CHECK_FIELDS = ("purchases", "purchase_amount_minor", "average_check_minor")
VALUE_FIELDS = ("refunded_minor", "net_spend_minor", "average_net_spend_minor",
                "projected_clv_minor", "cohort_net_spend_minor", "historical_clv_minor")
NPS_FIELDS = ("nps_responses", "nps_promoters", "nps_passives", "nps_detractors", "nps_score_bp")
POINTS_FIELDS = ("points_issued", "campaign_points_issued", "points_reversed", "points_redeemed",
                 "points_expired", "points_forfeited", "points_adjusted_in", "points_adjusted_out",
                 "points_transferred_in", "points_transferred_out", "redemption_rate_bp",
                 "breakage_points", "points_retired", "breakage_rate_bp", "programme_cost_minor")
LIABILITY_FIELDS = ("expiry_month", "outstanding_points", "outstanding_value_minor")


def kpi_fields(tiers: list[str]) -> tuple[str, ...]:
    """Every column of a KPI row, in order, with an average check per tier of ``tiers``."""
    per_tier = tuple(f"average_check_minor_{tier}" for tier in tiers)
    return (HEAD_FIELDS + MEMBER_FIELDS + CHECK_FIELDS + per_tier + VALUE_FIELDS + NPS_FIELDS
            + POINTS_FIELDS + LIABILITY_FIELDS)


def report_tiers(report: list[dict[str, Any]]) -> list[str]:
    """The tiers whose average check the rows of ``report`` show, in column order."""
    prefix = "average_check_minor_"
    first = next((row for row in report if row["kind"] != "liability"), {})
    return [key[len(prefix):] for key in first if key.startswith(prefix)]


def kpi_report(view: KpisRecorder, program: Program) -> list[dict[str, Any]]:
    """Month rows, year rows (each ascending, no period skipped), then liability rows."""
    with view.datastore.transaction(commit=False) as cursor:
        by_granularity = {granularity: _fetch_periods(cursor, view.schema, granularity)
                          for granularity in (MONTH, YEAR)}
        liability = cursor.execute(_query(LIABILITY, view.schema)).fetchall()
    tiers = _tiers(program, by_granularity[MONTH]["checks"])
    rows = [_period_row(granularity, period, fetched, tiers)
            for granularity, fetched in by_granularity.items()
            for period in _periods(granularity, fetched)]
    return rows + [liability_figures(row["expires_month"], row["outstanding_points"],
                                     program.point_value_minor) for row in liability]


def _tiers(program: Program, checks: dict[str, list]) -> list[str]:
    """The program's tiers, then any other tier purchases were made in (an older version's)."""
    names = [tier.name for tier in program.tiers]
    seen = {row["tier"] for rows in checks.values() for row in rows}
    return names + sorted(seen - set(names))


def _query(text: str, schema: str, granularity: str = MONTH) -> Composed:
    sums = SQL(", ").join(SQL("sum({0})::bigint AS {0}").format(Identifier(counter))
                          for counter in POINTS_COUNTERS)
    return SQL(text).format(schema=Identifier(schema), period=PERIOD_KEY[granularity],
                            previous=PREVIOUS_KEY[granularity], cohort=COHORT_KEY[granularity],
                            sums=sums)


def _fetch_periods(cursor: Cursor, schema: str, granularity: str) -> dict[str, dict[str, list]]:
    """Each query's rows by period key."""
    fetched: dict[str, dict[str, list]] = {}
    for name, text in PERIOD_QUERIES.items():
        by_period: dict[str, list] = {}
        for row in cursor.execute(_query(text, schema, granularity)).fetchall():
            by_period.setdefault(row["period"], []).append(row)
        fetched[name] = by_period
    return fetched


def _periods(granularity: str, fetched: dict[str, dict[str, list]]) -> list[str]:
    """Every period from the first to the last that has any figure."""
    keys = {period for by_period in fetched.values() for period in by_period}
    if not keys:
        return []
    first, last = min(keys), max(keys)
    if granularity == YEAR:
        return [str(year) for year in range(int(first), int(last) + 1)]
    return _months(first, last)


def _months(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    months = []
    while (key := "%04d-%02d" % (year, month)) <= last:
        months.append(key)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _previous(granularity: str, period: str) -> str:
    if granularity == YEAR:
        return str(int(period) - 1)
    year, month = int(period[:4]), int(period[5:])
    return "%04d-%02d" % ((year - 1, 12) if month == 1 else (year, month - 1))


def _one(fetched: dict[str, dict[str, list]], name: str, period: str, **defaults: int) -> dict:
    found = fetched[name].get(period)
    return found[0] if found else defaults


def _period_row(granularity: str, period: str, fetched: dict[str, dict[str, list]],
                tiers: list[str]) -> dict[str, Any]:
    activity = _one(fetched, "activity", period, active_members=0, repeat_purchasers=0,
                    redeeming_members=0, spend_minor=0, refunded_minor=0)
    previous = _one(fetched, "activity", _previous(granularity, period), active_members=0)
    retained = _one(fetched, "retained", period, retained_members=0)["retained_members"]
    cohort = _one(fetched, "cohorts", period, enrollments=0, cohort_net_spend_minor=0)
    checks = {row["tier"]: (row["purchases"], row["amount_minor"])
              for row in fetched["checks"].get(period, [])}
    points = _one(fetched, "points", period, **dict.fromkeys(POINTS_COUNTERS, 0))
    nps = _one(fetched, "nps", period, promoters=0, passives=0, detractors=0)
    head = {"kind": granularity, "year": int(period[:4]),
            "month": period if granularity == MONTH else None}
    return {**head,
            **member_figures(activity, previous["active_members"], retained),
            **check_figures(checks, tiers),
            **value_figures(activity, activity["active_members"], previous["active_members"],
                            retained, cohort),
            **nps_figures(nps["promoters"], nps["passives"], nps["detractors"]),
            **points_figures(points)}


def select_rows(report: list[dict[str, Any]], year: int | None = None,
                month: str | None = None) -> list[dict[str, Any]]:
    """The rows ``loyalty kpis`` shows: ``month`` (``YYYY-MM``): that month's row; ``year``: its
    months and its year row; neither: the year rows. Liability rows (the points owed now) always."""
    liability = [row for row in report if row["kind"] == "liability"]
    if month is not None:
        chosen = [row for row in report if row["kind"] == MONTH and row["month"] == month]
    elif year is not None:
        chosen = [row for row in report if row["kind"] in (MONTH, YEAR) and row["year"] == year]
    else:
        chosen = [row for row in report if row["kind"] == YEAR]
    return chosen + liability


def monthly_rows(report: list[dict[str, Any]], year: int | None = None) -> list[dict[str, Any]]:
    """The month rows (of ``year`` if given) and the liability rows: what the charts draw."""
    return [row for row in report if row["kind"] == "liability"
            or (row["kind"] == MONTH and year in (None, row["year"]))]
