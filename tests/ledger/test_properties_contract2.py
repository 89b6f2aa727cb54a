"""Property tests of contract 2's rules (hypothesis), over random streams that
mix every inbound type: purchases (with pending points), refunds, redemptions,
birthdays, referrals, year ends, adjustments (either sign, with and without
``allow_debt``, unknown codes) and transfers (between the stream's members,
to itself, to newcomers, over the yearly limit).

- balance + held + pending = in - out after every event, for every account;
- applying any event twice equals applying it once;
- rebuilding an account from its facts, with and without snapshots, is equal;
- transfers conserve points: what leaves senders is what receivers got, and
  what receivers got is what formed lots, paid debt or expired at once.

The program has 14 pending days, 2-month expiry (so lots, pending ones
included, expire within a stream), a 300-point yearly transfer limit and
lifetime tiers in half the examples. Both backends; member ids are unique per
example.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.domain import LoyaltyAccount
from ledger.program import load_program
from tests.support.properties import (TwiceLedger, check_invariant_after_every_event,
                                      check_rebuild_equal, check_twice_equals_once,
                                      property_settings, refund_body, timed_stream)

EXAMPLES_MAX = 30
EVENTS_MAX = 40
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
_example_ids = itertools.count()

SETTINGS = property_settings(EXAMPLES_MAX)


def contract_2_program(lifetime: bool):
    return dataclasses.replace(load_program(), pending_days=14, expiry_months=2,
                               transfer_points_per_year_max=300,
                               tier_basis="lifetime" if lifetime else "annual")


@st.composite
def event_streams(draw) -> list[dict]:
    prefix = f"y{next(_example_ids)}-"
    members = [prefix + name for name in ("a", "b", "c")]
    return timed_stream(
        draw, prefix, members, START, EVENTS_MAX, 24 * 7, [0, 0, 0, 24 * 10, 24 * 100],
        lambda base, purchases, moment: _event_body(base, members, purchases, moment, prefix))


@st.composite
def _event_body(draw, base, members, purchases, moment, prefix) -> dict:
    kind = draw(st.sampled_from(["purchase"] * 4 + ["refund"] * 2 + [
        "redemption", "birthday", "referral", "year_closed", "adjustment", "adjustment",
        "transfer", "transfer", "transfer"]))
    if kind == "purchase":
        return {**base, "type": kind, "amount_minor": draw(st.integers(1, 300_000)),
                "currency": "EUR", "store_id": "s"}
    if kind == "refund":
        return refund_body(draw, base, purchases)
    if kind == "redemption":
        return {**base, "type": kind, "points": draw(st.integers(1, 2000)), "reward_id": "r"}
    if kind == "referral":
        return {**base, "type": kind, "referrer_member_id": draw(st.sampled_from(members))}
    if kind == "year_closed":
        return {**base, "type": kind, "year": moment.year - 1}
    if kind == "adjustment":
        adjustment = {**base, "type": kind, "points": draw(st.integers(-3000, 3000).filter(bool)),
                      "reason_code": draw(st.sampled_from(["goodwill", "fraud", "whim"])),
                      "operator_id": "o"}
        return adjustment | ({"allow_debt": True} if draw(st.booleans()) else {})
    receiver = draw(st.sampled_from(members + [prefix + "newcomer"]))
    return {**base, "type": kind, "to_member_id": receiver, "points": draw(st.integers(1, 400))}


def _members(events: list[dict]) -> set[str]:
    members = {event["member_id"] for event in events}
    members |= {e["referrer_member_id"] for e in events if e["type"] == "referral"}
    return members | {e["to_member_id"] for e in events if e["type"] == "transfer"}


@SETTINGS
@given(events=event_streams(), lifetime=st.booleans())
def test_invariant_holds_after_every_event_for_every_account(ledger_env, events, lifetime):
    ledger = LoyaltyLedger(env=ledger_env, program=contract_2_program(lifetime))
    check_invariant_after_every_event(ledger, events)


@SETTINGS
@given(events=event_streams(), lifetime=st.booleans())
def test_applying_any_event_twice_equals_applying_it_once(ledger_env, events, lifetime):
    program = contract_2_program(lifetime)
    once = LoyaltyLedger(env=ledger_env, program=program)
    twice = TwiceLedger(env=ledger_env, program=program)
    check_twice_equals_once(once, twice, events, _members(events))


@SETTINGS
@given(events=event_streams(), lifetime=st.booleans())
def test_rebuild_from_facts_with_and_without_snapshots_is_equal(ledger_env, events, lifetime):
    ledger = LoyaltyLedger(env={**ledger_env, "LOYALTY_SNAPSHOT_INTERVAL_EVENTS": "3"},
                           program=contract_2_program(lifetime))
    check_rebuild_equal(ledger, events, _members(events))


@SETTINGS
@given(events=event_streams())
def test_transfers_conserve_points(ledger_env, events):
    ledger = LoyaltyLedger(env=ledger_env, program=contract_2_program(lifetime=False))
    results = ledger.apply_in_order([command_from_event(event) for event in events])
    facts = [fact for result in results for fact in result.facts]
    sent = [f for f in facts if isinstance(f, LoyaltyAccount.PointsTransferredOut)]
    got = [f for f in facts if isinstance(f, LoyaltyAccount.PointsTransferredIn)]
    assert sum(f.points for f in sent) == sum(f.points for f in got)
    assert [f.source_event_id for f in got] == [f"transfer-credit:{f.source_event_id}" for f in sent]
    for into in got:
        formed = sum(lot["points"] for lot in into.lots)
        assert into.points == formed + into.debt_paid + into.expired
    members = _members(events)
    accounts = [ledger.find_account(m) for m in members if ledger.find_account(m) is not None]
    assert (sum(a.lifetime_transferred_out for a in accounts)
            == sum(a.lifetime_transferred_in for a in accounts))
