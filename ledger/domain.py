"""The ``LoyaltyAccount`` aggregate: one member's points, lots, tier and history.

Commands decide, events record. Each command (``record_purchase``,
``record_refund``, ...) follows CONTRACT section 3 step by step: advance the
clock, activate pending lots (contract 2, section 8), expire, evaluate the
tier (``year_rollover``), apply the effect, expire again, evaluate the tier
(``spend`` / ``refund``). Contract 2's adjustments and transfers (sections 9,
10) are commands too; a transfer's credit reaches the receiver's account as
the internal ``CreditTransfer`` command. Section 7's holds, captures, voids and
cancelled redemptions are decided by ``ledger.holds``; open holds run out
right after the clock moves, before lots expire. ``decide`` runs a command and has
its outcome fact record the program version that decided it. Everything the rules
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

from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger import commands as cmd
from ledger import membership
from ledger import holds as hold_rules
from ledger.calendar import add_months, year_of
from ledger.campaign_budgets import BudgetBook
from ledger.campaigns import CampaignAward, MemberCampaignState, PurchaseTerms, campaign_awards
from ledger.program import Program
from ledger.rules import (
    Lot,
    PurchaseRecord,
    activating_lots,
    active_lots,
    annual_bonus,
    annual_totals,
    come_back,
    draw_points,
    expiring_lots,
    lifetime_spend,
    qualifying_spend,
)

MEMBER_NAMESPACE = uuid5(NAMESPACE_URL, "urn:loyalty-ledger:member")
CONTRACT_2_COUNTERS = (
    "lifetime_adjusted_in", "lifetime_adjusted_out", "lifetime_transferred_in",
    "lifetime_transferred_out", "lifetime_cancelled", "lifetime_forfeited", "held",
)


class EventIdConflict(Exception):
    """An ``event_id`` already applied with a different payload (not a duplicate)."""


def account_id(member_id: str) -> UUID:
    """The aggregate id of a member's account: stable, derived from the member id."""
    return uuid5(MEMBER_NAMESPACE, member_id)


def _apply_award(account: "LoyaltyAccount", fact) -> None:
    account.lifetime_earned += fact.points
    _apply_new_points(account, fact)


def _apply_new_points(account: "LoyaltyAccount", fact) -> None:
    """New points: ``debt_paid`` of them paid debt, the rest formed ``fact.lot``."""
    account.debt -= fact.debt_paid
    if fact.lot is not None:
        _add_lot(account, fact.lot, fact.source_event_id)


def _add_lot(account: "LoyaltyAccount", lot: dict, source_event_id: str) -> None:
    account.lots.append(Lot(**lot, remaining=lot["points"], source_event_id=source_event_id))
    account.next_lot_id = lot["lot_id"] + 1


def _apply_returns(account: "LoyaltyAccount", fact) -> None:
    """Points that came back: ``expired`` expired, ``debt_paid`` paid debt, ``returns``
    went back to their lots (a lot that had emptied is open again)."""
    account.lifetime_expired += fact.expired
    account.debt -= fact.debt_paid
    by_id = {lot.lot_id: lot for lot in account.lots}
    for part in fact.returns:
        lot = by_id.get(part["lot_id"])
        if lot is None:
            account.lots.append(hold_rules.returned_lot(part, part["points"]))
        else:
            lot.remaining += part["points"]
def _count_campaign_use(account: "LoyaltyAccount", campaign_id: str) -> None:
    account.campaign_uses[campaign_id] = account.campaign_uses.get(campaign_id, 0) + 1


def _count_campaign_uses(account: "LoyaltyAccount", lines: list[dict]) -> None:
    """``_count_campaign_use`` of every campaign line of a purchase, in one loop."""
    uses = account.campaign_uses
    for line in lines:
        campaign_id = line["campaign_id"]
        uses[campaign_id] = uses.get(campaign_id, 0) + 1


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
        """The one fact per applied inbound event that marks its ``event_id`` applied.

        Version 2 (contract 2, section 11) records ``program_version``, the
        program that decided it; a version-1 fact was decided by version 1.
        """

        occurred_at: datetime
        fingerprint: str
        source_position: str | None
        program_version: int

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state["program_version"] = 1

        def apply(self, account: "LoyaltyAccount") -> None:
            account.applied[self.source_event_id] = self.fingerprint

    class PointsExpired(Fact):
        points: int
        lots: list[list[int]]

        def apply(self, account: "LoyaltyAccount") -> None:
            account.lifetime_expired += self.points
            _apply_draws(account, self.lots)

    class PointsActivated(Fact):
        """Pending lots reached their activation time (section 8): each paid debt first."""

        points: int
        debt_paid: int
        lots: list[list[int]]

        def apply(self, account: "LoyaltyAccount") -> None:
            activated = {lot_id: paid for lot_id, _, paid in self.lots}
            for lot in account.lots:
                if lot.lot_id in activated:
                    lot.active_from = None
                    lot.remaining -= activated[lot.lot_id]
            account.debt -= self.debt_paid
            account.lots = [lot for lot in account.lots if lot.remaining > 0]

    class TierChanged(Fact):
        from_tier: str
        to_tier: str
        reason: str
        qualifying_spend_minor: int

        def apply(self, account: "LoyaltyAccount") -> None:
            account.tier = self.to_tier
            account.tier_since = self.timestamp

    class PointsEarned(Outcome):
        """A purchase's points: base plus ``campaigns`` (section 12: a line per campaign,
        ``campaign_id`` and ``points``); ``points``, the lot and the purchase record hold both.

        Version 3 records ``campaigns``; a fact of an earlier version had none.
        """

        year: int
        amount_minor: int
        store_id: str
        channel: str | None
        multiplier_pct: int
        points: int
        debt_paid: int
        lot: dict | None
        campaigns: list[dict]

        class_version = 3

        @staticmethod
        def upcast_v2_v3(state: dict) -> None:
            state["campaigns"] = []

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            _apply_award(account, self)
            if self.campaigns:
                _count_campaign_uses(account, self.campaigns)
            account.purchases[self.source_event_id] = PurchaseRecord(
                event_id=self.source_event_id, occurred_at=self.occurred_at, year=self.year,
                amount_minor=self.amount_minor, points=self.points,
                lot_id=self.lot["lot_id"] if self.lot else None,
            )
            year_key = str(self.year)
            account.spend_by_year[year_key] = account.spend_by_year.get(year_key, 0) + self.amount_minor

    class RewardGranted(Fact):
        """A campaign's gift (``items_min`` with ``reward_id``): 0 points, the till or CRM honours it."""

        campaign_id: str
        reward_id: str
        points: int
        amount_minor: int  # the purchase's, for the campaign's qualifying spend

        def apply(self, account: "LoyaltyAccount") -> None:
            _count_campaign_use(account, self.campaign_id)

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
        """A redemption's points left its ``draws``; a capture's (version 3:
        ``hold_event_id``, section 7) left the hold, which closes."""

        points: int
        reward_id: str
        cash_top_up_minor: int
        draws: list[list[int]]
        hold_event_id: str | None

        class_version = 3

        @staticmethod
        def upcast_v2_v3(state: dict) -> None:
            state["hold_event_id"] = None

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.lifetime_redeemed += self.points
            if self.hold_event_id is None:
                parts = hold_rules.lot_parts(account.lots, self.draws)
                _apply_draws(account, self.draws)
            else:
                hold = account.holds.pop(self.hold_event_id)
                parts, _ = hold_rules.split_parts(hold["parts"], self.points)
                account.held -= self.points
            account.redemptions[self.source_event_id] = parts

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

    class PointsAdjusted(Outcome):
        """Section 9: positive points pay debt then form ``lot``; negative ones are ``draws``."""

        points: int
        reason_code: str
        operator_id: str
        note: str | None
        allow_debt: bool
        debt_paid: int
        lot: dict | None
        draws: list[list[int]]
        debt_created: int

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            if self.points > 0:
                account.lifetime_adjusted_in += self.points
                _apply_new_points(account, self)
            else:
                account.lifetime_adjusted_out -= self.points
                _apply_draws(account, self.draws)
                account.debt += self.debt_created

    class AdjustmentRejected(Outcome):
        reason: str
        points: int
        reason_code: str
        operator_id: str
        balance: int

    class PointsTransferredOut(Outcome):
        """Section 10, the sender's side: ``lots`` drawn (id, points, dates), oldest first."""

        to_member_id: str
        year: int
        points: int
        lots: list[dict]

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.lifetime_transferred_out += self.points
            _apply_draws(account, [[lot["lot_id"], lot["points"]] for lot in self.lots])
            year_key = str(self.year)
            account.transferred_by_year[year_key] = (
                account.transferred_by_year.get(year_key, 0) + self.points)

    class TransferRejected(Outcome):
        reason: str
        to_member_id: str
        points: int
        balance: int

    class PointsTransferredIn(Outcome):
        """Section 10, the receiver's side: past-expiry parts expired at once, the rest
        paid ``debt_paid`` and formed ``lots`` with the sender's dates."""

        from_member_id: str
        transfer_event_id: str
        points: int
        expired: int
        debt_paid: int
        lots: list[dict]

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.lifetime_transferred_in += self.points
            account.lifetime_expired += self.expired
            account.debt -= self.debt_paid
            for lot in self.lots:
                _add_lot(account, lot, self.source_event_id)

    class PointsHeld(Outcome):
        """Section 7: ``parts`` of lots (``ledger.holds``) left for a hold until ``expires_at``."""

        points: int
        reward_id: str
        cash_top_up_minor: int
        expires_at: datetime
        parts: list[dict]

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.held += self.points
            _apply_draws(account, [[part["lot_id"], part["points"]] for part in self.parts])
            account.holds[self.source_event_id] = {
                "points": self.points, "reward_id": self.reward_id,
                "cash_top_up_minor": self.cash_top_up_minor, "expires_at": self.expires_at,
                "sequence": self.originator_version, "parts": self.parts}

    class RedemptionHoldRejected(Outcome):
        reason: str
        points: int
        balance: int
        reward_id: str
        expires_at: datetime

    class HoldReleased(Outcome):
        """A hold's ``points`` came back (``reason``: ``partial_capture``, ``voided`` or
        ``expired``) by contract 2's rule: ``expired``, ``debt_paid``, ``returns`` to lots.

        It records its source event like an outcome, but only a void's release is
        that event's outcome (``is_outcome``): the others come before or after it.
        """

        hold_event_id: str
        reason: str
        points: int
        expired: int
        debt_paid: int
        returns: list[dict]

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.held -= self.points
            account.holds.pop(self.hold_event_id, None)
            _apply_returns(account, self)

    class RedemptionCaptureRejected(Outcome):
        reason: str
        hold_event_id: str
        points: int | None

    class RedemptionVoidRejected(Outcome):
        reason: str
        hold_event_id: str

    class RedemptionCancelled(Outcome):
        """The points of ``redemption_event_id`` came back by contract 2's rule."""

        redemption_event_id: str
        points: int
        expired: int
        debt_paid: int
        returns: list[dict]

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.lifetime_cancelled += self.points
            del account.redemptions[self.redemption_event_id]
            account.cancelled_redemptions.append(self.redemption_event_id)
            _apply_returns(account, self)

    class RedemptionCancelRejected(Outcome):
        reason: str
        redemption_event_id: str

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

    # ------------------------------------- members, consent, erasure (section 13)
    # Their handlers live in ``ledger.membership``; profile fields only ever
    # arrive here as ciphertext (``sealed_profile``), sealed by the application.

    class MemberEnrolled(Outcome):
        """Enrollment: ``profile`` is ciphertext (or None), ``consents`` in the clear."""

        channel: str | None
        store_id: str | None
        consents: dict
        profile: str | None

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.enrolled_at = self.occurred_at
            account.consents = dict(self.consents)

    class MemberEnrolledRejected(Outcome):
        reason: str

    class ProfileUpdated(Outcome):
        """Profile fields set or cleared (``profile``: ciphertext), consents changed."""

        profile: str | None
        consents: dict | None

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            if self.consents:
                account.consents = {**account.consents, **self.consents}

    class ProfileUpdatedRejected(Outcome):
        reason: str

    class MemberErased(Outcome):
        """The right to erasure: the account is closed (frozen) from here on."""

        def apply(self, account: "LoyaltyAccount") -> None:
            super().apply(account)
            account.erased_at = self.occurred_at

    class MemberErasedRejected(Outcome):
        reason: str

    class PointsForfeited(Fact):
        """Unspent points of ``lots`` (pending ones included) forfeited at erasure, or a
        return that reached a closed account (``lots`` empty)."""

        points: int
        lots: list[list[int]]

        def apply(self, account: "LoyaltyAccount") -> None:
            account.lifetime_forfeited += self.points
            _apply_draws(account, self.lots)

    class NpsRecorded(Outcome):
        score: int
        touchpoint: str | None

    class NpsResponseRejected(Outcome):
        reason: str

    class BirthdayRejected(Outcome):
        reason: str

    class YearClosedRejected(Outcome):
        reason: str
        year: int

    class ReferrerCreditRejected(Outcome):
        reason: str
        referee_member_id: str
        qualifying_event_id: str

    class TransferCreditRejected(Outcome):
        """A transfer credit that reached a closed account: its ``lots`` go back to the sender."""

        reason: str
        from_member_id: str
        transfer_event_id: str
        points: int
        lots: list[dict]

    # ------------------------------------------------------------------ state

    # Version 2 (contract 2): the counters of sections 8 to 10. A version-1
    # snapshot had none of them, so each starts at 0. Version 3 (section 7):
    # open holds and the redemptions that may be cancelled. Version 4 (section
    # 12): ``campaign_uses``, the times each campaign benefited the member.
    class_version = 4

    @staticmethod
    def upcast_v1_v2(state: dict) -> None:
        for counter in CONTRACT_2_COUNTERS:
            state.setdefault(counter, 0)
        state.setdefault("transferred_by_year", {})

    # Section 13's state. Class-level defaults stand in for an upcaster: a
    # snapshot taken before members existed has none of these attributes.
    enrolled_at = None  # datetime | None
    erased_at = None  # datetime | None: a closed (frozen) account
    consents = {"marketing": False}  # replaced, never mutated in place

    @staticmethod
    def upcast_v2_v3(state: dict) -> None:
        state.setdefault("holds", {})
        state.setdefault("redemptions", {})
        state.setdefault("cancelled_redemptions", [])

    @staticmethod
    def upcast_v3_v4(state: dict) -> None:
        state.setdefault("campaign_uses", {})

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
        self.lifetime_adjusted_in = 0
        self.lifetime_adjusted_out = 0
        self.lifetime_transferred_in = 0
        self.lifetime_transferred_out = 0
        self.lifetime_cancelled = 0
        self.lifetime_forfeited = 0
        self.held = 0
        self.transferred_by_year: dict[str, int] = {}
        self.holds: dict[str, dict] = {}
        self.redemptions: dict[str, list[dict]] = {}
        self.cancelled_redemptions: list[str] = []
        self.applied: dict[str, str] = {}
        self.purchases: dict[str, PurchaseRecord] = {}
        self.spend_by_year: dict[str, int] = {}
        self.birthday_years: list[int] = []
        self.referrer_member_id: str | None = None
        self.referral_qualified = False
        self.referrer_bonuses_by_year: dict[str, int] = {}
        self.closed_years: list[int] = []
        self.campaign_uses: dict[str, int] = {}

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
        """Unspent points of active lots minus debt: what the member can spend now."""
        return sum(lot.remaining for lot in self.lots if lot.active_from is None) - self.debt

    @property
    def pending(self) -> int:
        """Unspent points of lots not active yet (section 8)."""
        return sum(lot.remaining for lot in self.lots if lot.active_from is not None)

    def check_invariant(self) -> None:
        """Programmer invariant (contract 2): balance + held + pending = what came in - what left."""
        came_in = (self.lifetime_earned + self.lifetime_adjusted_in
                   + self.lifetime_transferred_in + self.lifetime_cancelled)
        left = (self.lifetime_reversed + self.lifetime_redeemed + self.lifetime_expired
                + self.lifetime_adjusted_out + self.lifetime_transferred_out
                + self.lifetime_forfeited)
        parts = self.balance + self.held + self.pending
        assert parts == came_in - left, (self.member_id, parts, came_in - left)
        assert self.held == sum(hold["points"] for hold in self.holds.values()), "held = open holds"
        active = [lot for lot in self.lots if lot.active_from is None]
        assert self.debt == 0 or not active, "debt and active lots never coexist"

    def decide(self, command: cmd.Command, program: Program,
               budgets: BudgetBook | None = None) -> None:
        """Run the command's handler; its outcome fact records ``program.version``.

        ``budgets`` is what the campaign budgets have left (section 12); a
        purchase spends from it. Without one every budget is whole.
        """
        self._program_version = program.version
        handler = COMMAND_HANDLERS[type(command)]
        if self.erased_at is not None:  # a closed account is frozen (section 13)
            handler = membership.decide_on_closed_account
        self._budgets = budgets if budgets is not None else BudgetBook()
        try:
            handler(self, command, program)
        finally:
            del self._program_version, self._budgets

    def has_applied(self, command: cmd.Command) -> bool:
        """True for a duplicate; EventIdConflict if the id came with another payload."""
        fingerprint = self.applied.get(command.event_id)
        if fingerprint is None:
            return False
        if fingerprint != command.fingerprint and self.erased_at is None:
            # (A closed account's payloads can no longer be compared: its key is gone.)
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
            draws, _ = draw_points(active_lots(self.lots), command.points)
            self._outcome(self.PointsRedeemed, clock, command, points=command.points,
                          reward_id=command.reward_id,
                          cash_top_up_minor=command.cash_top_up_minor, draws=draws,
                          hold_event_id=None)
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

    def adjust_points(self, command: cmd.AdjustPoints, program: Program) -> None:
        clock = self._begin(command, program)
        reason = self._adjustment_rejection(command, program)
        common = dict(points=command.points, reason_code=command.reason_code,
                      operator_id=command.operator_id)
        if reason is not None:
            self._outcome(self.AdjustmentRejected, clock, command, reason=reason,
                          balance=self.balance, **common)
        else:
            self._outcome(self.PointsAdjusted, clock, command, note=command.note,
                          allow_debt=command.allow_debt, **common,
                          **self._adjustment_effect(command, program))
        self._finish(command, program, clock)

    def transfer_points(self, command: cmd.TransferPoints, program: Program) -> None:
        clock = self._begin(command, program)
        reason = self._transfer_rejection(command, program)
        if reason is not None:
            self._outcome(self.TransferRejected, clock, command, reason=reason,
                          to_member_id=command.to_member_id, points=command.points,
                          balance=self.balance)
        else:
            self._outcome(self.PointsTransferredOut, clock, command,
                          to_member_id=command.to_member_id, year=year_of(command.occurred_at),
                          points=command.points, lots=self._transfer_draws(command.points))
        self._finish(command, program, clock)

    def credit_transfer(self, command: cmd.CreditTransfer, program: Program) -> None:
        clock = self._begin(command, program)
        self._outcome(self.PointsTransferredIn, clock, command,
                      from_member_id=command.from_member_id,
                      transfer_event_id=command.transfer_event_id,
                      **self._arriving_lots(command.lots, clock))
        self._finish(command, program, clock)

    def hold_points(self, command: cmd.HoldPoints, program: Program) -> None:
        clock = self._begin(command, program)
        balance = self.balance
        reason = hold_rules.hold_rejection(command, clock, balance, program.hold_duration_minutes_max)
        common = dict(points=command.points, reward_id=command.reward_id)
        if reason is not None:
            self._outcome(self.RedemptionHoldRejected, clock, command, reason=reason,
                          balance=balance, expires_at=command.expires_at, **common)
        else:
            draws, _ = draw_points(active_lots(self.lots), command.points)
            self._outcome(self.PointsHeld, clock, command, expires_at=command.expires_at,
                          cash_top_up_minor=command.cash_top_up_minor,
                          parts=hold_rules.lot_parts(self.lots, draws), **common)
        self._finish(command, program, clock)

    def capture_hold(self, command: cmd.CaptureHold, program: Program) -> None:
        clock = self._begin(command, program)
        reason = hold_rules.capture_rejection(self.holds, command)
        if reason is not None:
            self._outcome(self.RedemptionCaptureRejected, clock, command, reason=reason,
                          hold_event_id=command.hold_event_id, points=command.points)
        else:
            hold = self.holds[command.hold_event_id]
            points = hold["points"] if command.points is None else command.points
            taken, rest = hold_rules.split_parts(hold["parts"], points)
            self._outcome(self.PointsRedeemed, clock, command, points=points,
                          reward_id=hold["reward_id"], cash_top_up_minor=hold["cash_top_up_minor"],
                          draws=[[part["lot_id"], part["points"]] for part in taken],
                          hold_event_id=command.hold_event_id)
            if rest:
                self._release(command.hold_event_id, hold_rules.PARTIAL_CAPTURE, rest, clock,
                              command)
        self._finish(command, program, clock)

    def void_hold(self, command: cmd.VoidHold, program: Program) -> None:
        clock = self._begin(command, program)
        hold = self.holds.get(command.hold_event_id)
        if hold is None:
            self._outcome(self.RedemptionVoidRejected, clock, command,
                          reason=hold_rules.UNKNOWN_HOLD, hold_event_id=command.hold_event_id)
        else:
            self._release(command.hold_event_id, hold_rules.VOIDED, hold["parts"], clock, command)
        self._finish(command, program, clock)

    def cancel_redemption(self, command: cmd.CancelRedemption, program: Program) -> None:
        clock = self._begin(command, program)
        reason = hold_rules.cancel_rejection(self.redemptions, self.cancelled_redemptions, command)
        if reason is not None:
            self._outcome(self.RedemptionCancelRejected, clock, command, reason=reason,
                          redemption_event_id=command.redemption_event_id)
        else:
            self._outcome(self.RedemptionCancelled, clock, command,
                          redemption_event_id=command.redemption_event_id,
                          **self._coming_back(self.redemptions[command.redemption_event_id], clock))
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
        """Advance the clock, activate and expire what is due, re-evaluate the tier (year rollover)."""
        clock = max(self.clock, command.occurred_at)
        self._activate(clock, command)
        for hold_id in hold_rules.due_holds(self.holds, clock):
            self._release(hold_id, hold_rules.EXPIRED, self.holds[hold_id]["parts"], clock, command)
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
                     source_position=command.source_position,
                     program_version=self._program_version, **fields)

    def _activate(self, clock: datetime, command: cmd.Command) -> None:
        lots = activating_lots(self.lots, clock, self.debt)
        if lots:
            self._record(self.PointsActivated, clock, source_event_id=command.event_id,
                         points=sum(points for _, points, _ in lots),
                         debt_paid=sum(paid for _, _, paid in lots), lots=lots)

    def _release(self, hold_id: str, reason: str, parts: list[dict], clock: datetime,
                 command: cmd.Command) -> None:
        """A hold's ``parts`` come back (``hold_released``) and the hold closes."""
        self._outcome(self.HoldReleased, clock, command, hold_event_id=hold_id, reason=reason,
                      **self._coming_back(parts, clock))

    def _coming_back(self, parts: list[dict], clock: datetime) -> dict:
        """Contract 2's rule for points that come back: past expiry, debt, then their lots."""
        expired, debt_paid, kept = come_back(parts, clock, self.debt)
        return {"points": sum(part["points"] for part in parts), "expired": expired,
                "debt_paid": debt_paid, "returns": [{**part, "points": points} for part, points in kept]}

    def _expire(self, clock: datetime, command: cmd.Command) -> None:
        lots = expiring_lots(self.lots, clock)
        if lots:
            points = sum(unspent for _, unspent in lots)
            self._record(self.PointsExpired, clock, source_event_id=command.event_id,
                         points=points, lots=lots)

    def _evaluate_tier(self, clock: datetime, program: Program, reason: str,
                       command: cmd.Command) -> None:
        tier, spend = self._tier_at(clock, program)
        if tier != self.tier:
            self._record(self.TierChanged, clock, source_event_id=command.event_id,
                         from_tier=self.tier, to_tier=tier, reason=reason,
                         qualifying_spend_minor=spend)

    def _tier_at(self, clock: datetime, program: Program) -> tuple[str, int]:
        """The tier the program gives at ``clock`` and the spend it judged."""
        if not program.lifetime_tiers:
            spend = qualifying_spend(self.spend_by_year, clock)
            return program.tier_for_spend(spend).name, spend
        spend = lifetime_spend(self.spend_by_year)
        tier = program.tier_for_spend(spend).name
        if program.tier_rank(tier) < program.tier_rank(self.tier):
            return self.tier, spend  # an accumulating tier never drops
        return tier, spend

    def _award(self, points: int, lot_time: datetime, program: Program,
               active_from: datetime | None = None) -> dict:
        """New points pay debt first; only the rest forms a lot dated ``lot_time``.

        A pending lot (``active_from`` given) pays no debt: it pays on activation.
        """
        debt_paid = 0 if active_from is not None else min(points, self.debt)
        rest = points - debt_paid
        lot = None
        if rest > 0:
            lot = {"lot_id": self.next_lot_id, "points": rest, "occurred_at": lot_time,
                   "expires_at": add_months(lot_time, program.expiry_months)}
            if active_from is not None:
                lot["active_from"] = active_from
        return {"points": points, "debt_paid": debt_paid, "lot": lot}

    @staticmethod
    def _activation_time(command: cmd.RecordPurchase, program: Program,
                         clock: datetime) -> datetime | None:
        """A purchase's lot is pending until occurred_at + pending_days, unless that has passed."""
        active_from = command.occurred_at + timedelta(days=program.pending_days)
        return active_from if active_from > clock else None

    def _earn_purchase(self, command: cmd.RecordPurchase, program: Program,
                       clock: datetime) -> None:
        multiplier = program.tier(self.tier).multiplier_pct
        points = program.purchase_points(command.amount_minor, multiplier)
        awards = self._campaign_awards(command, program)
        lines = [{"campaign_id": a.campaign_id, "points": a.points} for a in awards
                 if a.reward_id is None] if awards else []
        campaign_points = sum([line["points"] for line in lines]) if lines else 0
        award = self._award(points + campaign_points, command.occurred_at,
                            program, self._activation_time(command, program, clock))
        self._outcome(self.PointsEarned, clock, command, year=year_of(command.occurred_at),
                      amount_minor=command.amount_minor, store_id=command.store_id,
                      channel=command.channel, multiplier_pct=multiplier, campaigns=lines,
                      **award)
        if len(lines) < len(awards):  # gifts
            self._grant_rewards(command, awards, clock)

    def _grant_rewards(self, command: cmd.RecordPurchase, awards: list[CampaignAward],
                       clock: datetime) -> None:
        """A ``RewardGranted`` fact for each gift among a purchase's ``awards``."""
        for gift in (a for a in awards if a.reward_id is not None):
            self._record(self.RewardGranted, clock, source_event_id=command.event_id,
                         campaign_id=gift.campaign_id, reward_id=gift.reward_id, points=0,
                         amount_minor=command.amount_minor)

    def _campaign_awards(self, command: cmd.RecordPurchase,
                         program: Program) -> list[CampaignAward]:
        """Section 12's campaign lines at the tier before the purchase; budgets spent."""
        if not program.campaigns:
            return []
        # positional: a named tuple built from keywords costs about 0.8 us, from positions 0.3
        terms = PurchaseTerms(command.occurred_at, command.amount_minor, command.store_id,
                              command.channel, command.items)
        member = MemberCampaignState(self.tier, self.campaign_uses)
        awards = campaign_awards(program, member, terms, self._budgets.lefts(program))
        budgeted = program.campaign_plan.budgets
        for award in awards:
            if award.campaign_id in budgeted:
                self._budgets.spend(award.campaign_id, award.points)
        return awards

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
        own_or_active = [lot for lot in self.lots
                         if lot.active_from is None or lot.lot_id == purchase.lot_id]
        draws, shortfall = draw_points(own_or_active, points, first_lot_id=purchase.lot_id)
        self._outcome(self.PointsReversed, clock, command,
                      purchase_event_id=purchase.event_id, purchase_year=purchase.year,
                      amount_minor=command.amount_minor, refunded_minor_total=refunded_total,
                      points=points, draws=draws, debt_created=shortfall)

    def _adjustment_rejection(self, command: cmd.AdjustPoints, program: Program) -> str | None:
        if abs(command.points) > program.adjustment_points_max:
            return "adjustment_too_large"
        if command.reason_code not in program.adjustment_reason_codes:
            return "unknown_reason_code"
        if command.points < 0 and not command.allow_debt and self.balance < -command.points:
            return "insufficient_points"
        return None

    def _adjustment_effect(self, command: cmd.AdjustPoints, program: Program) -> dict:
        """Positive: an award (debt first, then an active lot). Negative: drawn, shortfall as debt."""
        if command.points > 0:
            award = self._award(command.points, command.occurred_at, program)
            return {"debt_paid": award["debt_paid"], "lot": award["lot"], "draws": [],
                    "debt_created": 0}
        draws, shortfall = draw_points(active_lots(self.lots), -command.points)
        return {"debt_paid": 0, "lot": None, "draws": draws, "debt_created": shortfall}

    def _transfer_rejection(self, command: cmd.TransferPoints, program: Program) -> str | None:
        if command.to_member_id == self.member_id:
            return "self_transfer"
        this_year = self.transferred_by_year.get(str(year_of(command.occurred_at)), 0)
        if this_year + command.points > program.transfer_points_per_year_max:
            return "transfer_limit"
        if self.balance < command.points:
            return "insufficient_points"
        return None

    def _transfer_draws(self, points: int) -> list[dict]:
        """The active lots a transfer takes, oldest first, with the dates the receiver keeps."""
        by_id = {lot.lot_id: lot for lot in self.lots}
        draws, _ = draw_points(active_lots(self.lots), points)
        return [{"lot_id": lot_id, "points": taken, "occurred_at": by_id[lot_id].occurred_at,
                 "expires_at": by_id[lot_id].expires_at} for lot_id, taken in draws]

    def _arriving_lots(self, lots: tuple[dict, ...], clock: datetime) -> dict:
        """Contract 2's rule for arriving points, lot by lot in draw order: a part
        past expiry expires, the rest pays debt first, then forms a lot keeping its dates."""
        expired, debt_paid, kept = come_back(lots, clock, self.debt)
        created = [{"lot_id": self.next_lot_id + index, "points": points,
                    "occurred_at": lot["occurred_at"], "expires_at": lot["expires_at"]}
                   for index, (lot, points) in enumerate(kept)]
        return {"points": sum(lot["points"] for lot in lots), "expired": expired,
                "debt_paid": debt_paid, "lots": created}

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
    cmd.AdjustPoints: LoyaltyAccount.adjust_points,
    cmd.TransferPoints: LoyaltyAccount.transfer_points,
    cmd.CreditTransfer: LoyaltyAccount.credit_transfer,
    cmd.EnrollMember: membership.enroll_member,
    cmd.UpdateProfile: membership.update_profile,
    cmd.EraseMember: membership.erase_member,
    cmd.RecordNps: membership.record_nps,
    cmd.HoldPoints: LoyaltyAccount.hold_points,
    cmd.CaptureHold: LoyaltyAccount.capture_hold,
    cmd.VoidHold: LoyaltyAccount.void_hold,
    cmd.CancelRedemption: LoyaltyAccount.cancel_redemption,
}

# Wire names of the ledger facts: published on ``loyalty.ledger`` as ``type``.
# They never change once published (STYLE 11); a new meaning gets a new name.
FACT_TYPES: dict[str, type] = {
    "account_opened": LoyaltyAccount.Opened,
    "points_expired": LoyaltyAccount.PointsExpired,
    "points_activated": LoyaltyAccount.PointsActivated,
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
    "points_adjusted": LoyaltyAccount.PointsAdjusted,
    "adjustment_rejected": LoyaltyAccount.AdjustmentRejected,
    "points_transferred_out": LoyaltyAccount.PointsTransferredOut,
    "transfer_rejected": LoyaltyAccount.TransferRejected,
    "points_transferred_in": LoyaltyAccount.PointsTransferredIn,
    "member_enrolled": LoyaltyAccount.MemberEnrolled,
    "member_enrolled_rejected": LoyaltyAccount.MemberEnrolledRejected,
    "profile_updated": LoyaltyAccount.ProfileUpdated,
    "profile_updated_rejected": LoyaltyAccount.ProfileUpdatedRejected,
    "member_erased": LoyaltyAccount.MemberErased,
    "member_erased_rejected": LoyaltyAccount.MemberErasedRejected,
    "points_forfeited": LoyaltyAccount.PointsForfeited,
    "nps_recorded": LoyaltyAccount.NpsRecorded,
    "nps_response_rejected": LoyaltyAccount.NpsResponseRejected,
    "birthday_rejected": LoyaltyAccount.BirthdayRejected,
    "year_closed_rejected": LoyaltyAccount.YearClosedRejected,
    "referrer_credit_rejected": LoyaltyAccount.ReferrerCreditRejected,
    "transfer_credit_rejected": LoyaltyAccount.TransferCreditRejected,
    "points_held": LoyaltyAccount.PointsHeld,
    "redemption_hold_rejected": LoyaltyAccount.RedemptionHoldRejected,
    "hold_released": LoyaltyAccount.HoldReleased,
    "redemption_capture_rejected": LoyaltyAccount.RedemptionCaptureRejected,
    "redemption_void_rejected": LoyaltyAccount.RedemptionVoidRejected,
    "redemption_cancelled": LoyaltyAccount.RedemptionCancelled,
    "redemption_cancel_rejected": LoyaltyAccount.RedemptionCancelRejected,
    "reward_granted": LoyaltyAccount.RewardGranted,
}
WIRE_NAMES: dict[type, str] = {fact_class: name for name, fact_class in FACT_TYPES.items()}


def is_outcome(fact: object) -> bool:
    """The one fact that marks its source event applied: an ``Outcome``, except a
    ``hold_released`` that a capture or the clock caused (only a void's is its outcome)."""
    if isinstance(fact, LoyaltyAccount.HoldReleased):
        return fact.reason == hold_rules.VOIDED
    return isinstance(fact, LoyaltyAccount.Outcome)


def fact_type(fact: object) -> str:
    """The wire name of a stored fact."""
    return WIRE_NAMES[type(fact)]
