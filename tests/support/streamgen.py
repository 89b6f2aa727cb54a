"""Deterministic random inbound streams for integration tests.

Members buy, refund (partly or fully), redeem, celebrate birthdays and refer;
"ambassadors" are referrers who only make small purchases (they stay in the
base tier, never redeem and never owe points) and are many enough that none
reaches the yearly referrer cap. Only then does applying their credits later
(through Kafka) or at once (directly) give the same read values: the README
("The referrer credit") explains why the cap and a referrer's redemptions
depend on the credits' arrival order. Year ends emit ``year_closed`` for
every member seen.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from ledger.calendar import format_timestamp

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


AMBASSADOR_PURCHASE_MINOR_MAX = 3000


def generate_events(seed: int, count: int, members: int = 60, ambassadors: int = 20) -> list[dict]:
    rng = random.Random(seed)
    member_ids = [f"s{seed}-m{n}" for n in range(members)]
    ambassador_ids = [f"s{seed}-a{n}" for n in range(ambassadors)]
    state = {"moment": START, "n": 0, "purchases": {}, "seen": set()}
    events: list[dict] = []
    while len(events) < count:
        state["moment"] += timedelta(minutes=rng.randint(1, 600))
        _maybe_close_year(events, state)
        events.append(_next_event(rng, state, member_ids, ambassador_ids))
    return events[:count]


def _base(state: dict, kind: str, member: str, moment: datetime) -> dict:
    state["n"] += 1
    state["seen"].add(member)
    return {"type": kind, "schema_version": 1, "event_id": f"e{state['n']}-{member}",
            "member_id": member, "occurred_at": format_timestamp(moment)}


def _maybe_close_year(events: list[dict], state: dict) -> None:
    year = state["moment"].year
    if state.setdefault("year", year) == year:
        return
    for member in sorted(state["seen"]):
        event = _base(state, "year_closed", member, datetime(year, 1, 1, 0, 5, tzinfo=timezone.utc))
        events.append({**event, "year": state["year"]})
    state["year"] = year


def _next_event(rng, state, member_ids, ambassador_ids) -> dict:
    roll = rng.random()
    moment = state["moment"] - timedelta(days=rng.choice([0] * 19 + [40]))  # some late events
    if roll < 0.06:
        member = rng.choice(ambassador_ids)
        return _purchase(rng, state, member, moment, AMBASSADOR_PURCHASE_MINOR_MAX)
    member = rng.choice(member_ids)
    if roll < 0.55:
        return _purchase(rng, state, member, moment)
    if roll < 0.70:
        return _refund(rng, state, member, moment)
    if roll < 0.82:
        event = _base(state, "redemption", member, moment)
        return {**event, "points": rng.randint(20, 600), "reward_id": "reward"}
    if roll < 0.88:
        return _base(state, "birthday", member, moment)
    referrer = rng.choice(ambassador_ids + [member])
    return {**_base(state, "referral", member, moment), "referrer_member_id": referrer}


def _purchase(rng, state, member, moment, amount_max: int | None = None) -> dict:
    amount = int(rng.paretovariate(1.3) * 1500)
    amount = min(amount, amount_max) if amount_max else amount
    event = {**_base(state, "purchase", member, moment), "amount_minor": amount,
             "currency": "EUR" if rng.random() > 0.02 else "USD", "store_id": f"store-{rng.randint(1, 9)}"}
    state["purchases"].setdefault(member, []).append([event["event_id"], amount])
    return event


def _refund(rng, state, member, moment) -> dict:
    own = state["purchases"].get(member)
    if not own:
        target = ["unknown-purchase", 1000]
    else:
        target = rng.choice(own)
    amount = target[1] if rng.random() < 0.5 else max(1, rng.randint(1, max(1, target[1])) // 2)
    return {**_base(state, "refund", member, moment), "purchase_event_id": target[0],
            "amount_minor": amount, "currency": "EUR", "store_id": "store-1"}


BAD_LINES = [
    "not json at all",
    '{"type": "purchase", "schema_version": 1}',
    '{"type": "teleport", "schema_version": 1, "event_id": "x", "member_id": "m", "occurred_at": "2025-01-01T00:00:00Z"}',
    '[1, 2, 3]',
    '{"type": "purchase", "schema_version": 1, "event_id": "bad-amount", "member_id": "m-bad", '
    '"occurred_at": "2025-01-01T00:00:00Z", "amount_minor": -5, "currency": "EUR", "store_id": "s"}',
    '{"type": "birthday", "schema_version": 1, "event_id": "no-offset", "member_id": "m-bad", '
    '"occurred_at": "2025-01-01T00:00:00"}',
]


def with_faults(events: list[dict], seed: int, duplicate_rate: float = 0.03,
                bad_every: int = 500) -> tuple[list[str], list[str]]:
    """Lines with exact redeliveries and bad lines mixed in; returns (lines, bad lines)."""
    rng = random.Random(seed)
    lines, bad = [], []
    for number, event in enumerate(events):
        lines.append(json.dumps(event))
        if rng.random() < duplicate_rate:
            lines.append(json.dumps(event))
        if number % bad_every == bad_every - 1:
            line = BAD_LINES[(number // bad_every) % len(BAD_LINES)]
            lines.append(line)
            bad.append(line)
    return lines, bad
