"""Inbound commands: one frozen dataclass per inbound event type, plus the
internal referrer and transfer credits (their events are built by ``ledger.credits``).

``command_from_event`` turns an inbound event (a dict that already passed its
JSON Schema) into a command. Every command carries the source ``event_id``
(the idempotency key), a ``fingerprint`` of the whole payload (so a redelivery
with the same id but a different payload is reported, not silently dropped:
STYLE 7) and, when it came from Kafka, its ``source_position``
(``topic/partition/offset``) so that auditors can trace every fact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import orjson

from ledger.basket import BasketLine, basket_lines
from ledger.calendar import parse_timestamp

FINGERPRINT_HEX_CHARS = 32
REFERRER_CREDIT_TYPE = "referrer_credit"
TRANSFER_CREDIT_TYPE = "transfer_credit"


@dataclass(frozen=True, kw_only=True)
class Command:
    event_id: str
    member_id: str
    occurred_at: datetime
    fingerprint: str
    source_position: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecordPurchase(Command):
    amount_minor: int
    currency: str
    store_id: str
    channel: str | None = None
    items: tuple[BasketLine, ...] = ()  # basket lines: what campaigns match (section 12)


@dataclass(frozen=True, kw_only=True)
class RecordRefund(Command):
    purchase_event_id: str
    amount_minor: int
    currency: str
    store_id: str


@dataclass(frozen=True, kw_only=True)
class RegisterReferral(Command):
    referrer_member_id: str


@dataclass(frozen=True, kw_only=True)
class RewardBirthday(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class RedeemPoints(Command):
    points: int
    reward_id: str
    cash_top_up_minor: int = 0


@dataclass(frozen=True, kw_only=True)
class CloseYear(Command):
    year: int


@dataclass(frozen=True, kw_only=True)
class AdjustPoints(Command):
    """Customer service adds (``points`` > 0) or takes away (< 0) points (section 9)."""

    points: int
    reason_code: str
    operator_id: str
    note: str | None = None
    allow_debt: bool = False


@dataclass(frozen=True, kw_only=True)
class TransferPoints(Command):
    """The sender (``member_id``) gives ``points`` to ``to_member_id`` (section 10)."""

    to_member_id: str
    points: int


@dataclass(frozen=True, kw_only=True)
class CreditTransfer(Command):
    """Internal: a transfer's points arriving at the receiver (``member_id``).

    ``lots`` are the sender's drawn lots in draw order: ``points``,
    ``occurred_at`` and ``expires_at`` each (a transfer never extends expiry).
    """

    from_member_id: str
    transfer_event_id: str
    lots: tuple[dict, ...]


@dataclass(frozen=True, kw_only=True)
class CreditReferrer(Command):
    """Internal: the referrer's share of a qualified referral.

    ``member_id`` is the referrer; ``occurred_at`` is the qualifying purchase's.
    """

    referee_member_id: str
    qualifying_event_id: str


def fingerprint_of(event: dict) -> str:
    """A stable hash of an event's whole payload (keys sorted)."""
    canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:FINGERPRINT_HEX_CHARS]


def _common(event: dict, source_position: str | None) -> dict:
    return {
        "event_id": event["event_id"],
        "member_id": event["member_id"],
        "occurred_at": parse_timestamp(event["occurred_at"]),
        "fingerprint": fingerprint_of(event),
        "source_position": source_position,
    }


def _purchase(event: dict, common: dict) -> Command:
    return RecordPurchase(
        **common,
        amount_minor=event["amount_minor"],
        currency=event["currency"],
        store_id=event["store_id"],
        channel=event.get("channel"),
        items=basket_lines(event.get("items")),
    )


def _refund(event: dict, common: dict) -> Command:
    return RecordRefund(
        **common,
        purchase_event_id=event["purchase_event_id"],
        amount_minor=event["amount_minor"],
        currency=event["currency"],
        store_id=event["store_id"],
    )


def _referral(event: dict, common: dict) -> Command:
    return RegisterReferral(**common, referrer_member_id=event["referrer_member_id"])


def _birthday(event: dict, common: dict) -> Command:
    return RewardBirthday(**common)


def _redemption(event: dict, common: dict) -> Command:
    return RedeemPoints(
        **common,
        points=event["points"],
        reward_id=event["reward_id"],
        cash_top_up_minor=event.get("cash_top_up_minor", 0),
    )


def _year_closed(event: dict, common: dict) -> Command:
    return CloseYear(**common, year=event["year"])


def _adjustment(event: dict, common: dict) -> Command:
    return AdjustPoints(
        **common,
        points=event["points"],
        reason_code=event["reason_code"],
        operator_id=event["operator_id"],
        note=event.get("note"),
        allow_debt=event.get("allow_debt", False),
    )


def _transfer(event: dict, common: dict) -> Command:
    return TransferPoints(**common, to_member_id=event["to_member_id"], points=event["points"])


def _transfer_credit(event: dict, common: dict) -> Command:
    lots = tuple({"points": lot["points"], "occurred_at": parse_timestamp(lot["occurred_at"]),
                  "expires_at": parse_timestamp(lot["expires_at"])} for lot in event["lots"])
    return CreditTransfer(**common, from_member_id=event["from_member_id"],
                          transfer_event_id=event["transfer_event_id"], lots=lots)


def _referrer_credit(event: dict, common: dict) -> Command:
    return CreditReferrer(
        **common,
        referee_member_id=event["referee_member_id"],
        qualifying_event_id=event["qualifying_event_id"],
    )


PARSERS = {
    "purchase": _purchase,
    "refund": _refund,
    "referral": _referral,
    "birthday": _birthday,
    "redemption": _redemption,
    "year_closed": _year_closed,
    "adjustment": _adjustment,
    "transfer": _transfer,
    REFERRER_CREDIT_TYPE: _referrer_credit,
    TRANSFER_CREDIT_TYPE: _transfer_credit,
}


class UnknownEventType(ValueError):
    """An inbound ``type`` this ledger does not know."""


def command_from_event(event: dict, source_position: str | None = None) -> Command:
    """Build the command for a schema-valid inbound event."""
    parser = PARSERS.get(event.get("type"))
    if parser is None:
        raise UnknownEventType(f"unknown event type {event.get('type')!r}")
    return parser(event, _common(event, source_position))
