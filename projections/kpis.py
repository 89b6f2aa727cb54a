"""The programme-KPI read model: counters per member-month, month and tier, and open lots.

The figures and which period each fact counts in are defined once, in
``projections.kpi_definitions``; ``projections.kpi_report`` reads these
tables into rows. Every table holds integers and ``YYYY-MM`` months (UTC):

- ``kpi_members``: each member's current tier (to attribute a purchase to the
  tier the member held when it was made: a purchase's ``points_earned``
  comes after its event's ``year_rollover`` change and before its ``spend``
  change), the month of their first event, the month they enrolled
  (``member_enrolled``, null until then) and their net spend to date;
- ``kpi_member_months``: purchases, redemptions, spend and refunds per member
  and month (active = at least one accepted purchase in the period);
- ``kpi_checks``: accepted purchases and their amount per month and tier
  (the average check is gross: refunds do not change it);
- ``kpi_points``: points issued (campaign points apart), reversed, redeemed,
  expired, forfeited, adjusted and transferred per month, and the money cost
  of the redemptions;
- ``kpi_nps``: NPS answers per month by band;
- ``kpi_open_lots``: unspent points of every open lot with its expiry month,
  the points liability (debt is not a liability and is not counted); pending
  lots count, and contract 2's adjustments and transfers move lots in and out.
  Section 7 (holds; its facts come with the holds work, these handlers wait
  for them): a hold draws its lots at once (held points are not in a lot), a
  capture counts as redeemed without drawing again, a release or a
  cancellation puts points back in their lots.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ledger.domain import LoyaltyAccount
from projections.base import ReadModelProjection, ReadModelRecorder, existing_row
from projections.kpi_definitions import BASIS_POINTS, nps_band
from projections.rows import Row, RowBatch, Table

__all__ = ["BASIS_POINTS", "KpisProjection", "KpisRecorder"]

CAMPAIGN_LINES_FIELD = "campaigns"  # of points_earned: [{"campaign_id", "points"}, ...]
KPI_MEMBERS = Table(
    name="kpi_members",
    columns=(("member_id", "text NOT NULL"), ("tier", "text NOT NULL"),
             ("first_month", "text NOT NULL"), ("enrolled_month", "text"),
             ("net_spend_minor", "bigint NOT NULL")),
    key=("member_id",),
)
KPI_MEMBER_MONTHS = Table(
    name="kpi_member_months",
    columns=(("member_id", "text NOT NULL"), ("month", "text NOT NULL"),
             ("purchases", "integer NOT NULL"), ("redemptions", "integer NOT NULL"),
             ("spend_minor", "bigint NOT NULL"), ("refunded_minor", "bigint NOT NULL")),
    key=("member_id", "month"),
)
KPI_CHECKS = Table(
    name="kpi_checks",
    columns=(("month", "text NOT NULL"), ("tier", "text NOT NULL"),
             ("purchases", "bigint NOT NULL"), ("amount_minor", "bigint NOT NULL")),
    key=("month", "tier"),
    member_scoped=False,
)
POINTS_COUNTERS = ("issued", "campaign_issued", "reversed", "redeemed", "expired", "forfeited",
                   "adjusted_in", "adjusted_out", "transferred_in", "transferred_out", "cost_minor")
KPI_POINTS = Table(
    name="kpi_points",
    columns=(("month", "text NOT NULL"),
             *((counter, "bigint NOT NULL") for counter in POINTS_COUNTERS)),
    key=("month",),
    member_scoped=False,
)
KPI_NPS = Table(
    name="kpi_nps",
    columns=(("month", "text NOT NULL"), ("promoters", "bigint NOT NULL"),
             ("passives", "bigint NOT NULL"), ("detractors", "bigint NOT NULL")),
    key=("month",),
    member_scoped=False,
)
KPI_OPEN_LOTS = Table(
    name="kpi_open_lots",
    columns=(("member_id", "text NOT NULL"), ("lot_id", "integer NOT NULL"),
             ("expires_month", "text NOT NULL"), ("remaining", "bigint NOT NULL")),
    key=("member_id", "lot_id"),
)


class KpisRecorder(ReadModelRecorder):
    tables = (KPI_MEMBERS, KPI_MEMBER_MONTHS, KPI_CHECKS, KPI_POINTS, KPI_NPS, KPI_OPEN_LOTS)


class KpisProjection(ReadModelProjection):
    name = "kpis"
    view_class = KpisRecorder

    def keys_read_ahead(self, facts: Sequence[Any]) -> dict[Table, set[tuple]]:
        """The counters of the facts' own months, read with the members' rows instead of one
        by one on first use: ``kpi_points``, ``kpi_checks`` of a purchase's month for every
        tier of its program, ``kpi_nps``. A month a handler finds elsewhere (a lot's expiry
        month, a referral's purchase) is still read on first use."""
        months = {(month_of(fact.occurred_at),) for fact in facts if hasattr(fact, "occurred_at")}
        purchases = [fact for fact in facts if isinstance(fact, LoyaltyAccount.PointsEarned)]
        checks = {(month_of(fact.occurred_at), tier.name)
                  for fact in purchases for tier in self.rules_of(fact).tiers}
        answers = {(month_of(fact.occurred_at),) for fact in facts
                   if isinstance(fact, LoyaltyAccount.NpsRecorded)}
        return {KPI_POINTS: months, KPI_CHECKS: checks, KPI_NPS: answers}

    # ----------------------------------------------------------- members

    def account_opened(self, fact: Any, rows: RowBatch) -> None:
        rows.put(KPI_MEMBERS, {"member_id": fact.member_id, "tier": fact.tier,
                               "first_month": month_of(fact.timestamp), "enrolled_month": None,
                               "net_spend_minor": 0})

    def member_enrolled(self, fact: Any, rows: RowBatch) -> None:
        member = existing_row(rows, KPI_MEMBERS, (fact.member_id,), fact)
        member["enrolled_month"] = month_of(fact.occurred_at)
        rows.put(KPI_MEMBERS, member)

    def tier_changed(self, fact: Any, rows: RowBatch) -> None:
        member = existing_row(rows, KPI_MEMBERS, (fact.member_id,), fact)
        member["tier"] = fact.to_tier
        rows.put(KPI_MEMBERS, member)

    def nps_recorded(self, fact: Any, rows: RowBatch) -> None:
        _counters(rows, KPI_NPS, (month_of(fact.occurred_at),))[nps_band(fact.score)] += 1

    # ------------------------------------------------------------ spend

    def points_earned(self, fact: Any, rows: RowBatch) -> None:
        month = month_of(fact.occurred_at)
        member = existing_row(rows, KPI_MEMBERS, (fact.member_id,), fact)
        member["net_spend_minor"] += fact.amount_minor
        rows.put(KPI_MEMBERS, member)
        member_month = _counters(rows, KPI_MEMBER_MONTHS, (fact.member_id, month))
        member_month["purchases"] += 1
        member_month["spend_minor"] += fact.amount_minor
        checks = _counters(rows, KPI_CHECKS, (month, member["tier"]))
        checks["purchases"] += 1
        checks["amount_minor"] += fact.amount_minor
        _counters(rows, KPI_POINTS, (month,))["campaign_issued"] += campaign_points(fact)
        self._award(fact, rows, month)

    def points_reversed(self, fact: Any, rows: RowBatch) -> None:
        month = month_of(fact.occurred_at)
        _counters(rows, KPI_POINTS, (month,))["reversed"] += fact.points
        member = existing_row(rows, KPI_MEMBERS, (fact.member_id,), fact)
        member["net_spend_minor"] -= fact.amount_minor
        rows.put(KPI_MEMBERS, member)
        _counters(rows, KPI_MEMBER_MONTHS, (fact.member_id, month))["refunded_minor"] += fact.amount_minor
        _draw(rows, fact.member_id, fact.draws)

    # ------------------------------------------------------------ points

    def points_redeemed(self, fact: Any, rows: RowBatch) -> None:
        month = month_of(fact.occurred_at)
        points = _counters(rows, KPI_POINTS, (month,))
        points["redeemed"] += fact.points
        points["cost_minor"] += fact.points * self.rules_of(fact).point_value_minor
        _counters(rows, KPI_MEMBER_MONTHS, (fact.member_id, month))["redemptions"] += 1
        if getattr(fact, "hold_event_id", None) is None:  # a capture's points left with the hold
            _draw(rows, fact.member_id, fact.draws)

    def points_held(self, fact: Any, rows: RowBatch) -> None:
        """Section 7: a hold draws its lots at once (held points are in no lot)."""
        _draw(rows, fact.member_id, [[part["lot_id"], part["points"]] for part in fact.parts])

    def hold_released(self, fact: Any, rows: RowBatch) -> None:
        """Points back in their lots (a lot drawn empty opens again); the part already past
        expiry counts as expired in the period of the event that brought it back."""
        _counters(rows, KPI_POINTS, (month_of(fact.occurred_at),))["expired"] += fact.expired
        for part in fact.returns:
            lot = rows.get(KPI_OPEN_LOTS, (fact.member_id, part["lot_id"]))
            if lot is None:
                _open_lot(rows, fact.member_id, part)
            else:
                lot["remaining"] += part["points"]
                rows.put(KPI_OPEN_LOTS, lot)

    redemption_cancelled = hold_released  # the same rule for points that come back

    def points_expired(self, fact: Any, rows: RowBatch) -> None:
        for expiry_month, points in _draw(rows, fact.member_id, fact.lots).items():
            _counters(rows, KPI_POINTS, (expiry_month,))["expired"] += points

    def points_forfeited(self, fact: Any, rows: RowBatch) -> None:
        _counters(rows, KPI_POINTS, (month_of(fact.timestamp),))["forfeited"] += fact.points
        _draw(rows, fact.member_id, fact.lots)

    def points_activated(self, fact: Any, rows: RowBatch) -> None:
        _draw(rows, fact.member_id, [[lot_id, paid] for lot_id, _, paid in fact.lots if paid])

    def points_adjusted(self, fact: Any, rows: RowBatch) -> None:
        direction = "adjusted_in" if fact.points > 0 else "adjusted_out"
        _counters(rows, KPI_POINTS, (month_of(fact.occurred_at),))[direction] += abs(fact.points)
        if fact.lot is not None:
            _open_lot(rows, fact.member_id, fact.lot)
        _draw(rows, fact.member_id, fact.draws)

    def points_transferred_out(self, fact: Any, rows: RowBatch) -> None:
        _counters(rows, KPI_POINTS, (month_of(fact.occurred_at),))["transferred_out"] += fact.points
        _draw(rows, fact.member_id, [[lot["lot_id"], lot["points"]] for lot in fact.lots])

    def points_transferred_in(self, fact: Any, rows: RowBatch) -> None:
        points = _counters(rows, KPI_POINTS, (month_of(fact.occurred_at),))
        points["transferred_in"] += fact.points
        points["expired"] += fact.expired
        for lot in fact.lots:
            _open_lot(rows, fact.member_id, lot)

    # ------------------------------------------------------------ awards

    def birthday_rewarded(self, fact: Any, rows: RowBatch) -> None:
        self._award(fact, rows, month_of(fact.occurred_at))

    referrer_credited = birthday_rewarded  # its occurred_at is the qualifying purchase's

    def referral_qualified(self, fact: Any, rows: RowBatch) -> None:
        self._award(fact, rows, month_of(fact.qualifying_occurred_at))

    def annual_incentive_awarded(self, fact: Any, rows: RowBatch) -> None:
        self._award(fact, rows, "%04d-12" % fact.year)  # the year it rewards

    def _award(self, fact: Any, rows: RowBatch, month: str) -> None:
        _counters(rows, KPI_POINTS, (month,))["issued"] += fact.points
        if fact.lot is not None:
            _open_lot(rows, fact.member_id, fact.lot)


def campaign_points(fact: Any) -> int:
    """The campaign part of a purchase's points: the sum of the ``points`` of its
    ``CAMPAIGN_LINES_FIELD`` lines (contract section 12; the campaigns branch names it
    ``campaigns``), 0 while ``points_earned`` has no such field."""
    return sum(line["points"] for line in getattr(fact, CAMPAIGN_LINES_FIELD, None) or ())


def month_of(moment: datetime) -> str:
    """``YYYY-MM`` of a UTC moment (``strftime`` costs five times as much)."""
    return "%04d-%02d" % (moment.year, moment.month)


def _open_lot(rows: RowBatch, member_id: str, lot: dict) -> None:
    rows.put(KPI_OPEN_LOTS, {"member_id": member_id, "lot_id": lot["lot_id"],
                             "expires_month": month_of(lot["expires_at"]),
                             "remaining": lot["points"]})


def _counters(rows: RowBatch, table: Table, key: tuple) -> Row:
    """The row with ``key``, created with zero counters when missing, for the caller to add to
    (it is marked changed)."""
    row = rows.get(table, key)
    if row is None:
        row = dict(zip(table.key, key)) | dict.fromkeys(table.column_names[len(key):], 0)
    rows.put(table, row)
    return row


def _draw(rows: RowBatch, member_id: str, draws: list[list[int]]) -> dict[str, int]:
    """Take ``[[lot_id, points], ...]`` from the member's open lots (empty lots go); the points
    taken per expiry month."""
    taken_by_month: dict[str, int] = {}
    for lot_id, taken in draws:
        lot: Row = existing_row(rows, KPI_OPEN_LOTS, (member_id, lot_id), draws)
        lot["remaining"] -= taken
        month = lot["expires_month"]
        taken_by_month[month] = taken_by_month.get(month, 0) + taken
        if lot["remaining"] == 0:
            rows.delete(KPI_OPEN_LOTS, (member_id, lot_id))
        else:
            rows.put(KPI_OPEN_LOTS, lot)
    return taken_by_month
