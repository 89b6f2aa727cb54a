"""The annual-incentive read model (CONTRACT section 4): a row per member and year.

``purchases`` counts the year's purchases that are not fully refunded;
``net_purchase_points`` is the points those purchases earned minus what
their refunds reversed (a refund counts in its purchase's year);
``eligible`` and ``projected_bonus`` apply the program's annual rule
(``ledger.rules.annual_bonus``, as the ledger's ``year_closed`` does) to
those figures as they stand; ``awarded_bonus`` is null until the year's
``year_closed`` and then its ``bonus_points`` (0 when not eligible). A year
with no purchases gets a row only when it is closed.

A refund says how much of its purchase is refunded in total
(``refunded_minor_total``) but not the purchase's amount, so the model keeps
one helper row per purchase (``annual_purchases``: amount and year) to tell
when a purchase becomes fully refunded; that happens at most once, since a
refund beyond the amount is rejected.

Facts handled: ``points_earned``, ``points_reversed``, ``year_closed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ledger.domain import LoyaltyAccount
from ledger.rules import annual_bonus

from projections.base import ReadModelProjection, ReadModelRecorder, existing_row
from projections.rows import Row, RowBatch, Table

ANNUAL = Table(
    name="annual_incentives",
    columns=(
        ("member_id", "text NOT NULL"),
        ("year", "integer NOT NULL"),
        ("purchases", "integer NOT NULL"),
        ("net_purchase_points", "bigint NOT NULL"),
        ("eligible", "boolean NOT NULL"),
        ("projected_bonus", "bigint NOT NULL"),
        ("awarded_bonus", "bigint"),
    ),
    key=("member_id", "year"),
)
PURCHASES = Table(
    name="annual_purchases",
    columns=(
        ("member_id", "text NOT NULL"),
        ("purchase_event_id", "text NOT NULL"),
        ("year", "integer NOT NULL"),
        ("amount_minor", "bigint NOT NULL"),
    ),
    key=("member_id", "purchase_event_id"),
    member_scoped=False,  # many per member: read by key, only for the refunds of a batch
)
ANNUAL_FIELDS = ANNUAL.column_names


class AnnualRecorder(ReadModelRecorder):
    tables = (ANNUAL, PURCHASES)


class AnnualProjection(ReadModelProjection):
    name = "annual"
    view_class = AnnualRecorder

    def keys_to_read(self, facts: Iterable[Any]) -> dict[Table, set[tuple]]:
        """The purchases this batch's refunds refer to."""
        refunds = [fact for fact in facts if isinstance(fact, LoyaltyAccount.PointsReversed)]
        return {PURCHASES: {(fact.member_id, fact.purchase_event_id) for fact in refunds}}

    # ----------------------------------------------------------- handlers

    def points_earned(self, fact: Any, rows: RowBatch) -> None:
        rows.put(PURCHASES, {"member_id": fact.member_id, "purchase_event_id": fact.source_event_id,
                             "year": fact.year, "amount_minor": fact.amount_minor})
        row = self._year_row(fact.member_id, fact.year, rows)
        row["purchases"] += 1
        row["net_purchase_points"] += fact.points
        self._save(row, rows)

    def points_reversed(self, fact: Any, rows: RowBatch) -> None:
        purchase = existing_row(rows, PURCHASES, (fact.member_id, fact.purchase_event_id), fact)
        row = self._year_row(fact.member_id, fact.purchase_year, rows)
        row["net_purchase_points"] -= fact.points
        if fact.refunded_minor_total == purchase["amount_minor"]:
            row["purchases"] -= 1
        self._save(row, rows)

    def year_closed(self, fact: Any, rows: RowBatch) -> None:
        row = self._year_row(fact.member_id, fact.year, rows)
        row["awarded_bonus"] = fact.bonus_points
        self._save(row, rows)

    # -------------------------------------------------------------- steps

    def _year_row(self, member_id: str, year: int, rows: RowBatch) -> Row:
        row = rows.get(ANNUAL, (member_id, year))
        if row is None:
            row = {"member_id": member_id, "year": year, "purchases": 0, "net_purchase_points": 0,
                   "eligible": False, "projected_bonus": 0, "awarded_bonus": None}
        return row

    def _save(self, row: Row, rows: RowBatch) -> None:
        row["eligible"], row["projected_bonus"] = annual_bonus(
            row["purchases"], row["net_purchase_points"], self.rules)
        rows.put(ANNUAL, row)
