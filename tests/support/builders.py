"""Builders for inbound events in the contract's wire form (CONTRACT section 2)."""

from __future__ import annotations

import itertools

from ledger.commands import Command, command_from_event

_ids = itertools.count(1)


def _event(kind: str, member: str, at: str, event_id: str | None, **fields) -> dict:
    return {
        "type": kind,
        "schema_version": 1,
        "event_id": event_id or f"{kind}-{next(_ids)}",
        "member_id": member,
        "occurred_at": at,
        **fields,
    }


def purchase(member: str, at: str, amount: int, *, event_id: str | None = None,
             currency: str = "EUR", store: str = "store-1") -> dict:
    return _event("purchase", member, at, event_id, amount_minor=amount,
                  currency=currency, store_id=store)


def refund(member: str, at: str, purchase_event_id: str, amount: int, *,
           event_id: str | None = None, currency: str = "EUR") -> dict:
    return _event("refund", member, at, event_id, purchase_event_id=purchase_event_id,
                  amount_minor=amount, currency=currency, store_id="store-1")


def redemption(member: str, at: str, points: int, *, event_id: str | None = None) -> dict:
    return _event("redemption", member, at, event_id, points=points, reward_id="reward-1")


def birthday(member: str, at: str, *, event_id: str | None = None) -> dict:
    return _event("birthday", member, at, event_id)


def referral(member: str, at: str, referrer: str, *, event_id: str | None = None) -> dict:
    return _event("referral", member, at, event_id, referrer_member_id=referrer)


def year_closed(member: str, at: str, year: int, *, event_id: str | None = None) -> dict:
    return _event("year_closed", member, at, event_id, year=year)


def adjustment(member: str, at: str, points: int, *, reason_code: str = "goodwill",
               operator: str = "cs-1", event_id: str | None = None, **optional) -> dict:
    return _event("adjustment", member, at, event_id, points=points, reason_code=reason_code,
                  operator_id=operator, **optional)


def transfer(member: str, at: str, to_member: str, points: int, *,
             event_id: str | None = None) -> dict:
    return _event("transfer", member, at, event_id, to_member_id=to_member, points=points)


def hold(member: str, at: str, points: int, expires_at: str, *, event_id: str | None = None,
         **optional) -> dict:
    return _event("redemption_hold", member, at, event_id, points=points, reward_id="reward-1",
                  expires_at=expires_at, **optional)


def capture(member: str, at: str, hold_event_id: str, points: int | None = None, *,
            event_id: str | None = None) -> dict:
    some = {} if points is None else {"points": points}
    return _event("redemption_capture", member, at, event_id, hold_event_id=hold_event_id, **some)


def void(member: str, at: str, hold_event_id: str, *, event_id: str | None = None) -> dict:
    return _event("redemption_void", member, at, event_id, hold_event_id=hold_event_id)


def cancel(member: str, at: str, redemption_event_id: str, *, event_id: str | None = None) -> dict:
    return _event("redemption_cancel", member, at, event_id, redemption_event_id=redemption_event_id)


def commands(*events: dict) -> list[Command]:
    return [command_from_event(event) for event in events]
