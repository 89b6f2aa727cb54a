"""Property tests over random event sequences (hypothesis).

- balance = earned - reversed - redeemed - expired after every event;
- applying any event twice equals applying it once;
- rebuilding an account from its stored facts, with and without snapshots,
  gives the same state;
- no float anywhere in stored events.

They run on both backends; member ids are unique per example, so examples
share one database without interfering.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.domain import account_id
from tests.support.properties import (TwiceLedger, account_state, property_settings, replayed_state,
                                      timed_stream)

EXAMPLES_MAX = 40
EVENTS_MAX = 40
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
_example_ids = itertools.count()

SETTINGS = property_settings(EXAMPLES_MAX)


@st.composite
def event_streams(draw) -> list[dict]:
    """A stream for three members, with late events, refunds, referrals and year ends."""
    prefix = f"x{next(_example_ids)}-"
    members = [prefix + name for name in ("a", "b", "c")]
    return timed_stream(draw, prefix, members, START, EVENTS_MAX, 24 * 60,
                        [0, 0, 0, 24 * 30, 24 * 400],
                        lambda base, purchases, moment: _event_body(base, members, purchases, moment))


@st.composite
def _event_body(draw, base, members, purchases, moment) -> dict:
    kind = draw(st.sampled_from(
        ["purchase"] * 4 + ["refund"] * 2 + ["redemption", "birthday", "referral", "year_closed"]))
    if kind == "purchase":
        currency = draw(st.sampled_from(["EUR"] * 9 + ["USD"]))
        return {**base, "type": kind, "amount_minor": draw(st.integers(1, 300_000)),
                "currency": currency, "store_id": "s"}
    if kind == "refund":
        own = [p for p in purchases if p[0] == base["member_id"]]
        target = draw(st.sampled_from(own)) if own else (None, "unknown", 1000)
        amount = draw(st.integers(1, target[2]))
        return {**base, "type": kind, "purchase_event_id": target[1], "amount_minor": amount,
                "currency": "EUR", "store_id": "s"}
    if kind == "redemption":
        return {**base, "type": kind, "points": draw(st.integers(1, 2000)), "reward_id": "r"}
    if kind == "referral":
        return {**base, "type": kind, "referrer_member_id": draw(st.sampled_from(members))}
    if kind == "year_closed":
        return {**base, "type": kind, "year": moment.year - 1}
    return {**base, "type": kind}


def _members(events: list[dict]) -> set[str]:
    members = {event["member_id"] for event in events}
    return members | {e["referrer_member_id"] for e in events if e["type"] == "referral"}


@SETTINGS
@given(events=event_streams())
def test_invariant_holds_after_every_event(ledger, events):
    for event in events:
        for result in ledger.apply_in_order([command_from_event(event)]):
            ledger.find_account(result.member_id).check_invariant()


@SETTINGS
@given(events=event_streams())
def test_applying_any_event_twice_equals_applying_it_once(ledger_env, events):
    once, twice = LoyaltyLedger(env=ledger_env), TwiceLedger(env=ledger_env)
    for event in events:
        once.apply_in_order([command_from_event(event)])
    for event in events:
        results = twice.apply_in_order([command_from_event(event), command_from_event(dict(event))])
        assert results[-1].status == "duplicate"
    for member in _members(events):
        assert account_state(twice, member) == account_state(once, member)


@SETTINGS
@given(events=event_streams())
def test_rebuild_from_facts_with_and_without_snapshots_is_equal(ledger_env, events):
    ledger = LoyaltyLedger(env={**ledger_env, "LOYALTY_SNAPSHOT_INTERVAL_EVENTS": "3"})
    ledger.apply_in_order([command_from_event(event) for event in events])
    for member in _members(events):
        if ledger.find_account(member) is None:
            continue
        assert account_state(ledger, member) == replayed_state(ledger, member)
        if ledger.find_account(member).version >= 3:
            assert list(ledger.snapshots.get(account_id(member))), "a snapshot was taken"


def _reject_float(text: str):
    raise AssertionError(f"float in a stored event: {text}")


@SETTINGS
@given(events=event_streams())
def test_no_float_in_stored_events(ledger, events):
    ledger.apply_in_order([command_from_event(event) for event in events])
    for member in _members(events):
        for stored in ledger.recorder.select_events(account_id(member)):
            json.loads(stored.state, parse_float=_reject_float, parse_constant=_reject_float)
