"""The tier read model (CONTRACT section 4): one row per member.

``spend_current_year`` / ``spend_previous_year`` are qualifying spend
(purchases minus refunds of those purchases, a refund counting in its
purchase's year) of the clock's year and the year before; the row keeps the
clock's year in ``clock_year`` (an internal column, not exported) and shifts
both figures when a fact moves the clock into a later year. Spend of older
years can never count again (the clock never moves back), so it is not kept.
``next_tier`` / ``spend_to_next_tier`` come from the program's thresholds
(null at the top tier; with ``tier_basis = "lifetime"`` the distance is from
lifetime spend, kept in the internal ``spend_lifetime``); ``discount_pct`` is
the tier's till discount (contract 2, section 11); ``tier_since`` is the clock
of the last ``tier_changed``, or of ``account_opened`` for a member still in
the base tier.

Facts handled: ``account_opened``, ``tier_changed`` and every outcome (each
moves the clock; purchases and refunds also change spend). Ignored:
``points_expired``, ``referral_qualified``, ``annual_incentive_awarded``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from psycopg.sql import SQL, Identifier

from ledger.program import Program, Tier
from projections.base import ReadModelProjection, ReadModelRecorder, existing_row, utc_year
from projections.rows import Row, RowBatch, Table

TIERS = Table(
    name="tiers",
    columns=(
        ("member_id", "text NOT NULL"),
        ("tier", "text NOT NULL"),
        ("spend_current_year", "bigint NOT NULL"),
        ("spend_previous_year", "bigint NOT NULL"),
        ("next_tier", "text"),
        ("spend_to_next_tier", "bigint"),
        ("tier_since", "timestamptz NOT NULL"),
        ("discount_pct", "integer NOT NULL DEFAULT 0"),
        ("clock_year", "integer NOT NULL"),
        ("spend_lifetime", "bigint NOT NULL DEFAULT 0"),
        ("program_version", "integer NOT NULL DEFAULT 1"),
    ),
    key=("member_id",),
)
TIER_FIELDS = TIERS.column_names[:-3]  # clock_year, spend_lifetime, program_version: internal


MEMBERS_BY_TIER_SQL = "SELECT tier, count(*) AS members FROM {schema}.tiers GROUP BY tier"


class TiersRecorder(ReadModelRecorder):
    tables = (TIERS,)

    def members_by_tier(self) -> dict[str, int]:
        """How many members each tier holds (tiers without members are absent)."""
        with self.datastore.transaction(commit=False) as cursor:
            rows = cursor.execute(SQL(MEMBERS_BY_TIER_SQL).format(schema=Identifier(self.schema)))
            return {row["tier"]: row["members"] for row in rows.fetchall()}


class TiersProjection(ReadModelProjection):
    name = "tiers"
    view_class = TiersRecorder

    # ----------------------------------------------------------- handlers

    def account_opened(self, fact: Any, rows: RowBatch) -> None:
        row = {"member_id": fact.member_id, "tier": fact.tier, "spend_current_year": 0,
               "spend_previous_year": 0, "tier_since": fact.timestamp,
               "clock_year": utc_year(fact.timestamp), "spend_lifetime": 0,
               "program_version": self.rules.version}
        self._save(row, rows)

    def tier_changed(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        row["tier"] = fact.to_tier
        row["tier_since"] = fact.timestamp
        self._save(row, rows)

    def points_earned(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        _add_spend(row, fact.year, fact.amount_minor)
        self._save(row, rows)

    def points_reversed(self, fact: Any, rows: RowBatch) -> None:
        row = self._at_clock(fact, rows)
        _add_spend(row, fact.purchase_year, -fact.amount_minor)
        self._save(row, rows)

    # -------------------------------------------------------------- steps

    def _at_clock(self, fact: Any, rows: RowBatch) -> Row:
        """The member's row with its years moved to the fact's clock."""
        row = existing_row(rows, TIERS, (fact.member_id,), fact)
        row["program_version"] = getattr(fact, "program_version", row["program_version"])
        years_on = utc_year(fact.timestamp) - row["clock_year"]
        if years_on > 0:
            carried = row["spend_current_year"] if years_on == 1 else 0
            row["spend_previous_year"], row["spend_current_year"] = carried, 0
            row["clock_year"] += years_on
        return row

    def _clock_only(self, fact: Any, rows: RowBatch) -> None:
        self._save(self._at_clock(fact, rows), rows)

    @cached_property
    def _ladders(self) -> dict[int, "TierLadder"]:
        return {}

    def _ladder(self, version: int) -> "TierLadder":
        """The tier steps of the program version that decided the row's last outcome."""
        ladder = self._ladders.get(version)
        if ladder is None:
            ladder = self._ladders[version] = TierLadder.of(self.rules_of_version(version))
        return ladder

    def _save(self, row: Row, rows: RowBatch) -> None:
        ladder = self._ladder(row["program_version"])
        following = ladder.next_tiers[row["tier"]]
        row["next_tier"] = following.name if following else None
        row["spend_to_next_tier"] = (following.threshold_minor - row[ladder.judged_spend_column]
                                     if following else None)
        row["discount_pct"] = ladder.discounts[row["tier"]]
        rows.put(TIERS, row)

    # Facts handled alike: a handler per wire name, sharing the method defined above.
    purchase_rejected = refund_rejected = points_redeemed = redemption_rejected = \
        birthday_rewarded = birthday_already_rewarded = referral_registered = referral_rejected = \
        referrer_credited = referrer_capped = year_closed = year_already_closed = points_adjusted = \
        adjustment_rejected = points_transferred_out = transfer_rejected = points_transferred_in = \
        _clock_only
    # Section 13's facts (a closed account's rejections keep its clock, so its row stays).
    member_enrolled = member_enrolled_rejected = profile_updated = profile_updated_rejected = \
        member_erased = member_erased_rejected = points_forfeited = nps_recorded = \
        nps_response_rejected = birthday_rejected = year_closed_rejected = \
        referrer_credit_rejected = transfer_credit_rejected = _clock_only
    points_held = redemption_hold_rejected = hold_released = redemption_capture_rejected = \
        redemption_void_rejected = redemption_cancelled = redemption_cancel_rejected = _clock_only


@dataclass(frozen=True)
class TierLadder:
    """What a tier row needs of one program: next tiers, discounts, the spend judged."""

    next_tiers: dict[str, Tier | None]
    discounts: dict[str, int]
    judged_spend_column: str

    @classmethod
    def of(cls, program: Program) -> "TierLadder":
        return cls(next_tiers={tier.name: program.next_tier(tier.name) for tier in program.tiers},
                   discounts={tier.name: tier.discount_pct for tier in program.tiers},
                   judged_spend_column=("spend_lifetime" if program.lifetime_tiers
                                        else "spend_current_year"))


def _add_spend(row: Row, year: int, amount_minor: int) -> None:
    """Spend of the clock's year or the year before; older years no longer count
    toward those two, every year toward ``spend_lifetime``."""
    row["spend_lifetime"] += amount_minor
    if year == row["clock_year"]:
        row["spend_current_year"] += amount_minor
    elif year == row["clock_year"] - 1:
        row["spend_previous_year"] += amount_minor
