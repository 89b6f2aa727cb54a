"""The balance read model (CONTRACT section 4): one row per member.

``balance`` = unspent points of open lots minus debt, as of the member's
last applied event (expiry happens when a later event is applied, never by
the wall clock); ``last_event_at`` is the account clock. Every award (points
including those that paid debt) adds to ``lifetime_earned`` and to the
balance; a reversal, redemption or expiry takes its points off the balance.
So the row keeps balance = earned - reversed - redeemed - expired.

Facts handled: ``account_opened``, every outcome (each moves the clock) and
the awards that are not outcomes (``referral_qualified``,
``annual_incentive_awarded``) and ``points_expired``. Ignored:
``tier_changed`` (its clock is its event's outcome's clock).
"""

from __future__ import annotations

from typing import Any

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
    ),
    key=("member_id",),
)
BALANCE_FIELDS = BALANCES.column_names


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
        counters = dict.fromkeys(BALANCE_FIELDS[1:-1], 0)
        rows.put(BALANCES, {"member_id": fact.member_id, **counters,
                            "last_event_at": fact.timestamp})

    def points_earned(self, fact: Any, rows: RowBatch) -> None:
        self._award(fact, rows)

    def birthday_rewarded(self, fact: Any, rows: RowBatch) -> None:
        self._award(fact, rows)

    def referral_qualified(self, fact: Any, rows: RowBatch) -> None:
        self._award(fact, rows)

    def referrer_credited(self, fact: Any, rows: RowBatch) -> None:
        self._award(fact, rows)

    def annual_incentive_awarded(self, fact: Any, rows: RowBatch) -> None:
        self._award(fact, rows)

    def points_reversed(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["lifetime_reversed"] += fact.points
        row["debt"] += fact.debt_created
        row["balance"] -= fact.points
        rows.put(BALANCES, row)

    def points_redeemed(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["lifetime_redeemed"] += fact.points
        row["balance"] -= fact.points
        rows.put(BALANCES, row)

    def points_expired(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["lifetime_expired"] += fact.points
        row["balance"] -= fact.points
        rows.put(BALANCES, row)

    def purchase_rejected(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    def refund_rejected(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    def redemption_rejected(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    def birthday_already_rewarded(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    def referral_registered(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    def referral_rejected(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    def referrer_capped(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    def year_closed(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    def year_already_closed(self, fact: Any, rows: RowBatch) -> None:
        self._clock_only(fact, rows)

    # -------------------------------------------------------------- steps

    def _at_clock(self, fact: Any, rows: RowBatch) -> Row:
        row = existing_row(rows, BALANCES, (fact.member_id,), fact)
        row["last_event_at"] = fact.timestamp
        return row

    def _clock_only(self, fact: Any, rows: RowBatch) -> None:
        rows.put(BALANCES, self._at_clock(fact, rows))

    def _award(self, fact: Any, rows: RowBatch) -> None:
        """New points pay debt first; either way they add to earned and to the balance."""
        row = self._at_clock(fact, rows)
        row["lifetime_earned"] += fact.points
        row["debt"] -= fact.debt_paid
        row["balance"] += fact.points
        rows.put(BALANCES, row)
