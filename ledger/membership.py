"""Members, consent, erasure and surveys (CONTRACT section 13): the account's decisions.

The handlers of ``EnrollMember``, ``UpdateProfile``, ``EraseMember`` and
``RecordNps``, and ``decide_on_closed_account``, which decides every command
that reaches an erased (closed) account. They are the ``LoyaltyAccount``'s
commands like the ones in ``ledger.domain`` (which registers them in
``COMMAND_HANDLERS``), kept here so that the domain module stays readable;
they use the account's own decision steps and record its nested facts.

Profile fields never reach this module in the clear: the application seals
them into ``sealed_profile`` (ciphertext under the member's own key,
``ledger.privacy``) before the account decides, and the facts copy only that.

A closed account is frozen: a command is rejected ``account_closed`` with
the clock where it stands (no activation, expiry or tier evaluation); a
transfer return (``transfer-return:<event_id>``) that reaches a closed
sender is taken in and forfeited at once (section 10).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ledger import commands as cmd
from ledger import holds as hold_rules
from ledger.program import Program

if TYPE_CHECKING:
    from ledger.domain import LoyaltyAccount

ALREADY_ENROLLED = "already_enrolled"
NOT_ENROLLED = "not_enrolled"
ACCOUNT_CLOSED = "account_closed"
TRANSFER_RETURN_PREFIX = "transfer-return:"


def enroll_member(account: "LoyaltyAccount", command: cmd.EnrollMember, program: Program) -> None:
    clock = account._begin(command, program)
    if account.enrolled_at is not None:
        account._outcome(account.MemberEnrolledRejected, clock, command, reason=ALREADY_ENROLLED)
    else:
        account._outcome(account.MemberEnrolled, clock, command, channel=command.channel,
                         store_id=command.store_id, consents=dict(command.consents),
                         profile=command.sealed_profile)
    account._finish(command, program, clock)


def update_profile(account: "LoyaltyAccount", command: cmd.UpdateProfile, program: Program) -> None:
    clock = account._begin(command, program)
    if account.enrolled_at is None:
        account._outcome(account.ProfileUpdatedRejected, clock, command, reason=NOT_ENROLLED)
    else:
        consents = None if command.consents is None else dict(command.consents)
        account._outcome(account.ProfileUpdated, clock, command, profile=command.sealed_profile,
                         consents=consents)
    account._finish(command, program, clock)


def erase_member(account: "LoyaltyAccount", command: cmd.EraseMember, program: Program) -> None:
    """Close the account: open holds released first, then every lot's unspent points
    (pending included) forfeited; debt stays. The key goes with the fact (``ledger.privacy``)."""
    clock = account._begin(command, program)
    account._outcome(account.MemberErased, clock, command)
    for hold_id in hold_rules.hold_order(account.holds):
        account._release(hold_id, hold_rules.ERASED, account.holds[hold_id]["parts"], clock, command)
    lots = [[lot.lot_id, lot.remaining] for lot in account.lots if lot.remaining > 0]
    if lots:
        account._record(account.PointsForfeited, clock, source_event_id=command.event_id,
                        points=sum(points for _, points in lots), lots=lots)


def record_nps(account: "LoyaltyAccount", command: cmd.RecordNps, program: Program) -> None:
    clock = account._begin(command, program)
    account._outcome(account.NpsRecorded, clock, command, score=command.score,
                     touchpoint=command.touchpoint)
    account._finish(command, program, clock)


def decide_on_closed_account(account: "LoyaltyAccount", command: cmd.Command,
                             program: Program) -> None:
    """Any command on an erased account: ``<type>_rejected`` (``account_closed``) at the
    unmoved clock; a transfer return is taken in and forfeited at once."""
    clock = account.clock
    if isinstance(command, cmd.CreditTransfer) and command.event_id.startswith(TRANSFER_RETURN_PREFIX):
        _forfeit_return(account, command, clock)
        return
    fact_name, fields = CLOSED_REJECTIONS[type(command)]
    account._outcome(getattr(account, fact_name), clock, command, reason=ACCOUNT_CLOSED,
                     **fields(command, account))


def _forfeit_return(account: "LoyaltyAccount", command: cmd.CreditTransfer, clock: Any) -> None:
    points = sum(lot["points"] for lot in command.lots)
    account._outcome(account.PointsTransferredIn, clock, command,
                     from_member_id=command.from_member_id,
                     transfer_event_id=command.transfer_event_id, points=points, expired=0,
                     debt_paid=0, lots=[])
    account._record(account.PointsForfeited, clock, source_event_id=command.event_id,
                    points=points, lots=[])


def _none(command: Any, account: Any) -> dict:
    return {}


# The rejection fact (a nested class of ``LoyaltyAccount``) of each command on a closed
# account, and its fields besides ``reason``. Every command type needs a row
# (tests/ledger/test_members.py checks it against ``COMMAND_HANDLERS``).
CLOSED_REJECTIONS: dict[type, tuple[str, Callable[[Any, Any], dict]]] = {
    cmd.RecordPurchase: ("PurchaseRejected", lambda c, a: {
        "amount_minor": c.amount_minor, "currency": c.currency}),
    cmd.RecordRefund: ("RefundRejected", lambda c, a: {
        "purchase_event_id": c.purchase_event_id, "amount_minor": c.amount_minor,
        "currency": c.currency}),
    cmd.RedeemPoints: ("RedemptionRejected", lambda c, a: {
        "points": c.points, "balance": a.balance, "reward_id": c.reward_id}),
    cmd.RewardBirthday: ("BirthdayRejected", _none),
    cmd.RegisterReferral: ("ReferralRejected", lambda c, a: {
        "referrer_member_id": c.referrer_member_id}),
    cmd.CreditReferrer: ("ReferrerCreditRejected", lambda c, a: {
        "referee_member_id": c.referee_member_id, "qualifying_event_id": c.qualifying_event_id}),
    cmd.CloseYear: ("YearClosedRejected", lambda c, a: {"year": c.year}),
    cmd.AdjustPoints: ("AdjustmentRejected", lambda c, a: {
        "points": c.points, "reason_code": c.reason_code, "operator_id": c.operator_id,
        "balance": a.balance}),
    cmd.TransferPoints: ("TransferRejected", lambda c, a: {
        "to_member_id": c.to_member_id, "points": c.points, "balance": a.balance}),
    cmd.CreditTransfer: ("TransferCreditRejected", lambda c, a: {
        "from_member_id": c.from_member_id, "transfer_event_id": c.transfer_event_id,
        "points": sum(lot["points"] for lot in c.lots), "lots": [dict(lot) for lot in c.lots]}),
    cmd.EnrollMember: ("MemberEnrolledRejected", _none),
    cmd.UpdateProfile: ("ProfileUpdatedRejected", _none),
    cmd.EraseMember: ("MemberErasedRejected", _none),
    cmd.RecordNps: ("NpsResponseRejected", _none),
    cmd.HoldPoints: ("RedemptionHoldRejected", lambda c, a: {
        "points": c.points, "balance": a.balance, "reward_id": c.reward_id,
        "expires_at": c.expires_at}),
    cmd.CaptureHold: ("RedemptionCaptureRejected", lambda c, a: {
        "hold_event_id": c.hold_event_id, "points": c.points}),
    cmd.VoidHold: ("RedemptionVoidRejected", lambda c, a: {"hold_event_id": c.hold_event_id}),
    cmd.CancelRedemption: ("RedemptionCancelRejected", lambda c, a: {
        "redemption_event_id": c.redemption_event_id}),
}
