"""The balance read model (CONTRACT section 4): one row per member.

``balance`` = unspent points of open lots minus debt, as of the member's
last applied event (expiry happens when a later event is applied, never by
the wall clock); ``last_event_at`` is the account clock. Every award (points
including those that paid debt) adds to ``lifetime_earned`` and to the
balance; a reversal, redemption or expiry takes its points off the balance.
So the row keeps balance = earned - reversed - redeemed - expired.

Contract 2 adds ``held``, ``pending`` and the counters of adjustments,
transfers, cancellations and forfeits, so the row keeps balance + held +
pending = earned + adjusted_in + transferred_in + cancelled - reversed -
redeemed - expired - adjusted_out - transferred_out - forfeited. A pending
lot's points are ``pending`` until ``points_activated``; since an expiry or
a refund may draw a pending lot, the row keeps the unspent points of its
pending lots in the internal column ``pending_lots`` (JSON, lot id to points:
``{}`` with the default program).

Section 7: a hold moves points from ``balance`` to ``held``; a capture's
``points_redeemed`` (it names its ``hold_event_id``) takes them out of
``held``; a release or a cancellation gives points back (``expired`` of them
expire at once, the rest adds to the balance, paying ``debt_paid`` of debt).

Facts handled: ``account_opened``, every outcome (each moves the clock) and
the awards that are not outcomes (``referral_qualified``,
``annual_incentive_awarded``), ``points_activated`` and ``points_expired``.
Ignored: ``tier_changed`` (its clock is its event's outcome's clock).
"""

from __future__ import annotations

from typing import Any

import orjson
from psycopg.sql import SQL, Identifier

from projections.base import ReadModelProjection, ReadModelRecorder, existing_row
from projections.rows import Row, RowBatch, Table

BALANCES = Table(
    name="balances",
    columns=(
        ("member_id", "text NOT NULL"),
        ("balance", "bigint NOT NULL"),
        ("lifetime_earned", "bigint NOT NULL"),
        ("lifetime_redeemed", "bigint NOT NULL"),
        ("lifetime_expired", "bigint NOT NULL"),
        ("lifetime_reversed", "bigint NOT NULL"),
        ("debt", "bigint NOT NULL"),
        ("last_event_at", "timestamptz NOT NULL"),
        ("held", "bigint NOT NULL DEFAULT 0"),
        ("pending", "bigint NOT NULL DEFAULT 0"),
        ("lifetime_adjusted_in", "bigint NOT NULL DEFAULT 0"),
        ("lifetime_adjusted_out", "bigint NOT NULL DEFAULT 0"),
        ("lifetime_transferred_in", "bigint NOT NULL DEFAULT 0"),
        ("lifetime_transferred_out", "bigint NOT NULL DEFAULT 0"),
        ("lifetime_cancelled", "bigint NOT NULL DEFAULT 0"),
        ("lifetime_forfeited", "bigint NOT NULL DEFAULT 0"),
        ("pending_lots", "text NOT NULL DEFAULT '{}'"),
    ),
    key=("member_id",),
)
BALANCE_FIELDS = BALANCES.column_names[:-1]  # pending_lots is internal
COUNTER_FIELDS = tuple(name for name in BALANCE_FIELDS if name not in ("member_id", "last_event_at"))
NO_PENDING_LOTS = "{}"


TOTALS_SQL = """SELECT coalesce(sum(lifetime_earned), 0) AS earned,
                       coalesce(sum(lifetime_redeemed), 0) AS redeemed,
                       coalesce(sum(lifetime_expired), 0) AS expired,
                       coalesce(sum(lifetime_reversed), 0) AS reversed,
                       coalesce(sum(greatest(balance, 0)), 0) AS liability,
                       count(*) AS members, max(last_event_at) AS last_event_at
                FROM {schema}.balances"""


class BalancesRecorder(ReadModelRecorder):
    tables = (BALANCES,)

    def totals(self) -> Row:
        """Points over every member (``earned``, ``redeemed``, ``expired``, ``reversed``,
        ``liability``: positive balances), ``members`` and the latest ``last_event_at``."""
        with self.datastore.transaction(commit=False) as cursor:
            return cursor.execute(SQL(TOTALS_SQL).format(schema=Identifier(self.schema))).fetchone()


class BalancesProjection(ReadModelProjection):
    name = "balances"
    view_class = BalancesRecorder

    # ----------------------------------------------------------- handlers

    def account_opened(self, fact: Any, rows: RowBatch) -> None:
        counters = dict.fromkeys(COUNTER_FIELDS, 0)
        rows.put(BALANCES, {"member_id": fact.member_id, **counters,
                            "last_event_at": fact.timestamp, "pending_lots": NO_PENDING_LOTS})

    def points_reversed(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["lifetime_reversed"] += fact.points
        row["debt"] += fact.debt_created
        row["balance"] -= fact.points - _take_pending(row, fact.draws)
        rows.put(BALANCES, row)

    def points_redeemed(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["lifetime_redeemed"] += fact.points
        row["held" if fact.hold_event_id is not None else "balance"] -= fact.points
        rows.put(BALANCES, row)

    def points_expired(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["lifetime_expired"] += fact.points
        row["balance"] -= fact.points - _take_pending(row, fact.lots)
        rows.put(BALANCES, row)

    def points_activated(self, fact: Any, rows: RowBatch) -> None:
        """Pending points become spendable; those that paid debt leave the debt."""
        row = self._at_clock(fact, rows)
        _take_pending(row, [[lot_id, points] for lot_id, points, _ in fact.lots])
        row["debt"] -= fact.debt_paid
        row["balance"] += fact.points
        rows.put(BALANCES, row)

    def points_adjusted(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        if fact.points > 0:
            row["lifetime_adjusted_in"] += fact.points
            row["debt"] -= fact.debt_paid
        else:
            row["lifetime_adjusted_out"] -= fact.points
            row["debt"] += fact.debt_created
        row["balance"] += fact.points
        rows.put(BALANCES, row)

    def points_transferred_out(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["lifetime_transferred_out"] += fact.points
        row["balance"] -= fact.points
        rows.put(BALANCES, row)

    def points_transferred_in(self, fact: Any, rows: RowBatch) -> None:
        """Arriving points: a past-expiry part expired at once, the rest paid debt or formed lots."""
        row = self._at_clock(fact, rows)
        row["lifetime_transferred_in"] += fact.points
        _came_back(row, fact)
        rows.put(BALANCES, row)

    def points_forfeited(self, fact: Any, rows: RowBatch) -> None:
        """Erasure (section 13): unspent points of every lot, pending ones included, forfeited."""
        row = self._at_clock(fact, rows)
        row["lifetime_forfeited"] += fact.points
        row["balance"] -= fact.points - _take_pending(row, fact.lots)
        rows.put(BALANCES, row)

    def points_held(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["held"] += fact.points
        row["balance"] -= fact.points
        rows.put(BALANCES, row)

    def hold_released(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["held"] -= fact.points
        _came_back(row, fact)
        rows.put(BALANCES, row)

    def redemption_cancelled(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["lifetime_cancelled"] += fact.points
        _came_back(row, fact)
        rows.put(BALANCES, row)

    # -------------------------------------------------------------- steps

    def _at_clock(self, fact: Any, rows: RowBatch) -> Row:
        row = existing_row(rows, BALANCES, (fact.member_id,), fact)
        row["last_event_at"] = fact.timestamp
        return row

    def _clock_only(self, fact: Any, rows: RowBatch) -> None:
        rows.put(BALANCES, self._at_clock(fact, rows))

    def _award(self, fact: Any, rows: RowBatch) -> None:
        """New points pay debt first; either way they add to earned and to the balance,
        unless they form a pending lot (section 8: then they are ``pending``)."""
        row = self._at_clock(fact, rows)
        row["lifetime_earned"] += fact.points
        row["debt"] -= fact.debt_paid
        lot = fact.lot
        if lot is not None and "active_from" in lot:
            _add_pending(row, lot["lot_id"], lot["points"])
            row["balance"] += fact.points - lot["points"]
        else:
            row["balance"] += fact.points
        rows.put(BALANCES, row)

    # Facts handled alike: a handler per wire name, sharing the method defined above.
    points_earned = birthday_rewarded = referral_qualified = referrer_credited = \
        annual_incentive_awarded = _award
    adjustment_rejected = transfer_rejected = purchase_rejected = refund_rejected = \
        redemption_rejected = birthday_already_rewarded = referral_registered = referral_rejected = \
        referrer_capped = year_closed = year_already_closed = _clock_only
    # Section 13's facts that move no points (a closed account's rejections keep its clock).
    member_enrolled = member_enrolled_rejected = profile_updated = profile_updated_rejected = \
        member_erased = member_erased_rejected = nps_recorded = nps_response_rejected = \
        birthday_rejected = year_closed_rejected = referrer_credit_rejected = \
        transfer_credit_rejected = _clock_only
    redemption_hold_rejected = redemption_capture_rejected = redemption_void_rejected = \
        redemption_cancel_rejected = _clock_only


def _came_back(row: Row, fact: Any) -> None:
    """Points that came back (section 7): ``expired`` expire, the rest pay debt or return."""
    row["lifetime_expired"] += fact.expired
    row["debt"] -= fact.debt_paid
    row["balance"] += fact.points - fact.expired


def _add_pending(row: Row, lot_id: int, points: int) -> None:
    lots = orjson.loads(row["pending_lots"])
    lots[str(lot_id)] = points
    row["pending_lots"] = orjson.dumps(lots).decode()
    row["pending"] += points


def _take_pending(row: Row, draws: list[list[int]]) -> int:
    """Take ``draws`` ([lot_id, points]) from the row's pending lots; return the points taken."""
    if row["pending_lots"] == NO_PENDING_LOTS:  # the default program: no pending lot, ever
        return 0
    lots = orjson.loads(row["pending_lots"])
    taken = 0
    for lot_id, points in draws:
        key = str(lot_id)
        if key in lots:
            lots[key] -= points
            taken += points
            if lots[key] == 0:
                del lots[key]
    row["pending_lots"] = orjson.dumps(lots).decode()
    row["pending"] -= taken
    return taken
