"""A deterministic pseudo-random inbound stream for the projection tests.

Many members (a few heavy spenders reach every tier), refunds (partial,
full, too large, of unknown purchases), redemptions (some too large),
birthdays (some twice a year), referrals (some self-referrals, some repeated),
wrong-currency purchases, late events and, at each year end, a
``year_closed`` for every member the ledger knows (from ``close_year``).

``load_stream`` applies it to a ledger in batches of
``batch_commands_max`` commands (one transaction each), then the referrer
credits those batches caused, as the stream pipeline would.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ledger.application import LoyaltyLedger
from ledger.calendar import format_timestamp
from ledger.commands import command_from_event
from ledger.credits import credit_commands

START = datetime(2023, 1, 3, 9, tzinfo=timezone.utc)
STEP_MINUTES_MAX = 150          # mean gap ~75 min: 20k events span about three years
LATE_DAYS_MAX = 40
BURST_EVENTS_MAX = 8
HEAVY_MEMBER_EVERY = 25         # every 25th member spends like a platinum customer
PURCHASE_MINOR_MAX = 30_000
HEAVY_PURCHASE_MINOR_MAX = 120_000
REDEMPTION_POINTS_MAX = 900
KINDS = (["purchase"] * 50 + ["refund"] * 10 + ["redemption"] * 9 + ["birthday"] * 4
         + ["referral"] * 4 + ["bad_currency"] + ["unknown_refund"])


@dataclass
class StreamState:
    rng: random.Random
    members: list[str]
    weights: list[float]
    purchases: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=lambda: iter(range(10**9)))


def stream(events_total: int, members_total: int, seed: int = 7) -> Iterator[dict]:
    """``events_total`` inbound events (year ends not included), in topic order.

    Members come in short bursts (a visit: a few events in a row), which keeps
    the number of accounts a ledger batch loads, and so the test, small.
    """
    rng = random.Random(seed)
    members = [f"m-{index:05d}" for index in range(members_total)]
    weights = [1.0 / (index + 1) ** 0.6 for index in range(members_total)]
    state = StreamState(rng, members, weights)
    moment = START
    member, burst_left = members[0], 0
    for _ in range(events_total):
        moment += timedelta(minutes=rng.randint(0, STEP_MINUTES_MAX))
        if burst_left == 0:
            member, burst_left = rng.choices(members, weights)[0], rng.randint(1, BURST_EVENTS_MAX)
        burst_left -= 1
        yield _next_event(state, member, moment)


def _next_event(state: StreamState, member: str, moment: datetime) -> dict:
    rng = state.rng
    late = rng.random() < 0.05
    at = moment - timedelta(days=rng.randint(1, LATE_DAYS_MAX)) if late else moment
    kind = rng.choice(KINDS)
    base = {"schema_version": 1, "event_id": f"ev-{next(state.numbers)}", "member_id": member,
            "occurred_at": format_timestamp(at)}
    return BODIES[kind](state, base)


def _purchase(state: StreamState, base: dict, currency: str = "EUR") -> dict:
    heavy = state.members.index(base["member_id"]) % HEAVY_MEMBER_EVERY == 0
    amount = state.rng.randint(1, HEAVY_PURCHASE_MINOR_MAX if heavy else PURCHASE_MINOR_MAX)
    if currency == "EUR":
        state.purchases.setdefault(base["member_id"], []).append((base["event_id"], amount))
    return {**base, "type": "purchase", "amount_minor": amount, "currency": currency,
            "store_id": f"s-{state.rng.randint(1, 9)}",
            "channel": state.rng.choice(["pos", "online"])}


def _bad_currency(state: StreamState, base: dict) -> dict:
    return _purchase(state, base, currency="USD")


def _refund(state: StreamState, base: dict) -> dict:
    own = state.purchases.get(base["member_id"])
    if not own:
        return _purchase(state, base)
    event_id, amount = state.rng.choice(own)
    refund = amount if state.rng.random() < 0.5 else state.rng.randint(1, amount)
    return {**base, "type": "refund", "purchase_event_id": event_id, "amount_minor": refund,
            "currency": "EUR", "store_id": "s-1"}


def _unknown_refund(state: StreamState, base: dict) -> dict:
    return {**base, "type": "refund", "purchase_event_id": "nope", "amount_minor": 100,
            "currency": "EUR", "store_id": "s-1"}


def _redemption(state: StreamState, base: dict) -> dict:
    return {**base, "type": "redemption", "points": state.rng.randint(1, REDEMPTION_POINTS_MAX),
            "reward_id": f"r-{state.rng.randint(1, 5)}",
            "cash_top_up_minor": state.rng.choice([0, 0, 500])}


def _birthday(state: StreamState, base: dict) -> dict:
    return {**base, "type": "birthday"}


def _referral(state: StreamState, base: dict) -> dict:
    referrer = state.rng.choice(state.members[:40])
    return {**base, "type": "referral", "referrer_member_id": referrer}


BODIES: dict[str, Callable[[StreamState, dict], dict]] = {
    "purchase": _purchase, "bad_currency": _bad_currency, "refund": _refund,
    "unknown_refund": _unknown_refund, "redemption": _redemption,
    "birthday": _birthday, "referral": _referral,
}


def load_stream(ledger: LoyaltyLedger, events: Iterator[dict], batch_commands_max: int,
                close_year: Callable[[LoyaltyLedger, int], list[dict]],
                after_batch: Callable[[], None] = lambda: None) -> int:
    """Apply ``events`` in batches; close each year as the stream crosses it.

    Returns the number of inbound events applied (year ends included).
    """
    batch: list = []
    applied = 0
    year = START.year
    for event in events:
        event_year = int(event["occurred_at"][:4])
        if event_year > year:
            applied += _flush(ledger, batch, after_batch)
            batch = [command_from_event(e) for e in close_year(ledger, year)]
            year = event_year
        batch.append(command_from_event(event))
        if len(batch) >= batch_commands_max:
            applied += _flush(ledger, batch, after_batch)
            batch = []
    return applied + _flush(ledger, batch, after_batch)


def _flush(ledger: LoyaltyLedger, batch: list, after_batch: Callable[[], None]) -> int:
    if not batch:
        return 0
    results = ledger.apply(*batch)
    credits = credit_commands(fact for result in results for fact in result.facts)
    if credits:
        ledger.apply(*credits)
    after_batch()
    return len(batch) + len(credits)
