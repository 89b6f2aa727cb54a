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
class HoldPoints(Command):
    """A till reserves ``points`` until ``expires_at`` (section 7); the hold's id is ``event_id``."""

    points: int
    reward_id: str
    expires_at: datetime
    cash_top_up_minor: int = 0


@dataclass(frozen=True, kw_only=True)
class CaptureHold(Command):
    """The sale completed: redeem ``points`` of the hold (None: all of it), release the rest."""

    hold_event_id: str
    points: int | None = None


@dataclass(frozen=True, kw_only=True)
class VoidHold(Command):
    """The sale was abandoned: release the whole hold."""

    hold_event_id: str


@dataclass(frozen=True, kw_only=True)
class CancelRedemption(Command):
    """Give back what a ``redemption`` or ``redemption_capture`` redeemed."""

    redemption_event_id: str


@dataclass(frozen=True, kw_only=True)
class CreditReferrer(Command):
    """Internal: the referrer's share of a qualified referral.

    ``member_id`` is the referrer; ``occurred_at`` is the qualifying purchase's.
    """

    referee_member_id: str
    qualifying_event_id: str


@dataclass(frozen=True, kw_only=True)
class EnrollMember(Command):
    """Section 13: enrollment. ``profile`` is the plaintext the application seals into
    ``sealed_profile`` (ciphertext) before the account decides; the domain reads only the latter."""

    channel: str | None = None
    store_id: str | None = None
    consents: dict
    profile: dict | None = None
    sealed_profile: str | None = None


@dataclass(frozen=True, kw_only=True)
class UpdateProfile(Command):
    """Section 13: profile fields to set (``None`` clears one) and consents, sealed like enrollment's."""

    profile: dict | None = None
    consents: dict | None = None
    sealed_profile: str | None = None


@dataclass(frozen=True, kw_only=True)
class EraseMember(Command):
    """Section 13: the right to erasure."""


@dataclass(frozen=True, kw_only=True)
class RecordNps(Command):
    """Section 13: a survey answer, ``score`` 0..10."""

    score: int
    touchpoint: str | None = None


PROFILE_BEARING = (EnrollMember, UpdateProfile)


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


def _redemption_hold(event: dict, common: dict) -> Command:
    return HoldPoints(**common, points=event["points"], reward_id=event["reward_id"],
                      expires_at=parse_timestamp(event["expires_at"]),
                      cash_top_up_minor=event.get("cash_top_up_minor", 0))


def _redemption_capture(event: dict, common: dict) -> Command:
    return CaptureHold(**common, hold_event_id=event["hold_event_id"], points=event.get("points"))


def _redemption_void(event: dict, common: dict) -> Command:
    return VoidHold(**common, hold_event_id=event["hold_event_id"])


def _redemption_cancel(event: dict, common: dict) -> Command:
    return CancelRedemption(**common, redemption_event_id=event["redemption_event_id"])


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


def _without_profile(event: dict, common: dict) -> dict:
    """A profile-bearing event's common fields, its fingerprint a hash of everything but
    the profile (``ledger.privacy`` keys it with the member's key, the profile included)."""
    return {**common, "fingerprint": fingerprint_of(
        {name: value for name, value in event.items() if name != "profile"})}


def _member_enrolled(event: dict, common: dict) -> Command:
    return EnrollMember(**_without_profile(event, common), channel=event.get("channel"), store_id=event.get("store_id"),
                        consents={"marketing": False, **event.get("consents", {})},
                        profile=event.get("profile"))


def _profile_updated(event: dict, common: dict) -> Command:
    return UpdateProfile(**_without_profile(event, common), profile=event["profile"], consents=event.get("consents"))


def _member_erased(event: dict, common: dict) -> Command:
    return EraseMember(**common)


def _nps_response(event: dict, common: dict) -> Command:
    return RecordNps(**common, score=event["score"], touchpoint=event.get("touchpoint"))


PARSERS = {
    "purchase": _purchase,
    "refund": _refund,
    "referral": _referral,
    "birthday": _birthday,
    "redemption": _redemption,
    "year_closed": _year_closed,
    "adjustment": _adjustment,
    "transfer": _transfer,
    "member_enrolled": _member_enrolled,
    "profile_updated": _profile_updated,
    "member_erased": _member_erased,
    "nps_response": _nps_response,
    "redemption_hold": _redemption_hold,
    "redemption_capture": _redemption_capture,
    "redemption_void": _redemption_void,
    "redemption_cancel": _redemption_cancel,
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
