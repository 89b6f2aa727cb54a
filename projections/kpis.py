"""The programme-KPI read model: counters per member-year, year and tier, and open lots.

Tables (all integers; rates are computed on read as basis points with the
numerator and denominator alongside, averages as floor division in minor
units):

- ``kpi_members``: each member's current tier, to attribute a purchase to the
  tier the member held when it was made (a purchase's ``points_earned`` comes
  after its event's ``year_rollover`` change and before its ``spend`` change,
  so the tier at that moment is the one whose multiplier applied);
- ``kpi_member_years``: purchases and redemptions per member and year of
  ``occurred_at`` (active = at least one accepted purchase in the year);
- ``kpi_checks``: accepted purchases and their amount per year and tier
  (the average check is gross: refunds do not change it);
- ``kpi_points``: points earned, reversed, redeemed and expired per year of
  the account clock when the fact was recorded (its booking year);
- ``kpi_open_lots``: unspent points of every open lot with its expiry month,
  the points liability (debt is not a liability and is not counted); pending
  lots count, and contract 2's adjustments and transfers move lots in and out
  (they are not ``earned`` and add no ``kpi_points`` counter). Section 7: a
  hold draws its lots at once (held points are not in a lot), a capture
  counts as redeemed without drawing again, a release or a cancellation puts
  points back in their lots (their past-expiry part counts as expired).

``kpi_report`` turns them into one row per year and one per expiry month.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.base import ReadModelProjection, ReadModelRecorder, existing_row, utc_year
from projections.rows import Row, RowBatch, Table

BASIS_POINTS = 10_000

KPI_MEMBERS = Table(
    name="kpi_members",
    columns=(("member_id", "text NOT NULL"), ("tier", "text NOT NULL")),
    key=("member_id",),
)
KPI_MEMBER_YEARS = Table(
    name="kpi_member_years",
    columns=(("member_id", "text NOT NULL"), ("year", "integer NOT NULL"),
             ("purchases", "integer NOT NULL"), ("redemptions", "integer NOT NULL")),
    key=("member_id", "year"),
)
KPI_CHECKS = Table(
    name="kpi_checks",
    columns=(("year", "integer NOT NULL"), ("tier", "text NOT NULL"),
             ("purchases", "bigint NOT NULL"), ("amount_minor", "bigint NOT NULL")),
    key=("year", "tier"),
    member_scoped=False,
)
KPI_POINTS = Table(
    name="kpi_points",
    columns=(("year", "integer NOT NULL"), ("earned", "bigint NOT NULL"),
             ("reversed", "bigint NOT NULL"), ("redeemed", "bigint NOT NULL"),
             ("expired", "bigint NOT NULL")),
    key=("year",),
    member_scoped=False,
)
KPI_OPEN_LOTS = Table(
    name="kpi_open_lots",
    columns=(("member_id", "text NOT NULL"), ("lot_id", "integer NOT NULL"),
             ("expires_month", "text NOT NULL"), ("remaining", "bigint NOT NULL")),
    key=("member_id", "lot_id"),
)


class KpisRecorder(ReadModelRecorder):
    tables = (KPI_MEMBERS, KPI_MEMBER_YEARS, KPI_CHECKS, KPI_POINTS, KPI_OPEN_LOTS)


class KpisProjection(ReadModelProjection):
    name = "kpis"
    view_class = KpisRecorder

    # ----------------------------------------------------------- handlers

    def account_opened(self, fact: Any, rows: RowBatch) -> None:
        rows.put(KPI_MEMBERS, {"member_id": fact.member_id, "tier": fact.tier})

    def tier_changed(self, fact: Any, rows: RowBatch) -> None:
        member = existing_row(rows, KPI_MEMBERS, (fact.member_id,), fact)
        member["tier"] = fact.to_tier
        rows.put(KPI_MEMBERS, member)

    def points_earned(self, fact: Any, rows: RowBatch) -> None:
        tier = existing_row(rows, KPI_MEMBERS, (fact.member_id,), fact)["tier"]
        _counters(rows, KPI_MEMBER_YEARS, (fact.member_id, fact.year))["purchases"] += 1
        checks = _counters(rows, KPI_CHECKS, (fact.year, tier))
        checks["purchases"] += 1
        checks["amount_minor"] += fact.amount_minor
        self._award(fact, rows)

    def points_reversed(self, fact: Any, rows: RowBatch) -> None:
        _points(rows, fact)["reversed"] += fact.points
        _draw(rows, fact.member_id, fact.draws)

    def points_redeemed(self, fact: Any, rows: RowBatch) -> None:
        _points(rows, fact)["redeemed"] += fact.points
        member_year = (fact.member_id, utc_year(fact.occurred_at))
        _counters(rows, KPI_MEMBER_YEARS, member_year)["redemptions"] += 1
        if fact.hold_event_id is None:  # a capture's points left their lots with the hold
            _draw(rows, fact.member_id, fact.draws)

    def points_expired(self, fact: Any, rows: RowBatch) -> None:
        _points(rows, fact)["expired"] += fact.points
        _draw(rows, fact.member_id, fact.lots)

    def points_activated(self, fact: Any, rows: RowBatch) -> None:
        _draw(rows, fact.member_id, [[lot_id, paid] for lot_id, _, paid in fact.lots if paid])

    def points_adjusted(self, fact: Any, rows: RowBatch) -> None:
        if fact.lot is not None:
            _open_lot(rows, fact.member_id, fact.lot)
        _draw(rows, fact.member_id, fact.draws)

    def points_transferred_out(self, fact: Any, rows: RowBatch) -> None:
        _draw(rows, fact.member_id, [[lot["lot_id"], lot["points"]] for lot in fact.lots])

    def points_transferred_in(self, fact: Any, rows: RowBatch) -> None:
        for lot in fact.lots:
            _open_lot(rows, fact.member_id, lot)

    def points_held(self, fact: Any, rows: RowBatch) -> None:
        _draw(rows, fact.member_id, [[part["lot_id"], part["points"]] for part in fact.parts])

    def hold_released(self, fact: Any, rows: RowBatch) -> None:
        _points(rows, fact)["expired"] += fact.expired
        for part in fact.returns:
            lot = rows.get(KPI_OPEN_LOTS, (fact.member_id, part["lot_id"]))
            if lot is None:
                _open_lot(rows, fact.member_id, part)
            else:
                lot["remaining"] += part["points"]
                rows.put(KPI_OPEN_LOTS, lot)

    # -------------------------------------------------------------- steps

    def _award(self, fact: Any, rows: RowBatch) -> None:
        _points(rows, fact)["earned"] += fact.points
        if fact.lot is not None:
            _open_lot(rows, fact.member_id, fact.lot)

    # Facts handled alike: a handler per wire name, sharing the method defined above.
    birthday_rewarded = referral_qualified = referrer_credited = annual_incentive_awarded = _award
    redemption_cancelled = hold_released


def _open_lot(rows: RowBatch, member_id: str, lot: dict) -> None:
    rows.put(KPI_OPEN_LOTS, {"member_id": member_id, "lot_id": lot["lot_id"],
                             "expires_month": _month(lot["expires_at"]),
                             "remaining": lot["points"]})


def _month(moment: datetime) -> str:
    """``YYYY-MM`` (``strftime`` costs five times as much)."""
    return "%04d-%02d" % (moment.year, moment.month)


def _points(rows: RowBatch, fact: Any) -> Row:
    """The points counters of the year of the fact's clock (its booking year)."""
    return _counters(rows, KPI_POINTS, (utc_year(fact.timestamp),))


def _counters(rows: RowBatch, table: Table, key: tuple) -> Row:
    """The row with ``key``, created with zero counters when missing, for the caller to add to
    (it is marked changed)."""
    row = rows.get(table, key)
    if row is None:
        row = dict(zip(table.key, key)) | dict.fromkeys(table.column_names[len(key):], 0)
    rows.put(table, row)
    return row


def _draw(rows: RowBatch, member_id: str, draws: list[list[int]]) -> None:
    """Take ``[[lot_id, points], ...]`` from the member's open lots; empty lots go."""
    for lot_id, taken in draws:
        lot: Row = existing_row(rows, KPI_OPEN_LOTS, (member_id, lot_id), draws)
        lot["remaining"] -= taken
        if lot["remaining"] == 0:
            rows.delete(KPI_OPEN_LOTS, (member_id, lot_id))
        else:
            rows.put(KPI_OPEN_LOTS, lot)
