"""A deterministic stream with contract 2's pending points, adjustments and transfers.

Senders buy (their points wait out the program's pending days), refund,
redeem, get adjusted (either sign, sometimes into debt, sometimes with a
code the program does not know) and transfer points to receivers. The
receivers only ever receive, and the whole stream spans less than the
lots' expiry: only then does applying the transfer credits later (through
Kafka, on the receivers' partitions) or at once (directly) give the same
values, as ``streamgen`` does for referrer credits.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from ledger.calendar import format_timestamp

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
STEP_MINUTES_MAX = 60


def generate_contract_2_events(seed: int, count: int, senders: int = 40,
                               receivers: int = 10) -> list[dict]:
    rng = random.Random(seed)
    sender_ids = [f"c{seed}-s{n}" for n in range(senders)]
    receiver_ids = [f"c{seed}-r{n}" for n in range(receivers)]
    moment, purchases, events = START, {}, []
    for number in range(count):
        moment += timedelta(minutes=rng.randint(1, STEP_MINUTES_MAX))
        member = rng.choice(sender_ids)
        base = {"schema_version": 1, "event_id": f"c{seed}-e{number}", "member_id": member,
                "occurred_at": format_timestamp(moment)}
        events.append(_body(rng, base, purchases.get(member, []), receiver_ids))
        if events[-1]["type"] == "purchase":
            purchases.setdefault(member, []).append((base["event_id"], events[-1]["amount_minor"]))
    return events


def _body(rng: random.Random, base: dict, own: list, receivers: list[str]) -> dict:
    kind = rng.choice(["purchase"] * 4 + ["refund", "redemption", "adjustment", "adjustment",
                                          "transfer", "transfer", "birthday"])
    if kind == "purchase":
        return {**base, "type": kind, "amount_minor": rng.randint(500, 80_000), "currency": "EUR",
                "store_id": "s-1"}
    if kind == "refund" and own:
        event_id, amount = rng.choice(own)
        return {**base, "type": kind, "purchase_event_id": event_id,
                "amount_minor": rng.randint(1, amount), "currency": "EUR", "store_id": "s-1"}
    if kind == "redemption":
        return {**base, "type": kind, "points": rng.randint(1, 300), "reward_id": "rw-1"}
    if kind == "adjustment":
        event = {**base, "type": kind, "points": rng.choice([-1, 1]) * rng.randint(1, 400),
                 "reason_code": rng.choice(["goodwill", "correction", "fraud", "whim"]),
                 "operator_id": "cs-1"}
        return event | ({"allow_debt": True} if rng.random() < 0.3 else {})
    if kind == "transfer":
        return {**base, "type": kind, "to_member_id": rng.choice(receivers),
                "points": rng.randint(1, 250)}
    return {**base, "type": "birthday"}
