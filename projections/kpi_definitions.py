"""The programme KPIs' definitions: pure functions from a period's totals to its figures.

Every figure is an integer. A rate is basis points (``*_bp``, 10 000 = 100 %,
floor) with its numerator and denominator in the same row, null when the
denominator is 0; money is minor units, floored. A period is a UTC calendar
month (``YYYY-MM``) or year.

Which period a fact counts in (one rule, applied by every handler of
``projections.kpis``): the period of the event time of what it records,
never the account clock. That is the ``occurred_at`` of the inbound event
for everything an event does (a late event counts in its own period), and,
for the facts recorded beside it that carry no ``occurred_at`` of their own:
the lot's expiry time for expired points (when they stopped being
spendable), the qualifying purchase's time for a referral bonus, the year
it rewards for the annual incentive (its December: the year-end job dates
its ``year_closed`` 1 January of the next year, which used to book a year of
bonuses in a year with no purchases), and the clock of the erasure for
forfeited points. Points that arrive or come back already past expiry (a
transfer credit, a released hold, a cancelled redemption) count as expired
in the period of the event that brought them (the fact does not name their
lots).

The definitions, each with the programme owner's question it answers:

- ``enrollments`` - "how many members joined this month?": members whose
  enrollment time (``member_enrolled``'s ``occurred_at``; a member who never
  enrolled counts from their first event) falls in the period.
- ``active_members`` - members with at least one accepted purchase in the
  period.
- ``churned_members`` - "how many left?": members active in the previous
  period and not in this one; ``churn_rate_bp`` = churned / previous active.
- ``retention_rate_bp`` - "how many came back?": ``retained_members``
  (active in the previous period and in this one) / previous active.
- ``repeat_purchase_rate_bp`` - "how often do they buy again?": members with
  two or more purchases in the period / active members.
- ``average_check_minor`` - "how does the average check move, for members
  and per tier?": purchase amount / purchases in the period (gross: refunds
  do not change it), overall and per tier held at the time of purchase
  (``average_check_minor_<tier>``).
- ``net_spend_minor`` - purchases minus refunds, each in its own period.
- ``historical_clv_minor`` - "what is a member worth?", looking back: the
  net spend to date of the members enrolled in the period (its cohort),
  per member: ``cohort_net_spend_minor`` / ``enrollments``.
- ``projected_clv_minor`` - the same, looking ahead: average net spend per
  active member in the period x expected lifetime in periods, where the
  lifetime is 1 / (1 - retention) = previous active / churned, so
  ``floor(net_spend x previous_active / (active x churned))``; null when
  nobody churned (an unbounded lifetime) or nobody was active. On a year
  row it is the seeds' LTV: yearly spend x years a member stays.
- ``nps_score_bp`` - "how loyal do they say they are?" (Reichheld's "would
  you recommend us", 0..10): (promoters (9-10) - detractors (0-6)) /
  responses, every answer counted (a member answering twice counts twice);
  -10 000..10 000 basis points (NPS x 100); passives are 7-8.
- points issued (every award that counts in ``lifetime_earned``: purchases,
  birthdays, referrals, annual bonuses), of which ``campaign_points_issued``
  (the campaign lines of purchases, contract section 12), reversed,
  redeemed, expired, forfeited, adjusted in and out, transferred in and out.
- ``redemption_rate_bp`` - points redeemed / points issued in the period.
- ``breakage_rate_bp`` - "what does the programme never pay?": of the points
  that left members' balances in the period for good (``points_retired``:
  redeemed, expired or forfeited), the share that was never redeemed
  (``breakage_points``: expired + forfeited).
- ``programme_cost_minor`` - "what does the programme cost?": points
  redeemed x ``point_value_minor`` of the program version that decided each
  redemption (the cost of one point when redeemed, minor units).
- liability (rows of their own) - "what does it owe?": unspent points of
  open lots (pending ones included; held points, section 7, and debt are not) by the month
  they expire, in points and in money (x the current program's
  ``point_value_minor``).
"""

from __future__ import annotations

from typing import Any

BASIS_POINTS = 10_000
NPS_PROMOTER_MIN = 9   # 9 and 10 promote
NPS_PASSIVE_MIN = 7    # 7 and 8 are passive; 0 to 6 detract


def basis_points(numerator: int, denominator: int) -> int | None:
    """floor(numerator / denominator * 10 000), None when there is no denominator."""
    return numerator * BASIS_POINTS // denominator if denominator else None


def floor_average(total: int, count: int) -> int | None:
    """floor(total / count) in the unit of ``total``, None for no count."""
    return total // count if count else None


def nps_band(score: int) -> str:
    """``promoters``, ``passives`` or ``detractors``: the column an answer of ``score`` counts in."""
    if score >= NPS_PROMOTER_MIN:
        return "promoters"
    return "passives" if score >= NPS_PASSIVE_MIN else "detractors"


def nps_figures(promoters: int, passives: int, detractors: int) -> dict[str, Any]:
    """The NPS columns of a period from its answers' bands."""
    responses = promoters + passives + detractors
    return {"nps_responses": responses, "nps_promoters": promoters, "nps_passives": passives,
            "nps_detractors": detractors,
            "nps_score_bp": basis_points(promoters - detractors, responses)}


def member_figures(activity: dict[str, int], previous_active: int, retained: int) -> dict[str, Any]:
    """Active, retained, churned and repeat members of a period (``activity``: its totals)."""
    active, repeat = activity["active_members"], activity["repeat_purchasers"]
    churned = previous_active - retained
    return {
        "active_members": active, "previous_active_members": previous_active,
        "retained_members": retained, "retention_rate_bp": basis_points(retained, previous_active),
        "churned_members": churned, "churn_rate_bp": basis_points(churned, previous_active),
        "repeat_purchasers": repeat, "repeat_purchase_rate_bp": basis_points(repeat, active),
        "redeeming_members": activity["redeeming_members"],
    }


def check_figures(purchases_by_tier: dict[str, tuple[int, int]], tiers: list[str]) -> dict[str, Any]:
    """Purchases, amount and average check of a period, overall and per tier in ``tiers``
    (``purchases_by_tier``: tier -> (purchases, amount_minor))."""
    purchases = sum(count for count, _ in purchases_by_tier.values())
    amount = sum(total for _, total in purchases_by_tier.values())
    per_tier = {}
    for tier in tiers:
        count, total = purchases_by_tier.get(tier, (0, 0))
        per_tier[f"average_check_minor_{tier}"] = floor_average(total, count)
    return {"purchases": purchases, "purchase_amount_minor": amount,
            "average_check_minor": floor_average(amount, purchases), **per_tier}


def value_figures(spend: dict[str, int], active: int, previous_active: int, retained: int,
                  cohort: dict[str, int]) -> dict[str, Any]:
    """Net spend, its average, projected CLV and the period's cohort's historical CLV."""
    net = spend["spend_minor"] - spend["refunded_minor"]
    churned = previous_active - retained
    projected = (net * previous_active // (active * churned)) if active and churned else None
    return {
        "refunded_minor": spend["refunded_minor"], "net_spend_minor": net,
        "average_net_spend_minor": floor_average(net, active),
        "projected_clv_minor": projected,
        "enrollments": cohort["enrollments"],
        "cohort_net_spend_minor": cohort["cohort_net_spend_minor"],
        "historical_clv_minor": floor_average(cohort["cohort_net_spend_minor"], cohort["enrollments"]),
    }


def points_figures(points: dict[str, int]) -> dict[str, Any]:
    """Points moved in a period, redemption rate, breakage and programme cost."""
    breakage = points["expired"] + points["forfeited"]
    retired = breakage + points["redeemed"]
    return {
        "points_issued": points["issued"], "campaign_points_issued": points["campaign_issued"],
        "points_reversed": points["reversed"], "points_redeemed": points["redeemed"],
        "points_expired": points["expired"], "points_forfeited": points["forfeited"],
        "points_adjusted_in": points["adjusted_in"], "points_adjusted_out": points["adjusted_out"],
        "points_transferred_in": points["transferred_in"],
        "points_transferred_out": points["transferred_out"],
        "redemption_rate_bp": basis_points(points["redeemed"], points["issued"]),
        "breakage_points": breakage, "points_retired": retired,
        "breakage_rate_bp": basis_points(breakage, retired),
        "programme_cost_minor": points["cost_minor"],
    }


def liability_figures(expiry_month: str, outstanding_points: int, point_value_minor: int) -> dict:
    """One liability row: open points expiring in ``expiry_month``, and their value."""
    return {"kind": "liability", "expiry_month": expiry_month,
            "outstanding_points": outstanding_points,
            "outstanding_value_minor": outstanding_points * point_value_minor}
