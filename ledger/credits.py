"""Credits: what a fact of one account owes another account, as an internal command.

A credit is an internal inbound event whose ``member_id`` is the receiving
member: the outbox relay publishes it on the credits topic keyed by that
member (so the receiver's partition owner applies it, exactly once by its
``event_id``), and direct application (``LoyaltyLedger.apply_in_order``)
applies it right after the fact that owes it. ``CREDITS_OWED`` is the one
place that says which facts owe a credit, how it is built and which facts
of the receiver settle it (exactly one per credit: a redelivery is a
duplicate): the referrer credit of ``referral_qualified``, settled by
``referrer_credited`` or ``referrer_capped``, and the transfer credit of
``points_transferred_out``, settled by ``points_transferred_in``, and the
return of a transfer credit that reached a closed account
(``transfer_credit_rejected``, section 13), settled by the sender's
``points_transferred_in``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.utils import get_topic

from ledger import commands as cmd
from ledger.calendar import format_timestamp
from ledger.domain import LoyaltyAccount
from ledger.membership import TRANSFER_RETURN_PREFIX

if TYPE_CHECKING:
    from ledger.log import FactLog

CREDIT_SCHEMA_VERSION = 1


def referrer_credit(fact: LoyaltyAccount.ReferralQualified) -> dict:
    """The referrer's credit for a qualified referee.

    Its ``event_id`` is derived from the referee (a referee qualifies once), so
    a redelivered credit is a duplicate on the referrer's account.
    """
    return {
        "type": cmd.REFERRER_CREDIT_TYPE,
        "schema_version": CREDIT_SCHEMA_VERSION,
        "event_id": f"referrer-credit:{fact.referee_member_id}",
        "member_id": fact.referrer_member_id,
        "occurred_at": format_timestamp(fact.qualifying_occurred_at),
        "referee_member_id": fact.referee_member_id,
        "qualifying_event_id": fact.qualifying_event_id,
    }


def transfer_credit(fact: LoyaltyAccount.PointsTransferredOut) -> dict:
    """The receiver's credit for a transfer: the points and their lots' dates.

    Its ``event_id`` is derived from the transfer's, and every field from the
    transfer's fact, so a redelivered credit is a duplicate on the receiver's
    account (exactly once in effect).
    """
    return _moving_lots(f"transfer-credit:{fact.source_event_id}", fact.to_member_id,
                        fact.member_id, fact.source_event_id, fact)


def transfer_return(fact: LoyaltyAccount.TransferCreditRejected) -> dict:
    """A transfer credit that reached a closed account goes back to its sender
    (section 10): the same lots, keyed by the sender, id ``transfer-return:<event_id>``."""
    return _moving_lots(f"{TRANSFER_RETURN_PREFIX}{fact.transfer_event_id}", fact.from_member_id,
                        fact.member_id, fact.transfer_event_id, fact)


def _moving_lots(event_id: str, to_member: str, from_member: str, transfer_event_id: str,
                 fact) -> dict:
    """A transfer credit (or return) of ``fact``'s lots, at ``fact``'s ``occurred_at``."""
    return {
        "type": cmd.TRANSFER_CREDIT_TYPE,
        "schema_version": CREDIT_SCHEMA_VERSION,
        "event_id": event_id,
        "member_id": to_member,
        "occurred_at": format_timestamp(fact.occurred_at),
        "from_member_id": from_member,
        "transfer_event_id": transfer_event_id,
        "lots": [{"points": lot["points"], "occurred_at": format_timestamp(lot["occurred_at"]),
                  "expires_at": format_timestamp(lot["expires_at"])} for lot in fact.lots],
    }


@dataclass(frozen=True)
class CreditRule:
    """How a fact's credit is built, and the receiver's facts that settle it."""

    build: Callable[[Any], dict]
    settled_by: tuple[type, ...]


CREDITS_OWED: dict[type, CreditRule] = {
    LoyaltyAccount.ReferralQualified: CreditRule(
        referrer_credit, (LoyaltyAccount.ReferrerCredited, LoyaltyAccount.ReferrerCapped,
                          LoyaltyAccount.ReferrerCreditRejected)),
    LoyaltyAccount.PointsTransferredOut: CreditRule(
        transfer_credit, (LoyaltyAccount.PointsTransferredIn,)),
    # A rejected transfer credit is settled by its return's ``points_transferred_in``: every
    # transfer ends in exactly one ``points_transferred_in`` (the credit's or the return's),
    # so the rule above already counts it and this one has nothing of its own to count.
    LoyaltyAccount.TransferCreditRejected: CreditRule(transfer_return, ()),
}


def credit_owed(fact: Any) -> dict | None:
    """The credit event ``fact`` owes another account, or None."""
    rule = CREDITS_OWED.get(type(fact))
    return None if rule is None else rule.build(fact)


def credit_commands(facts: Iterable[Any]) -> list[cmd.Command]:
    """The credit commands ``facts`` owe, in order."""
    return [cmd.command_from_event(credit) for fact in facts
            if (credit := credit_owed(fact)) is not None]


def credits_settled(fact_log: "FactLog") -> bool:
    """Every credit owed in ``fact_log`` has been applied to its receiver (one settling fact
    per owing fact): what ``loyalty process`` waits for."""
    for owing, rule in CREDITS_OWED.items():
        if not rule.settled_by:
            continue
        counts = fact_log.count([get_topic(c) for c in (owing, *rule.settled_by)])
        if counts[get_topic(owing)] != sum(counts[get_topic(c)] for c in rule.settled_by):
            return False
    return True
