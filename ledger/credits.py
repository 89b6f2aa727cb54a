"""Credits: what a fact of one account owes another account, as an internal command.

A credit is an internal inbound event whose ``member_id`` is the receiving
member: the outbox relay publishes it on the credits topic keyed by that
member (so the receiver's partition owner applies it, exactly once by its
``event_id``), and direct application (``LoyaltyLedger.apply_in_order``)
applies it right after the fact that owes it. ``CREDITS_OWED`` is the one
place that says which facts owe a credit, how it is built and which facts
of the receiver settle it (exactly one per credit: a redelivery is a
duplicate); today the referrer credit of ``referral_qualified``, settled by
``referrer_credited`` or ``referrer_capped``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.utils import get_topic

from ledger import commands as cmd
from ledger.calendar import format_timestamp
from ledger.domain import LoyaltyAccount

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


@dataclass(frozen=True)
class CreditRule:
    """How a fact's credit is built, and the receiver's facts that settle it."""

    build: Callable[[Any], dict]
    settled_by: tuple[type, ...]


CREDITS_OWED: dict[type, CreditRule] = {
    LoyaltyAccount.ReferralQualified: CreditRule(
        referrer_credit, (LoyaltyAccount.ReferrerCredited, LoyaltyAccount.ReferrerCapped)),
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
        counts = fact_log.count([get_topic(c) for c in (owing, *rule.settled_by)])
        if counts[get_topic(owing)] != sum(counts[get_topic(c)] for c in rule.settled_by):
            return False
    return True
