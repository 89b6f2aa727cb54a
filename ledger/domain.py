"""The ``LoyaltyAccount`` aggregate: one member's points, lots, tier and history.

Commands decide, events record. Each command (``record_purchase``,
``record_refund``, ...) follows CONTRACT section 3 step by step: advance the
clock, expire, evaluate the tier (``year_rollover``), apply the effect, expire
again, evaluate the tier (``spend`` / ``refund``). Everything the rules
decide (points, the lot created, the lots drawn and how much from each, debt
paid or created, expiry times, tier before and after) is computed here and
put in the fact; a fact's ``apply`` only copies it into state, never raises,
never reads a clock.

Every fact's ``timestamp`` is the account's clock when it was recorded (event
time, never the wall clock), so an account rebuilt from its facts is equal
field for field. Facts are nested, past-tense classes; their wire names
(``points_earned``...) are in ``FACT_TYPES`` and never change.
"""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger import commands as cmd
from ledger.calendar import add_months, year_of
from ledger.program import Program
from ledger.rules import (
    Lot,
    PurchaseRecord,
    annual_bonus,
    annual_totals,
    draw_points,
    expiring_lots,
    qualifying_spend,
)

MEMBER_NAMESPACE = uuid5(NAMESPACE_URL, "urn:loyalty-ledger:member")


class EventIdConflict(Exception):
    """An ``event_id`` already applied with a different payload (not a duplicate)."""


def account_id(member_id: str) -> UUID:
    """The aggregate id of a member's account: stable, derived from the member id."""
    return uuid5(MEMBER_NAMESPACE, member_id)


def _apply_award(account: "LoyaltyAccount", fact) -> None:
    account.lifetime_earned += fact.points
    account.debt -= fact.debt_paid
    if fact.lot is not None:
        account.lots.append(Lot(**fact.lot, remaining=fact.lot["points"],
                                source_event_id=fact.source_event_id))
        account.next_lot_id = fact.lot["lot_id"] + 1


def _apply_draws(account: "LoyaltyAccount", draws: list[list[int]]) -> None:
    taken = dict((lot_id, points) for lot_id, points in draws)
    for lot in account.lots:
        lot.remaining -= taken.get(lot.lot_id, 0)
    account.lots = [lot for lot in account.lots if lot.remaining > 0]


class LoyaltyAccount(Aggregate):
    """One member's loyalty account."""

    class Opened(Aggregate.Created):
        member_id: str
        tier: str
        source_event_id: str

    class Fact(Aggregate.Event):
        """Base of every ledger fact: whose it is and what caused it."""

        member_id: str
        source_event_id: str

    class Outcome(Fact):
        """The one fact per applied inbound event that marks its ``event_id`` applied."""

        occurred_at: datetime
        fingerprint: str
        source_position: str | None

        def apply(self, account: "LoyaltyAccount") -> None:
            account.applied[self.source_event_id] = self.fingerprint

    class PointsExpired(Fact):
        points: int
        lots: list[list[int]]

        def apply(self, account: "LoyaltyAccount") -> None:
            account.lifetime_expired += self.points
            _apply_draws(account, self.lots)

    class TierChanged(Fact):
        from_tier: str
        to_tier: str
        reason: str
        qualifying_spend_minor: int

        def apply(self, account: "LoyaltyAccount") -> None:
            account.tier = self.to_tier
            account.tier_since = self.timestamp

    class PointsEarned(Outcome):
        year: int
        amount_minor: int
        store_id: str
        channel: str | None
        multiplier_pct: int
        points: int
        debt_paid: int
        lot: dict | None

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            _apply_award(account, self)
            account.purchases[self.source_event_id] = PurchaseRecord(
                event_id=self.source_event_id, occurred_at=self.occurred_at, year=self.year,
                amount_minor=self.amount_minor, points=self.points,
                lot_id=self.lot["lot_id"] if self.lot else None,
            )
            year_key = str(self.year)
            account.spend_by_year[year_key] = account.spend_by_year.get(year_key, 0) + self.amount_minor

    class PurchaseRejected(Outcome):
        reason: str
        amount_minor: int
        currency: str

    class PointsReversed(Outcome):
        purchase_event_id: str
        purchase_year: int
        amount_minor: int
        refunded_minor_total: int
        points: int
        draws: list[list[int]]
        debt_created: int

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.lifetime_reversed += self.points
            _apply_draws(account, self.draws)
            account.debt += self.debt_created
            purchase = account.purchases[self.purchase_event_id]
            purchase.refunded_minor = self.refunded_minor_total
            purchase.reversed_points += self.points
            year_key = str(self.purchase_year)
            account.spend_by_year[year_key] -= self.amount_minor

    class RefundRejected(Outcome):
        reason: str
        purchase_event_id: str
        amount_minor: int
        currency: str

    class PointsRedeemed(Outcome):
        points: int
        reward_id: str
        cash_top_up_minor: int
        draws: list[list[int]]

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.lifetime_redeemed += self.points
            _apply_draws(account, self.draws)

    class RedemptionRejected(Outcome):
        reason: str
        points: int
        balance: int
        reward_id: str

    class BirthdayRewarded(Outcome):
        year: int
        points: int
        debt_paid: int
        lot: dict | None

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            _apply_award(account, self)
            account.birthday_years.append(self.year)

    class BirthdayAlreadyRewarded(Outcome):
        year: int

    class ReferralRegistered(Outcome):
        referrer_member_id: str

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.referrer_member_id = self.referrer_member_id

    class ReferralRejected(Outcome):
        reason: str
        referrer_member_id: str

    class ReferralQualified(Fact):
        referrer_member_id: str
        referee_member_id: str
        qualifying_event_id: str
        qualifying_occurred_at: datetime
        points: int
        debt_paid: int
        lot: dict | None

        def apply(self, account: "LoyaltyAccount") -> None:
            _apply_award(account, self)
            account.referral_qualified = True

    class ReferrerCredited(Outcome):
        referee_member_id: str
        qualifying_event_id: str
        year: int
        points: int
        debt_paid: int
        lot: dict | None

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            _apply_award(account, self)
            year_key = str(self.year)
            account.referrer_bonuses_by_year[year_key] = (
                account.referrer_bonuses_by_year.get(year_key, 0) + 1
            )

    class ReferrerCapped(Outcome):
        referee_member_id: str
        qualifying_event_id: str
        year: int
        bonuses_in_year: int

    class YearClosed(Outcome):
        year: int
        purchases: int
        net_purchase_points: int
        eligible: bool
        bonus_points: int

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.closed_years.append(self.year)

    class YearAlreadyClosed(Outcome):
        year: int

    class AnnualIncentiveAwarded(Fact):
        year: int
        points: int
        debt_paid: int
        lot: dict | None

        def apply(self, account: "LoyaltyAccount") -> None:
            _apply_award(account, self)

    # ------------------------------------------------------------------ state

    @staticmethod
    def create_id(member_id: str) -> UUID:
        return account_id(member_id)

    def __init__(self, member_id: str, tier: str) -> None:
        self.member_id = member_id
        self.tier = tier
        self.tier_since = self._created_on
        self.lots: list[Lot] = []
        self.next_lot_id = 1
        self.debt = 0
        self.lifetime_earned = 0
        self.lifetime_reversed = 0
        self.lifetime_redeemed = 0
        self.lifetime_expired = 0
        self.applied: dict[str, str] = {}
        self.purchases: dict[str, PurchaseRecord] = {}
        self.spend_by_year: dict[str, int] = {}
        self.birthday_years: list[int] = []
        self.referrer_member_id: str | None = None
        self.referral_qualified = False
        self.referrer_bonuses_by_year: dict[str, int] = {}
        self.closed_years: list[int] = []

    @classmethod
    def open(cls, command: cmd.Command, program: Program) -> "LoyaltyAccount":
        """A new account, opened by its member's first applied event, in the base tier."""
        account = cls._create(
            cls.Opened,
            id=account_id(command.member_id),
            member_id=command.member_id,
            tier=program.base_tier.name,
            source_event_id=command.event_id,
            timestamp=command.occurred_at,
        )
        return account

    @property
    def clock(self) -> datetime:
        """The latest ``occurred_at`` among applied events; never moves back."""
        return self.modified_on

    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots) - self.debt

    def check_invariant(self) -> None:
        """Programmer invariant: balance = earned - reversed - redeemed - expired."""
        flows = (self.lifetime_earned - self.lifetime_reversed
                 - self.lifetime_redeemed - self.lifetime_expired)
        assert self.balance == flows, (self.member_id, self.balance, flows)
        assert self.debt == 0 or not self.lots, "debt and open lots never coexist"

    def has_applied(self, command: cmd.Command) -> bool:
        """True for a duplicate; EventIdConflict if the id came with another payload."""
        fingerprint = self.applied.get(command.event_id)
        if fingerprint is None:
            return False
        if fingerprint != command.fingerprint:
            raise EventIdConflict(
                f"event_id {command.event_id!r} was applied with another payload"
            )
        return True

    def spend_in_year(self, year: int) -> int:
        return self.spend_by_year.get(str(year), 0)

    def purchases_in_year(self, year: int) -> list[PurchaseRecord]:
        return [p for p in self.purchases.values() if p.year == year]

    # --------------------------------------------------------------- commands

    def record_purchase(self, command: cmd.RecordPurchase, program: Program) -> None:
        clock = self._begin(command, program)
        if command.currency != program.currency:
            self._outcome(self.PurchaseRejected, clock, command, reason="currency",
                          amount_minor=command.amount_minor, currency=command.currency)
        else:
            self._earn_purchase(command, program, clock)
            self._maybe_qualify_referral(command, program, clock)
        self._finish(command, program, clock, tier_reason="spend")

    def record_refund(self, command: cmd.RecordRefund, program: Program) -> None:
        clock = self._begin(command, program)
        reason = self._refund_rejection(command, program)
        if reason is not None:
            self._outcome(self.RefundRejected, clock, command, reason=reason,
                          purchase_event_id=command.purchase_event_id,
                          amount_minor=command.amount_minor, currency=command.currency)
        else:
            self._reverse_purchase(command, clock)
        self._finish(command, program, clock, tier_reason="refund")

    def redeem_points(self, command: cmd.RedeemPoints, program: Program) -> None:
        clock = self._begin(command, program)
        balance = self.balance
        if balance < command.points:
            self._outcome(self.RedemptionRejected, clock, command, reason="insufficient_points",
                          points=command.points, balance=balance, reward_id=command.reward_id)
        else:
            draws, _ = draw_points(self.lots, command.points)
            self._outcome(self.PointsRedeemed, clock, command, points=command.points,
                          reward_id=command.reward_id,
                          cash_top_up_minor=command.cash_top_up_minor, draws=draws)
        self._finish(command, program, clock)

    def reward_birthday(self, command: cmd.RewardBirthday, program: Program) -> None:
        clock = self._begin(command, program)
        year = year_of(command.occurred_at)
        if year in self.birthday_years:
            self._outcome(self.BirthdayAlreadyRewarded, clock, command, year=year)
        else:
            award = self._award(program.birthday_points, command.occurred_at, program)
            self._outcome(self.BirthdayRewarded, clock, command, year=year, **award)
        self._finish(command, program, clock)

    def register_referral(self, command: cmd.RegisterReferral, program: Program) -> None:
        clock = self._begin(command, program)
        reason = None
        if command.referrer_member_id == self.member_id:
            reason = "self_referral"
        elif self.referrer_member_id is not None:
            reason = "already_referred"
        if reason is None:
            self._outcome(self.ReferralRegistered, clock, command,
                          referrer_member_id=command.referrer_member_id)
        else:
            self._outcome(self.ReferralRejected, clock, command, reason=reason,
                          referrer_member_id=command.referrer_member_id)
        self._finish(command, program, clock)

    def credit_referrer(self, command: cmd.CreditReferrer, program: Program) -> None:
        clock = self._begin(command, program)
        year = year_of(command.occurred_at)
        bonuses = self.referrer_bonuses_by_year.get(str(year), 0)
        common = dict(referee_member_id=command.referee_member_id,
                      qualifying_event_id=command.qualifying_event_id, year=year)
        if bonuses >= program.referrer_bonuses_per_year_max:
            self._outcome(self.ReferrerCapped, clock, command, bonuses_in_year=bonuses, **common)
        else:
            award = self._award(program.referrer_points, command.occurred_at, program)
            self._outcome(self.ReferrerCredited, clock, command, **common, **award)
        self._finish(command, program, clock)

    def close_year(self, command: cmd.CloseYear, program: Program) -> None:
        clock = self._begin(command, program)
        if command.year in self.closed_years:
            self._outcome(self.YearAlreadyClosed, clock, command, year=command.year)
        else:
            self._close_year(command, program, clock)
        self._finish(command, program, clock)

    # ---------------------------------------------------------- decision steps

    def _begin(self, command: cmd.Command, program: Program) -> datetime:
        """Advance the clock, expire what is due, re-evaluate the tier (year rollover)."""
        clock = max(self.clock, command.occurred_at)
        self._expire(clock, command)
        self._evaluate_tier(clock, program, "year_rollover", command)
        return clock

    def _finish(self, command: cmd.Command, program: Program, clock: datetime,
                tier_reason: str | None = None) -> None:
        """Expire again (late lots already past expiry), then the tier after the effect."""
        self._expire(clock, command)
        if tier_reason is not None:
            self._evaluate_tier(clock, program, tier_reason, command)

    def _record(self, fact_class: type, clock: datetime, **fields) -> None:
        self.trigger_event(fact_class, timestamp=clock, member_id=self.member_id, **fields)

    def _outcome(self, fact_class: type, clock: datetime, command: cmd.Command, **fields) -> None:
        self._record(fact_class, clock, source_event_id=command.event_id,
                     occurred_at=command.occurred_at, fingerprint=command.fingerprint,
                     source_position=command.source_position, **fields)

    def _expire(self, clock: datetime, command: cmd.Command) -> None:
        lots = expiring_lots(self.lots, clock)
        if lots:
            points = sum(unspent for _, unspent in lots)
            self._record(self.PointsExpired, clock, source_event_id=command.event_id,
                         points=points, lots=lots)

    def _evaluate_tier(self, clock: datetime, program: Program, reason: str,
                       command: cmd.Command) -> None:
        spend = qualifying_spend(self.spend_by_year, clock)
        tier = program.tier_for_spend(spend).name
        if tier != self.tier:
            self._record(self.TierChanged, clock, source_event_id=command.event_id,
                         from_tier=self.tier, to_tier=tier, reason=reason,
                         qualifying_spend_minor=spend)

    def _award(self, points: int, lot_time: datetime, program: Program) -> dict:
        """New points pay debt first; only the rest forms a lot dated ``lot_time``."""
        debt_paid = min(points, self.debt)
        rest = points - debt_paid
        lot = None
        if rest > 0:
            lot = {"lot_id": self.next_lot_id, "points": rest, "occurred_at": lot_time,
                   "expires_at": add_months(lot_time, program.expiry_months)}
        return {"points": points, "debt_paid": debt_paid, "lot": lot}

    def _earn_purchase(self, command: cmd.RecordPurchase, program: Program,
                       clock: datetime) -> None:
        multiplier = program.tier(self.tier).multiplier_pct
        points = program.purchase_points(command.amount_minor, multiplier)
        award = self._award(points, command.occurred_at, program)
        self._outcome(self.PointsEarned, clock, command, year=year_of(command.occurred_at),
                      amount_minor=command.amount_minor, store_id=command.store_id,
                      channel=command.channel, multiplier_pct=multiplier, **award)

    def _maybe_qualify_referral(self, command: cmd.RecordPurchase, program: Program,
                                clock: datetime) -> None:
        if self.referrer_member_id is None or self.referral_qualified:
            return
        if command.amount_minor < program.referral_qualifying_purchase_minor:
            return
        award = self._award(program.referee_points, command.occurred_at, program)
        self._record(self.ReferralQualified, clock, source_event_id=command.event_id,
                     referrer_member_id=self.referrer_member_id,
                     referee_member_id=self.member_id,
                     qualifying_event_id=command.event_id,
                     qualifying_occurred_at=command.occurred_at, **award)

    def _refund_rejection(self, command: cmd.RecordRefund, program: Program) -> str | None:
        if command.currency != program.currency:
            return "currency"
        purchase = self.purchases.get(command.purchase_event_id)
        if purchase is None:
            return "unknown_purchase"
        if purchase.refunded_minor + command.amount_minor > purchase.amount_minor:
            return "exceeds_purchase"
        return None

    def _reverse_purchase(self, command: cmd.RecordRefund, clock: datetime) -> None:
        purchase = self.purchases[command.purchase_event_id]
        refunded_total = purchase.refunded_minor + command.amount_minor
        target = purchase.points * refunded_total // purchase.amount_minor
        points = target - purchase.reversed_points
        draws, shortfall = draw_points(self.lots, points, first_lot_id=purchase.lot_id)
        self._outcome(self.PointsReversed, clock, command,
                      purchase_event_id=purchase.event_id, purchase_year=purchase.year,
                      amount_minor=command.amount_minor, refunded_minor_total=refunded_total,
                      points=points, draws=draws, debt_created=shortfall)

    def _close_year(self, command: cmd.CloseYear, program: Program, clock: datetime) -> None:
        counted, net_points = annual_totals(self.purchases_in_year(command.year))
        eligible, bonus = annual_bonus(counted, net_points, program)
        self._outcome(self.YearClosed, clock, command, year=command.year, purchases=counted,
                      net_purchase_points=net_points, eligible=eligible, bonus_points=bonus)
        if bonus > 0:
            award = self._award(bonus, command.occurred_at, program)
            self._record(self.AnnualIncentiveAwarded, clock, source_event_id=command.event_id,
                         year=command.year, **award)


COMMAND_HANDLERS = {
    cmd.RecordPurchase: LoyaltyAccount.record_purchase,
    cmd.RecordRefund: LoyaltyAccount.record_refund,
    cmd.RedeemPoints: LoyaltyAccount.redeem_points,
    cmd.RewardBirthday: LoyaltyAccount.reward_birthday,
    cmd.RegisterReferral: LoyaltyAccount.register_referral,
    cmd.CreditReferrer: LoyaltyAccount.credit_referrer,
    cmd.CloseYear: LoyaltyAccount.close_year,
}

# Wire names of the ledger facts: published on ``loyalty.ledger`` as ``type``.
# They never change once published (STYLE 11); a new meaning gets a new name.
FACT_TYPES: dict[str, type] = {
    "account_opened": LoyaltyAccount.Opened,
    "points_expired": LoyaltyAccount.PointsExpired,
    "tier_changed": LoyaltyAccount.TierChanged,
    "points_earned": LoyaltyAccount.PointsEarned,
    "purchase_rejected": LoyaltyAccount.PurchaseRejected,
    "points_reversed": LoyaltyAccount.PointsReversed,
    "refund_rejected": LoyaltyAccount.RefundRejected,
    "points_redeemed": LoyaltyAccount.PointsRedeemed,
    "redemption_rejected": LoyaltyAccount.RedemptionRejected,
    "birthday_rewarded": LoyaltyAccount.BirthdayRewarded,
    "birthday_already_rewarded": LoyaltyAccount.BirthdayAlreadyRewarded,
    "referral_registered": LoyaltyAccount.ReferralRegistered,
    "referral_rejected": LoyaltyAccount.ReferralRejected,
    "referral_qualified": LoyaltyAccount.ReferralQualified,
    "referrer_credited": LoyaltyAccount.ReferrerCredited,
    "referrer_capped": LoyaltyAccount.ReferrerCapped,
    "year_closed": LoyaltyAccount.YearClosed,
    "year_already_closed": LoyaltyAccount.YearAlreadyClosed,
    "annual_incentive_awarded": LoyaltyAccount.AnnualIncentiveAwarded,
}
WIRE_NAMES: dict[type, str] = {fact_class: name for name, fact_class in FACT_TYPES.items()}


def fact_type(fact: object) -> str:
    """The wire name of a stored fact."""
    return WIRE_NAMES[type(fact)]
